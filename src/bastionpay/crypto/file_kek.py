"""The development KEK backend: AES-256 KEK versions in one owner-only key file (C4).

The file is JSON, written atomically with mode 0600 (`keyfiles.write_private`) and refused when its
mode lets anyone but the owner read it:

    {"format": "bastionpay-file-kek/1",
     "versions": [{"version": 1, "created_at": 1767225600, "key": "<base64, 32 bytes>"}, ...]}

The highest version is the active one. `rotate()` appends a new version and `retire()` removes one,
each a read-modify-write under an exclusive `flock` on a sibling lock file, so two operators (or the
CLI and the vault) cannot lose each other's update; readers need no lock because the file is
replaced atomically.

Wrapping is AES-256-GCM (`cryptography`'s AESGCM) with a random 96-bit nonce and the associated
data from `kek.wrap_aad`. A KEK wraps one DEK per merchant key version and per rotation — far fewer
than the 2^32 random-nonce GCM limit (SP 800-38D §8.3) — so no counter is kept here.

What this backend is not: the key sits on the same host as the data it protects, readable by
anyone who gets the vault's user or root, and `retire()` removes it from the file but cannot
promise the old bytes are gone from the disk (journalling filesystems and SSDs keep copies). That
is acceptable for development and tests; production uses `Pkcs11Kek` (PCI DSS 3.6.1.2, 3.7.5).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastionpay.crypto.kek import (
    WRAP_NONCE_BYTES,
    KekStatus,
    KekUnavailable,
    KekVersion,
    RetirementRefused,
    UnknownKekVersion,
    UnwrapFailed,
    WrappedKey,
    wrap_aad,
)
from bastionpay.crypto.keyfiles import KEY_BYTES, write_private
from bastionpay.kernel.clock import Clock, SystemClock

BACKEND: Final = "file"
FORMAT: Final = "bastionpay-file-kek/1"
MAX_FILE_BYTES: Final = 1024 * 1024  # thousands of versions; anything bigger is not ours
MAX_VERSIONS: Final = 10_000


@dataclass(frozen=True, slots=True)
class _Version:
    version: int
    created_at: int
    key: bytes

    def __repr__(self) -> str:
        return f"_Version(version={self.version}, created_at={self.created_at})"


class FileKek:
    """KEK versions in a 0600 JSON key file. Thread- and process-safe for rotate/retire."""

    def __init__(self, path: Path, *, clock: Clock | None = None, create: bool = True) -> None:
        self._path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._clock: Clock = clock if clock is not None else SystemClock()
        if not path.exists():
            if not create:
                raise KekUnavailable("KEK file does not exist")
            with self._exclusive():
                if not path.exists():
                    self._write([self._new_version(1)])

    # --- the KeyEncryptionKey protocol ---------------------------------------------------------

    @property
    def backend(self) -> str:
        return BACKEND

    @property
    def key_id(self) -> str:
        return f"file:{self._path}"

    @property
    def active_version(self) -> int:
        return self._read()[-1].version

    def wrap(self, dek: bytes | bytearray, *, context: bytes) -> WrappedKey:
        active = self._read()[-1]
        nonce = os.urandom(WRAP_NONCE_BYTES)
        sealed = AESGCM(active.key).encrypt(
            nonce, bytes(dek), wrap_aad(BACKEND, active.version, context)
        )
        return WrappedKey(backend=BACKEND, kek_version=active.version, blob=nonce + sealed)

    def unwrap(self, wrapped: WrappedKey, *, context: bytes) -> bytearray:
        if wrapped.backend != BACKEND:
            raise UnwrapFailed("wrapped key belongs to another KEK backend")
        by_version = {entry.version: entry for entry in self._read()}
        entry = by_version.get(wrapped.kek_version)
        if entry is None:
            raise UnknownKekVersion("KEK version not present (never created, or retired)")
        nonce, sealed = wrapped.blob[:WRAP_NONCE_BYTES], wrapped.blob[WRAP_NONCE_BYTES:]
        if len(nonce) != WRAP_NONCE_BYTES:
            raise UnwrapFailed("wrapped key is truncated")
        try:
            plain = AESGCM(entry.key).decrypt(
                nonce, sealed, wrap_aad(BACKEND, entry.version, context)
            )
        except InvalidTag:
            raise UnwrapFailed("wrapped key failed authentication") from None
        return bytearray(plain)

    def rotate(self) -> int:
        with self._exclusive():
            versions = self._read()
            if len(versions) >= MAX_VERSIONS:
                raise RetirementRefused("too many KEK versions; retire old ones first")
            new = self._new_version(versions[-1].version + 1)
            self._write([*versions, new])
            return new.version

    def retire(self, version: int) -> None:
        with self._exclusive():
            versions = self._read()
            if version == versions[-1].version:
                raise RetirementRefused("the active KEK version cannot be retired")
            kept = [entry for entry in versions if entry.version != version]
            if len(kept) == len(versions):
                raise UnknownKekVersion("KEK version not present (never created, or retired)")
            self._write(kept)

    def status(self) -> KekStatus:
        versions = self._read()
        active = versions[-1].version
        return KekStatus(
            backend=BACKEND,
            key_id=self.key_id,
            active_version=active,
            versions=tuple(
                KekVersion(
                    version=entry.version,
                    created_at=entry.created_at,
                    active=entry.version == active,
                    non_extractable=False,
                )
                for entry in versions
            ),
        )

    def __repr__(self) -> str:
        return f"FileKek({self.key_id!r})"

    # --- the file ------------------------------------------------------------------------------

    def _new_version(self, version: int) -> _Version:
        return _Version(version=version, created_at=self._clock.now(), key=os.urandom(KEY_BYTES))

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _read(self) -> list[_Version]:
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise KekUnavailable("KEK file cannot be opened") from exc
        try:
            mode = os.fstat(fd).st_mode
            # Like ssh with private keys: a key file others can read is treated as compromised
            # configuration, not silently used (PCI DSS 3.6.1.2: fewest possible custodians).
            if not stat.S_ISREG(mode) or mode & 0o077:
                raise KekUnavailable("KEK file must be a regular file with mode 0600")
            with os.fdopen(os.dup(fd), "rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
        if len(raw) > MAX_FILE_BYTES:
            raise KekUnavailable("KEK file is too large")
        return _parse(raw)

    def _write(self, versions: list[_Version]) -> None:
        document = {
            "format": FORMAT,
            "versions": [
                {
                    "version": entry.version,
                    "created_at": entry.created_at,
                    "key": base64.b64encode(entry.key).decode("ascii"),
                }
                for entry in versions
            ],
        }
        write_private(self._path, json.dumps(document, indent=1).encode("utf-8") + b"\n")


def _parse(raw: bytes) -> list[_Version]:
    try:
        document: Any = json.loads(raw)
    except ValueError:
        raise KekUnavailable("KEK file is corrupt") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KekUnavailable("KEK file has an unknown format")
    entries = document.get("versions")
    if not isinstance(entries, list) or not entries:
        raise KekUnavailable("KEK file holds no key")
    versions: list[_Version] = []
    for entry in entries:
        versions.append(_parse_entry(entry))
    versions.sort(key=lambda entry: entry.version)
    if len({entry.version for entry in versions}) != len(versions):
        raise KekUnavailable("KEK file repeats a version")
    return versions


def _parse_entry(entry: object) -> _Version:
    if not isinstance(entry, dict):
        raise KekUnavailable("KEK file is corrupt")
    version, created_at, key = entry.get("version"), entry.get("created_at"), entry.get("key")
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not 1 <= version < 2**32
        or not isinstance(created_at, int)
        or not isinstance(key, str)
    ):
        raise KekUnavailable("KEK file is corrupt")
    try:
        material = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise KekUnavailable("KEK file is corrupt") from None
    if len(material) != KEY_BYTES:
        raise KekUnavailable("KEK file holds a key of the wrong size")
    return _Version(version=version, created_at=created_at, key=material)
