"""crypto.envelope: AES-256-GCM records bound to merchant, record and purpose (C3, C4)."""

from __future__ import annotations

import os
import pickle
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastionpay.crypto.envelope import (
    ENCRYPTION_LIMIT,
    FORMAT_TAG,
    HEADER_BYTES,
    NONCE_BYTES,
    OVERHEAD,
    ROTATE_AFTER,
    TAG_BYTES,
    Binding,
    DataKey,
    DecryptionFailed,
    EnvelopeError,
    KeyDestroyed,
    LocalCounter,
    NonceBudgetExhausted,
    UnsupportedFormat,
    dek_version_of,
    generate_key_material,
    parse_header,
)

PAN = b"4242424242424242"
BINDING = Binding("acct_1", "pm_1", "pan")


@pytest.fixture
def key() -> DataKey:
    return DataKey(generate_key_material(), 7)


def test_round_trip_and_documented_layout(key: DataKey) -> None:
    sealed = key.encrypt(PAN, BINDING)
    assert len(sealed) == len(PAN) + OVERHEAD == len(PAN) + 35
    assert sealed[:3] == FORMAT_TAG == b"bp1"
    assert struct.unpack(">I", sealed[3:7]) == (7,)
    assert dek_version_of(sealed) == 7
    assert parse_header(sealed).nonce == sealed[7:19]
    assert PAN not in sealed
    assert key.decrypt(sealed, BINDING) == PAN


def test_layout_decrypts_with_the_raw_primitive() -> None:
    """The module docstring's layout and associated data, rebuilt by hand, open the ciphertext."""
    material = os.urandom(32)
    sealed = DataKey(material, 3).encrypt(PAN, BINDING)
    header, nonce, body = sealed[:7], sealed[7:19], sealed[19:]
    aad = header
    for field in (b"acct_1", b"pm_1", b"pan"):
        aad += struct.pack(">H", len(field)) + field
    assert AESGCM(material).decrypt(nonce, body, aad) == PAN


REGIONS = {
    "format": range(0, 3),
    "dek_version": range(3, 7),
    "nonce": range(7, 7 + NONCE_BYTES),
    "ciphertext": range(HEADER_BYTES + NONCE_BYTES, HEADER_BYTES + NONCE_BYTES + len(PAN)),
    "tag": range(OVERHEAD - TAG_BYTES + len(PAN), OVERHEAD + len(PAN)),
}


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_every_tampered_byte_is_rejected(key: DataKey, region: str) -> None:
    sealed = key.encrypt(PAN, BINDING)
    for index in REGIONS[region]:
        for bit in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[index] ^= bit
            expected = UnsupportedFormat if region == "format" else DecryptionFailed
            with pytest.raises(expected):
                key.decrypt(bytes(tampered), BINDING)


def test_regions_cover_the_whole_ciphertext() -> None:
    covered = sorted(index for region in REGIONS.values() for index in region)
    assert covered == list(range(len(PAN) + OVERHEAD))


def test_truncated_or_extended_ciphertexts_are_rejected(key: DataKey) -> None:
    sealed = key.encrypt(PAN, BINDING)
    for cut in (0, 1, HEADER_BYTES, OVERHEAD - 1, len(sealed) - 1):
        with pytest.raises(DecryptionFailed):
            key.decrypt(sealed[:cut], BINDING)
    with pytest.raises(DecryptionFailed):
        key.decrypt(sealed + b"\x00", BINDING)


@pytest.mark.parametrize(
    "other",
    [
        Binding("acct_2", "pm_1", "pan"),  # another merchant
        Binding("acct_1", "pm_2", "pan"),  # another record
        Binding("acct_1", "pm_1", "cvc"),  # the pan ciphertext offered as the cvc
    ],
    ids=["merchant", "record", "purpose"],
)
def test_a_ciphertext_moved_to_another_binding_fails(key: DataKey, other: Binding) -> None:
    sealed = key.encrypt(PAN, BINDING)
    with pytest.raises(DecryptionFailed):
        key.decrypt(sealed, other)
    assert key.decrypt(sealed, BINDING) == PAN


def test_the_cvc_column_cannot_be_read_as_the_pan(key: DataKey) -> None:
    cvc = key.encrypt(b"123", Binding("acct_1", "pm_1", "cvc"))
    with pytest.raises(DecryptionFailed):
        key.decrypt(cvc, BINDING)


def test_binding_encoding_is_injective() -> None:
    assert Binding("a", "bc", "pan").encode() != Binding("ab", "c", "pan").encode()
    key = DataKey(generate_key_material(), 1)
    sealed = key.encrypt(PAN, Binding("a", "bc", "pan"))
    with pytest.raises(DecryptionFailed):
        key.decrypt(sealed, Binding("ab", "c", "pan"))


@pytest.mark.parametrize("field", ["", "x" * 256])
def test_binding_fields_are_bounded(key: DataKey, field: str) -> None:
    with pytest.raises(ValueError, match="binding"):
        key.encrypt(PAN, Binding(field, "pm_1", "pan"))


def test_nonces_never_repeat_and_ciphertexts_differ(key: DataKey) -> None:
    count = 20_000
    sealed = [key.encrypt(PAN, BINDING) for _ in range(count)]
    assert len({parse_header(item).nonce for item in sealed}) == count
    assert len(set(sealed)) == count
    assert key.counter.used == count  # type: ignore[attr-defined]


def test_another_key_with_the_same_version_cannot_decrypt(key: DataKey) -> None:
    sealed = key.encrypt(PAN, BINDING)
    with pytest.raises(DecryptionFailed):
        DataKey(generate_key_material(), 7).decrypt(sealed, BINDING)


def test_another_key_version_is_refused_before_decrypting(key: DataKey) -> None:
    sealed = key.encrypt(PAN, BINDING)
    with pytest.raises(DecryptionFailed, match="another data key version"):
        DataKey(generate_key_material(), 8).decrypt(sealed, BINDING)


def test_unknown_format_versions_are_refused(key: DataKey) -> None:
    sealed = key.encrypt(PAN, BINDING)
    with pytest.raises(UnsupportedFormat):
        key.decrypt(b"bp2" + sealed[3:], BINDING)
    with pytest.raises(DecryptionFailed):
        parse_header(b"bp1" + bytes(4) + bytes(NONCE_BYTES + TAG_BYTES))  # version 0


def test_counter_refuses_encryption_past_its_limit() -> None:
    counter = LocalCounter(limit=3)
    key = DataKey(generate_key_material(), 1, counter=counter)
    sealed = [key.encrypt(PAN, BINDING) for _ in range(3)]
    assert counter.used == 3
    assert counter.remaining == 0
    assert counter.rotation_due
    with pytest.raises(NonceBudgetExhausted):
        key.encrypt(PAN, BINDING)
    assert counter.used == 3  # a refused encryption draws no nonce and counts nothing
    assert [key.decrypt(item, BINDING) for item in sealed] == [PAN] * 3  # decryption is free


def test_counter_bounds_are_well_below_the_gcm_limit() -> None:
    # SP 800-38D §8.3: at most 2^32 random-nonce encryptions per key.
    assert ROTATE_AFTER < ENCRYPTION_LIMIT <= 2**30 < 2**32
    assert not LocalCounter(ROTATE_AFTER - 1).rotation_due
    assert LocalCounter(ROTATE_AFTER).rotation_due
    assert LocalCounter(ENCRYPTION_LIMIT).remaining == 0


def test_destroy_zeroes_the_key_and_disables_it() -> None:
    material = generate_key_material()
    key = DataKey(material, 1)
    sealed = key.encrypt(PAN, BINDING)
    key.destroy()
    assert material == bytearray(32)
    assert key.destroyed
    with pytest.raises(KeyDestroyed):
        key.decrypt(sealed, BINDING)
    with pytest.raises(KeyDestroyed):
        key.encrypt(PAN, BINDING)


def test_keys_never_print_or_pickle() -> None:
    material = generate_key_material()
    key = DataKey(material, 4)
    assert repr(key) == "DataKey(version=4, live)"
    assert material.hex() not in repr(key) + str(key)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(key)


def test_errors_carry_no_plaintext_or_key(key: DataKey) -> None:
    sealed = key.encrypt(PAN, BINDING)
    with pytest.raises(EnvelopeError) as caught:
        key.decrypt(sealed, Binding("acct_2", "pm_1", "pan"))
    text = f"{caught.value!s} {caught.value!r}"
    assert "4242" not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_key_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="256-bit"):
        DataKey(bytes(16), 1)
    with pytest.raises(ValueError, match="versions"):
        DataKey(bytes(32), 0)
    with pytest.raises(ValueError, match="too large"):
        DataKey(bytes(32), 1).encrypt(bytes(64 * 1024 + 1), BINDING)
