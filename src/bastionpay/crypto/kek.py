"""Key-encryption keys (KEKs): one interface, two backends (C4, PCI DSS 3.6, 3.7).

Data keys (DEKs) encrypt card data; a KEK encrypts ("wraps") the DEKs, which are stored apart from
it — DEKs in the vault database, the KEK in a 0600 key file (`FileKek`, development) or inside a
PKCS#11 token it never leaves (`Pkcs11Kek`, production). PCI DSS 3.6.1.1-3.6.1.4: the KEK is at
least as strong as the DEKs (both AES-256), stored in as few places as possible, and apart from the
keys it protects.

Every KEK is versioned. `rotate()` makes a new version, which becomes the active one (the highest
version is always the active one, in both backends, so there is no separate pointer to keep
consistent). Existing wrapped DEKs keep naming the version that wrapped them, so they stay readable
until they are rewrapped; `retire(version)` then destroys an old version (PCI DSS 3.6.4, 3.7.4,
3.7.5). A backend refuses to retire its active version; refusing to retire a version that still
wraps a DEK is the key ring's job, because only it can count them.

Both backends wrap with AES-256-GCM under associated data that names the backend, the KEK version
and a caller-supplied context (the key ring passes merchant id and DEK version), so a wrapped DEK
cannot be passed off as another merchant's or another version's (C3, C4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

WRAP_DOMAIN: Final = b"bastionpay/kek-wrap/v1"
WRAP_NONCE_BYTES: Final = 12
MAX_CONTEXT_BYTES: Final = 1024


class KekError(Exception):
    """Base class; messages never contain key material, PINs or wrapped plaintexts."""


class KekUnavailable(KekError):
    """The KEK cannot be reached: missing key file, token absent, login refused, module missing."""


class UnwrapFailed(KekError):
    """A wrapped key failed authentication (tampered, wrong KEK, wrong version, wrong context)."""


class UnknownKekVersion(KekError):
    """No KEK version with this number exists (never created, or already retired)."""


class RetirementRefused(KekError):
    """The version cannot be retired (it is the active one, or still protects data keys)."""


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key encrypted under one KEK version; safe to store, useless without the KEK.

    `blob` is the backend's wrapping; for both backends: nonce (12) | AES-GCM ciphertext | tag (16).
    """

    backend: str
    kek_version: int
    blob: bytes

    def __repr__(self) -> str:
        return f"WrappedKey(backend={self.backend!r}, kek_version={self.kek_version})"


@dataclass(frozen=True, slots=True)
class KekVersion:
    version: int
    created_at: int
    active: bool
    # True when the key material cannot be read out of its store (a PKCS#11 key generated in the
    # token with CKA_EXTRACTABLE=false); False for a key file anyone with its path can read.
    non_extractable: bool


@dataclass(frozen=True, slots=True)
class KekStatus:
    backend: str
    key_id: str
    active_version: int
    versions: tuple[KekVersion, ...]


@runtime_checkable
class KeyEncryptionKey(Protocol):
    """What the key ring needs from a KEK backend; every backend passes the same contract tests."""

    @property
    def backend(self) -> str: ...

    @property
    def key_id(self) -> str:
        """Where the KEK lives, for status output (a path or a token label; never a secret)."""
        ...

    @property
    def active_version(self) -> int: ...

    def wrap(self, dek: bytes | bytearray, *, context: bytes) -> WrappedKey:
        """Encrypt `dek` under the active version, bound to `context`."""
        ...

    def unwrap(self, wrapped: WrappedKey, *, context: bytes) -> bytearray:
        """Decrypt a wrapped key; raises `UnwrapFailed`, `UnknownKekVersion` or `KekUnavailable`."""
        ...

    def rotate(self) -> int:
        """Create a new version, which becomes the active one; returns its number."""
        ...

    def retire(self, version: int) -> None:
        """Destroy a version that is not the active one."""
        ...

    def status(self) -> KekStatus: ...


def wrap_aad(backend: str, kek_version: int, context: bytes) -> bytes:
    """Associated data for wrapping: domain, backend, KEK version and the caller's context."""
    if len(context) > MAX_CONTEXT_BYTES:
        raise ValueError("wrap context too long")
    name = backend.encode("ascii")
    return (
        WRAP_DOMAIN
        + struct.pack(">B", len(name))
        + name
        + struct.pack(">IH", kek_version, len(context))
        + context
    )
