"""Keyed card fingerprints for de-duplication and fraud velocity (C3, PCI DSS 3.5.1.1).

A fingerprint is HMAC-SHA-256 over the whole card number under a key of its own (never a data key
or the KEK), via `crypto.keyed_hash.KeyedHasher`. An unkeyed hash of a card number can be reversed
by enumerating the ~10^9 numbers behind a known BIN and last 4; without the key, a stolen database
of fingerprints reveals nothing.

Two scopes, separated inside the HMAC input so neither can stand in for the other:
- `for_merchant`: what a merchant sees as `card.fingerprint` (16 hex characters, like Stripe's
  16-character fingerprints). The merchant id is part of the input, so the same card has unrelated
  fingerprints at two merchants and merchants cannot correlate customers.
- `platform`: the full digest, for the vault's own velocity and duplicate checks across merchants;
  it never leaves the vault.
"""

from __future__ import annotations

from typing import Final

from bastionpay.crypto.keyed_hash import KeyedHasher
from bastionpay.vault.cards import CardNumber

PURPOSE: Final = "vault-card-fingerprint"
MERCHANT_FINGERPRINT_CHARS: Final = 16


class CardFingerprinter:
    def __init__(self, key: bytes) -> None:
        self._hasher = KeyedHasher(key, purpose=PURPOSE)

    def for_merchant(self, number: CardNumber, merchant_id: str) -> str:
        if not merchant_id or "\x00" in merchant_id:
            raise ValueError("merchant id required")
        digest = self._hasher.hexdigest(f"merchant\x00{merchant_id}\x00{number.reveal()}")
        return digest[:MERCHANT_FINGERPRINT_CHARS]

    def platform(self, number: CardNumber) -> str:
        return self._hasher.hexdigest(f"platform\x00{number.reveal()}")

    def __repr__(self) -> str:
        return "CardFingerprinter(<key>)"
