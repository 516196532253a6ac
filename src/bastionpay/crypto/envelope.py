"""Envelope encryption of small records (card numbers, CVCs) under a data key (C3, C4).

A recipe in the pyca/cryptography sense: callers hand in a `DataKey`, the plaintext and a
`Binding`; they never see a nonce, a tag or a raw cipher. AES-256-GCM comes from `cryptography`'s
`AESGCM`; nothing here implements a cipher or a random number generator.

Ciphertext layout (all integers big-endian; 35 bytes of overhead):

    offset  size  field
    0       3     format tag        b"bp1"  (a new layout gets a new tag; old ones stay readable)
    3       4     dek_version       u32, >= 1: which version of the merchant's data key sealed it
    7       12    nonce             96 random bits from the OS CSPRNG, fresh per encryption
    19      n     ciphertext        AES-256-GCM, n = len(plaintext)
    19+n    16    tag               128-bit GCM authentication tag

Associated data (authenticated, not stored) = bytes 0..7 of the header, then the `Binding`:
merchant id, record id and purpose, each as a u16 length and its UTF-8 bytes. So a ciphertext moved
to another record, another merchant, or from the `pan` column into the `cvc` column fails to
decrypt (C3: the ciphertext is bound to its merchant and record), and so does a ciphertext whose
format tag or key version was edited. Length prefixes keep the encoding injective: ("a", "bc") and
("ab", "c") give different associated data.

Nonce reuse (C4, ASVS 11.3.4). GCM with a repeated (key, nonce) pair leaks the XOR of two
plaintexts and lets an attacker forge tags, so a nonce must never repeat under one key. Nonces are
96 random bits; NIST SP 800-38D §8.3 caps random-nonce GCM at 2^32 encryptions per key, where the
chance of any collision is about n^2 / 2^97 (2^-33 at the cap). We stay far below it: every
encryption is counted against the key (`EncryptionCounter`), a data key is due for rotation after
`ROTATE_AFTER` = 2^28 encryptions (collision chance ~2^-41) and refuses to encrypt at all after
`ENCRYPTION_LIMIT` = 2^30 (~2^-37). The vault persists the count (see `bastionpay.vault.keyring`),
so restarts and several processes share one budget per key version.

Errors never include key material or plaintext (L3): messages are fixed strings.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from typing import Final, NoReturn, Protocol, SupportsIndex

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_TAG: Final = b"bp1"
KEY_BYTES: Final = 32  # AES-256 (C3; ASVS 11.2.3: >= 128-bit strength)
NONCE_BYTES: Final = 12  # the 96-bit GCM nonce SP 800-38D recommends
TAG_BYTES: Final = 16  # full-length tag; truncated tags weaken forgery resistance
_HEADER: Final = struct.Struct(">3sI")
HEADER_BYTES: Final = _HEADER.size  # 7
OVERHEAD: Final = HEADER_BYTES + NONCE_BYTES + TAG_BYTES  # 35
MAX_PLAINTEXT: Final = 64 * 1024  # records are card numbers and CVCs; bound everything
MAX_BINDING_FIELD: Final = 255  # bytes per merchant id / record id / purpose
MAX_KEY_VERSION: Final = 2**32 - 1

ROTATE_AFTER: Final = 2**28  # encryptions under one data key before rotation is due
ENCRYPTION_LIMIT: Final = 2**30  # encryptions after which a data key refuses to encrypt


class EnvelopeError(Exception):
    """Base class; messages are fixed and never contain key material or plaintext."""


class DecryptionFailed(EnvelopeError):
    """The ciphertext is malformed, was tampered with, or belongs to another key or binding."""


class UnsupportedFormat(EnvelopeError):
    """The ciphertext starts with a format tag this version of BastionPay does not know."""


class NonceBudgetExhausted(EnvelopeError):
    """The data key has done as many encryptions as it safely may: rotate it (C4)."""


class KeyDestroyed(EnvelopeError):
    """The data key was destroyed and can no longer be used."""


@dataclass(frozen=True, slots=True)
class Binding:
    """What a ciphertext is bound to through the associated data (C3)."""

    merchant_id: str
    record_id: str
    purpose: str

    def encode(self) -> bytes:
        parts: list[bytes] = []
        for field in (self.merchant_id, self.record_id, self.purpose):
            raw = field.encode("utf-8")
            if not raw or len(raw) > MAX_BINDING_FIELD:
                raise ValueError("binding fields must be 1-255 bytes of UTF-8")
            parts.append(struct.pack(">H", len(raw)) + raw)
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Header:
    dek_version: int
    nonce: bytes


class EncryptionCounter(Protocol):
    """Counts encryptions under one data key; `take` raises `NonceBudgetExhausted` when spent."""

    def take(self) -> None: ...


class LocalCounter:
    """An in-process counter: enough for tests and single-process tools.

    The vault uses a counter backed by its database instead, so the budget survives restarts and is
    shared between processes; this class is the reference behaviour that counter follows.
    """

    __slots__ = ("_limit", "_lock", "_used")

    def __init__(self, used: int = 0, *, limit: int = ENCRYPTION_LIMIT) -> None:
        if used < 0 or limit < 1:
            raise ValueError("counter values must be positive")
        self._used = used
        self._limit = limit
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    @property
    def remaining(self) -> int:
        return max(0, self._limit - self._used)

    @property
    def rotation_due(self) -> bool:
        return self._used >= min(ROTATE_AFTER, self._limit)

    def take(self) -> None:
        with self._lock:
            if self._used >= self._limit:
                raise NonceBudgetExhausted("data key encryption limit reached; rotate the key")
            self._used += 1


def generate_key_material() -> bytearray:
    """256 fresh bits from the OS CSPRNG, as a `bytearray` so the holder can overwrite it.

    (`os.urandom` returns an immutable `bytes` first; that short-lived copy cannot be zeroed — see
    `DataKey.destroy` for what zeroising does and does not achieve in Python.)
    """
    return bytearray(os.urandom(KEY_BYTES))


class DataKey:
    """One version of a data-encryption key (DEK) with its encryption counter.

    Holds the key in a `bytearray` and zeroes it in `destroy()`. Honest limits: `AESGCM` keeps its
    own copy inside OpenSSL's context, which is freed (not necessarily wiped) when the object is
    garbage-collected; `bytes` copies made on the way in (from `os.urandom`, from a KEK unwrap) are
    immutable; the garbage collector and the allocator may leave copies in freed memory. Zeroing
    narrows the window for a memory disclosure; it is not a guarantee. The real controls are that
    only the vault process holds DEKs, and only unwrapped, in memory (C4, PCI DSS 3.6.1).
    """

    __slots__ = ("_aead", "_counter", "_material", "_version")

    def __init__(
        self,
        material: bytearray | bytes,
        version: int,
        *,
        counter: EncryptionCounter | None = None,
    ) -> None:
        if len(material) != KEY_BYTES:
            raise ValueError("data keys are 256-bit")
        if not 1 <= version <= MAX_KEY_VERSION:
            raise ValueError("data key versions are 1..2^32-1")
        self._material: bytearray = (
            material if isinstance(material, bytearray) else bytearray(material)
        )
        self._version = version
        self._counter: EncryptionCounter = counter if counter is not None else LocalCounter()
        self._aead: AESGCM | None = AESGCM(self._material)

    @property
    def version(self) -> int:
        return self._version

    @property
    def counter(self) -> EncryptionCounter:
        return self._counter

    @property
    def destroyed(self) -> bool:
        return self._aead is None

    def encrypt(self, plaintext: bytes, binding: Binding) -> bytes:
        aead = self._live()
        if len(plaintext) > MAX_PLAINTEXT:
            raise ValueError("plaintext too large for a vault record")
        self._counter.take()  # before the nonce is drawn: an exhausted key encrypts nothing
        header = _HEADER.pack(FORMAT_TAG, self._version)
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, plaintext, header + binding.encode())
        return header + nonce + sealed

    def decrypt(self, ciphertext: bytes, binding: Binding) -> bytes:
        aead = self._live()
        header = parse_header(ciphertext)
        if header.dek_version != self._version:
            raise DecryptionFailed("ciphertext was sealed under another data key version")
        body = ciphertext[HEADER_BYTES + NONCE_BYTES :]
        try:
            return aead.decrypt(header.nonce, body, ciphertext[:HEADER_BYTES] + binding.encode())
        except InvalidTag:
            # One error for every authentication failure (tampering, wrong key, wrong binding), as
            # Fernet does: which one it was is no business of whoever supplied the ciphertext.
            raise DecryptionFailed("ciphertext failed authentication") from None

    def destroy(self) -> None:
        """Overwrite the key bytes and drop the cipher; the key cannot be used afterwards."""
        for index in range(len(self._material)):
            self._material[index] = 0
        self._aead = None

    def _live(self) -> AESGCM:
        if self._aead is None:
            raise KeyDestroyed("data key was destroyed")
        return self._aead

    def __repr__(self) -> str:
        state = "destroyed" if self._aead is None else "live"
        return f"DataKey(version={self._version}, {state})"

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError("data keys cannot be pickled")


def parse_header(ciphertext: bytes) -> Header:
    """The format tag, key version and nonce of a ciphertext, checked for shape only."""
    if len(ciphertext) < OVERHEAD:
        raise DecryptionFailed("ciphertext is truncated")
    tag, version = _HEADER.unpack_from(ciphertext)
    if tag != FORMAT_TAG:
        raise UnsupportedFormat("unknown ciphertext format")
    if version == 0:
        raise DecryptionFailed("ciphertext names no data key version")
    return Header(dek_version=version, nonce=bytes(ciphertext[HEADER_BYTES:][:NONCE_BYTES]))


def dek_version_of(ciphertext: bytes) -> int:
    """Which data key version sealed `ciphertext` (for routing and re-encryption)."""
    return parse_header(ciphertext).dek_version
