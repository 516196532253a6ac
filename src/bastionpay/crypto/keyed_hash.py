"""Keyed hashes (HMAC-SHA-256) for values we must look up but never store: API keys, fingerprints.

SECURITY-REQUIREMENTS I7 (API keys stored only as keyed hashes) and C3 (any hash of a card number is
a keyed hash). A plain SHA-256 of a short secret could be brute-forced offline from a database dump;
the HMAC key lives in a separate file (or KMS), so the dump alone is useless.
"""

from __future__ import annotations

import hashlib
import hmac


class KeyedHasher:
    def __init__(self, key: bytes, *, purpose: str) -> None:
        if len(key) < 32:
            raise ValueError("keyed-hash keys must be at least 256 bits")
        # Domain separation: one master key file can serve several purposes without the hashes of
        # one purpose being usable as hashes of another.
        self._key = hmac.new(key, b"bastionpay/" + purpose.encode(), hashlib.sha256).digest()

    def hexdigest(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def matches(self, value: str, digest: str) -> bool:
        return hmac.compare_digest(self.hexdigest(value), digest)
