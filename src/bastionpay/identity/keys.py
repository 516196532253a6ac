"""The identity service's keys, loaded once per process from the keys dir (C4: separate key files).

- `identity-hmac.key`: keyed hashes of session ids, CSRF tokens, recovery codes and invitation
  tokens (I4, I7: a database dump alone yields no usable session or code). One file, one derived
  key per purpose (`KeyedHasher` domain separation).
- `totp-seed.key`: AES-256-GCM key sealing TOTP seeds at rest, bound to their user (associated
  data), so a seed copied to another account's row does not decrypt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastionpay.crypto.keyed_hash import KeyedHasher
from bastionpay.crypto.keyfiles import load_or_create_key

_SEAL_VERSION = b"\x01"
_NONCE_BYTES = 12


class SealBroken(Exception):
    """A sealed TOTP seed failed authentication (tampered, or moved to another user)."""


@dataclass(frozen=True)
class SeedSealer:
    key: bytes

    def seal(self, user_id: str, seed: bytes) -> bytes:
        # Random 96-bit nonces: seeds are written once per enrollment, far below GCM's 2^32 bound.
        nonce = os.urandom(_NONCE_BYTES)
        return _SEAL_VERSION + nonce + AESGCM(self.key).encrypt(nonce, seed, user_id.encode())

    def open(self, user_id: str, sealed: bytes) -> bytes:
        if sealed[:1] != _SEAL_VERSION:
            raise SealBroken("unknown seal version")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return AESGCM(self.key).decrypt(nonce, body, user_id.encode())
        except InvalidTag:
            raise SealBroken("TOTP seed failed authentication") from None


@dataclass(frozen=True)
class IdentityKeys:
    sessions: KeyedHasher
    csrf: KeyedHasher
    recovery_codes: KeyedHasher
    invitations: KeyedHasher
    refresh_tokens: KeyedHasher
    # The per-account login limit's counter key: the shared store (Redis) never holds an email.
    login_accounts: KeyedHasher
    seeds: SeedSealer


def load_identity_keys(keys_dir: Path) -> IdentityKeys:
    master = load_or_create_key(keys_dir / "identity-hmac.key")
    return IdentityKeys(
        sessions=KeyedHasher(master, purpose="session-id"),
        csrf=KeyedHasher(master, purpose="csrf"),
        recovery_codes=KeyedHasher(master, purpose="recovery-code"),
        invitations=KeyedHasher(master, purpose="invitation"),
        refresh_tokens=KeyedHasher(master, purpose="oauth-token"),
        login_accounts=KeyedHasher(master, purpose="login-account"),
        seeds=SeedSealer(load_or_create_key(keys_dir / "totp-seed.key")[:32]),
    )
