"""Audit keys: the chain MAC key and the Ed25519 checkpoint-signing key, in files outside the DB.

Someone who can rewrite the database still cannot forge chain links (no chain key) or checkpoints
(no signing key). The signing public key is printed by `bastionpay audit public-key` so it can be
pinned elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastionpay.crypto.keyed_hash import KeyedHasher
from bastionpay.crypto.keyfiles import load_or_create_key, write_private


@dataclass(frozen=True)
class AuditKeys:
    chain: KeyedHasher
    signing: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing.public_key()

    @property
    def public_key_b64(self) -> str:
        return public_key_b64(self.public_key)

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)


def public_key_b64(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(b64: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))


def _signing_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise TypeError(f"{path} is not an Ed25519 private key")
        return loaded
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
    return key


def load_audit_keys(keys_dir: Path) -> AuditKeys:
    return AuditKeys(
        chain=KeyedHasher(load_or_create_key(keys_dir / "audit-chain.key"), purpose="audit-chain"),
        signing=_signing_key(keys_dir / "audit-signing.pem"),
    )
