"""vault.fingerprint: keyed (HMAC-SHA-256) fingerprints of the whole card number (C3)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from bastionpay.vault.cards import CardNumber
from bastionpay.vault.fingerprint import CardFingerprinter

KEY = bytes(range(32))
VISA = CardNumber.parse("4242424242424242")


def test_fingerprint_is_hmac_sha256_of_the_whole_number_under_a_derived_key() -> None:
    derived = hmac.new(KEY, b"bastionpay/vault-card-fingerprint", hashlib.sha256).digest()
    expected = hmac.new(derived, b"merchant\x00acct_1\x004242424242424242", hashlib.sha256)
    fingerprints = CardFingerprinter(KEY)
    assert fingerprints.for_merchant(VISA, "acct_1") == expected.hexdigest()[:16]
    platform = hmac.new(derived, b"platform\x004242424242424242", hashlib.sha256).hexdigest()
    assert fingerprints.platform(VISA) == platform


def test_fingerprints_are_stable_and_scoped_per_merchant() -> None:
    fingerprints = CardFingerprinter(KEY)
    one = fingerprints.for_merchant(VISA, "acct_1")
    assert one == fingerprints.for_merchant(CardNumber.parse("4242 4242 4242 4242"), "acct_1")
    assert len(one) == 16
    assert one != fingerprints.for_merchant(VISA, "acct_2")
    assert one not in fingerprints.platform(VISA)


def test_same_bin_and_last4_do_not_collide() -> None:
    # Both numbers show 424242******4242; only the middle digits differ.
    other = next(
        number
        for middle in range(1, 1000)
        for number in [f"424242{middle:06d}4242"]
        if _luhn(number)
    )
    fingerprints = CardFingerprinter(KEY)
    assert CardNumber.parse(other).masked() == VISA.masked()
    assert fingerprints.for_merchant(CardNumber.parse(other), "acct_1") != (
        fingerprints.for_merchant(VISA, "acct_1")
    )


def test_without_the_key_fingerprints_cannot_be_recomputed() -> None:
    assert CardFingerprinter(KEY).platform(VISA) != CardFingerprinter(bytes(32)).platform(VISA)
    assert hashlib.sha256(b"4242424242424242").hexdigest() != CardFingerprinter(KEY).platform(VISA)


def test_keys_and_merchants_are_checked() -> None:
    with pytest.raises(ValueError, match="256 bits"):
        CardFingerprinter(b"short")
    with pytest.raises(ValueError, match="merchant"):
        CardFingerprinter(KEY).for_merchant(VISA, "")
    assert KEY.hex() not in repr(CardFingerprinter(KEY))


def _luhn(number: str) -> bool:
    from bastionpay.kernel.pan import luhn_valid  # noqa: PLC0415

    return luhn_valid(number)
