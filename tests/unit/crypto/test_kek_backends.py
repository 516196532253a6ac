"""crypto.kek: the contract every KEK backend honours — file and PKCS#11 (SoftHSM2) alike (C4)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.vault.softhsm import PIN, TOKEN, softhsm

from bastionpay.crypto.file_kek import FileKek
from bastionpay.crypto.kek import (
    KeyEncryptionKey,
    RetirementRefused,
    UnknownKekVersion,
    UnwrapFailed,
    WrappedKey,
)
from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.secrets import Secret

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DEK = bytes(range(32))
CONTEXT = b"acct_1/v1"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture(params=["file", "pkcs11"])
def kek(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock
) -> Iterator[KeyEncryptionKey]:
    if request.param == "file":
        yield FileKek(tmp_path / "kek.json", clock=clock)
        return
    hsm = softhsm()
    from bastionpay.crypto.pkcs11_kek import Pkcs11Config, Pkcs11Kek  # noqa: PLC0415

    config = Pkcs11Config(
        module=hsm.module, token_label=TOKEN, pin=Secret(PIN), key_label_prefix=hsm.prefix()
    )
    backend = Pkcs11Kek(config, clock=clock, create_if_missing=True)
    yield backend
    backend.close()


def test_is_a_key_encryption_key(kek: KeyEncryptionKey) -> None:
    assert isinstance(kek, KeyEncryptionKey)
    assert kek.active_version == 1


def test_wrap_round_trip(kek: KeyEncryptionKey) -> None:
    wrapped = kek.wrap(DEK, context=CONTEXT)
    assert wrapped.kek_version == 1
    assert wrapped.backend == kek.backend
    assert DEK not in wrapped.blob
    assert len(wrapped.blob) == 12 + 32 + 16  # nonce | ciphertext | tag
    unwrapped = kek.unwrap(wrapped, context=CONTEXT)
    assert isinstance(unwrapped, bytearray)
    assert unwrapped == DEK
    assert kek.wrap(DEK, context=CONTEXT).blob != wrapped.blob  # fresh nonce each time


def test_unwrap_is_bound_to_context_and_version(kek: KeyEncryptionKey) -> None:
    wrapped = kek.wrap(DEK, context=CONTEXT)
    with pytest.raises(UnwrapFailed):
        kek.unwrap(wrapped, context=b"acct_2/v1")
    kek.rotate()
    relabelled = dataclasses.replace(wrapped, kek_version=2)
    with pytest.raises(UnwrapFailed):
        kek.unwrap(relabelled, context=CONTEXT)


def test_tampered_wrapped_keys_fail(kek: KeyEncryptionKey) -> None:
    wrapped = kek.wrap(DEK, context=CONTEXT)
    for index in (0, 11, 12, 43, len(wrapped.blob) - 1):
        blob = bytearray(wrapped.blob)
        blob[index] ^= 0x01
        with pytest.raises(UnwrapFailed):
            kek.unwrap(dataclasses.replace(wrapped, blob=bytes(blob)), context=CONTEXT)
    with pytest.raises(UnwrapFailed):
        kek.unwrap(dataclasses.replace(wrapped, blob=wrapped.blob[:8]), context=CONTEXT)
    with pytest.raises(UnwrapFailed):
        kek.unwrap(dataclasses.replace(wrapped, backend="other"), context=CONTEXT)


def test_rotation_and_retirement(kek: KeyEncryptionKey, clock: FrozenClock) -> None:
    old = kek.wrap(DEK, context=CONTEXT)
    clock.advance(3600)
    assert kek.rotate() == 2
    assert kek.active_version == 2
    new = kek.wrap(DEK, context=CONTEXT)
    assert new.kek_version == 2
    assert kek.unwrap(old, context=CONTEXT) == DEK  # old versions stay readable until retired
    status = kek.status()
    assert [(v.version, v.created_at, v.active) for v in status.versions] == [
        (1, T0, False),
        (2, T0 + 3600, True),
    ]
    with pytest.raises(RetirementRefused):
        kek.retire(2)
    kek.retire(1)
    with pytest.raises(UnknownKekVersion):
        kek.unwrap(old, context=CONTEXT)
    with pytest.raises(UnknownKekVersion):
        kek.retire(1)
    assert kek.unwrap(new, context=CONTEXT) == DEK
    assert [v.version for v in kek.status().versions] == [2]


def test_unknown_versions_are_reported(kek: KeyEncryptionKey) -> None:
    wrapped = WrappedKey(backend=kek.backend, kek_version=99, blob=os.urandom(60))
    with pytest.raises(UnknownKekVersion):
        kek.unwrap(wrapped, context=CONTEXT)


def test_reprs_hold_no_key_material(kek: KeyEncryptionKey) -> None:
    wrapped = kek.wrap(DEK, context=CONTEXT)
    assert repr(wrapped) == f"WrappedKey(backend={kek.backend!r}, kek_version=1)"
    assert wrapped.blob.hex() not in repr(wrapped)
    assert kek.key_id in repr(kek)
