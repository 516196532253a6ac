"""kernel.pan: card-number detection and masking (SECURITY-REQUIREMENTS C2, C5)."""

from __future__ import annotations

import hashlib
import random
import re
import time

import pytest

from bastionpay.kernel.ids import new_id
from bastionpay.kernel.pan import PanMatch, find_pans, luhn_valid, mask_pans

# Stripe's public test numbers (docs.stripe.com/testing) and other networks' test numbers.
STRIPE_TEST_CARDS = [
    "4242424242424242",  # Visa
    "4000056655665556",  # Visa debit
    "5555555555554444",  # Mastercard
    "2223003122003222",  # Mastercard 2-series
    "378282246310005",  # American Express (15)
    "6011111111111117",  # Discover
    "3056930009020004",  # Diners (16)
    "36227206271667",  # Diners (14)
    "3566002020360505",  # JCB
    "6200000000000005",  # UnionPay
    "6205500000000000004",  # UnionPay (19)
    "4222222222222",  # Visa (13)
]


def _digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


def _luhn_complete(body: str) -> str:
    """`body` plus the check digit that makes it Luhn-valid."""
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")  # pragma: no cover


@pytest.mark.parametrize("number", STRIPE_TEST_CARDS)
def test_test_card_numbers_are_luhn_valid_and_found(number: str) -> None:
    assert luhn_valid(number)
    text = f"card {number} declined"
    assert find_pans(text) == [PanMatch(start=5, end=5 + len(number), digits=number)]


@pytest.mark.parametrize(
    "value",
    ["", "4242424242424241", "4242-4242", "42424242424242a2", "４２４２", "0000000000000001"],
)
def test_luhn_rejects_invalid_input(value: str) -> None:
    assert not luhn_valid(value)


def test_spaced_and_dashed_numbers_are_found_with_their_span() -> None:
    text = "pay with 5555 5555 5555 4444 or 3782-822463-10005."
    found = find_pans(text)
    assert [match.digits for match in found] == ["5555555555554444", "378282246310005"]
    assert [text[match.start : match.end] for match in found] == [
        "5555 5555 5555 4444",
        "3782-822463-10005",
    ]
    assert found[0].last4 == "4444"
    assert found[0].masked == "555555******4444"


def test_non_luhn_numbers_are_ignored() -> None:
    assert find_pans("order 4242424242424241 and 4242 4242 4242 4241") == []
    assert mask_pans("order 4242424242424241") == "order 4242424242424241"


@pytest.mark.parametrize("length", [12, 20, 24])
def test_runs_outside_13_to_19_digits_are_not_card_numbers(length: int) -> None:
    number = _luhn_complete("4" * (length - 1))
    assert find_pans(f"id {number} end") == []


def test_separators_must_be_single_spaces_or_dashes() -> None:
    assert find_pans("4242  4242  4242  4242") == []
    assert find_pans("4242--4242--4242--4242") == []
    assert find_pans("4242.4242.4242.4242") == []
    assert find_pans("4242_4242_4242_4242") == []


def test_digit_runs_inside_hex_digests_and_ids_are_ignored() -> None:
    digest = "ab" + "4242424242424242" + hashlib.sha256(b"x").hexdigest()
    assert find_pans(digest) == []
    assert find_pans("a4242424242424242") == []
    assert find_pans("4242424242424242f") == []
    assert find_pans(f"sha256={digest} id={new_id('pi')}") == []
    rng = random.Random(7)
    for _ in range(2_000):
        assert find_pans(hashlib.sha256(rng.randbytes(16)).hexdigest()) == []


def test_punctuation_and_underscores_bound_a_number() -> None:
    for text in [
        "(4242424242424242)",
        "pan=4242424242424242;",
        "card_4242424242424242",
        '"4242424242424242"',
    ]:
        assert [match.digits for match in find_pans(text)] == ["4242424242424242"]


def test_a_card_number_joined_to_other_digit_groups_is_still_found() -> None:
    # A timestamp or amount grouped next to the number must not hide it.
    for text in [
        "2024-01-15 4242 4242 4242 4242",
        "1 2 3 4242424242424242 99",
        "12 4242424242424242",
    ]:
        assert find_pans(text), text
        masked = mask_pans(text)
        assert find_pans(masked) == []
        assert "42424242424" not in masked.replace(" ", "").replace("-", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4242424242424242", "424242******4242"),
        ("card 5555 5555 5555 4444 ok", "card 555555******4444 ok"),
        ("3782-822463-10005", "378282*****0005"),
        ("4222222222222", "422222***2222"),
        ("6205500000000000004", "620550*********0004"),
        ("4242424242424242 123", "424242******4242 123"),
        ("no card here, amount 2000", "no card here, amount 2000"),
    ],
)
def test_masking_keeps_at_most_bin_and_last4(text: str, expected: str) -> None:
    assert mask_pans(text) == expected


def test_masking_drops_kept_digits_that_would_join_neighbours_into_a_new_match() -> None:
    # "1234567" + "424242" would be 13 digits in one run; the BIN is dropped instead.
    masked = mask_pans("1234567 4242424242424242 9876543210")
    assert masked == "1234567 **************** 9876543210"
    assert find_pans(masked) == []
    two = mask_pans("4242424242424242 5555555555554444")
    assert two == "424242********** ************4444"
    assert find_pans(two) == []


def test_masked_output_never_matches_again_fuzz() -> None:
    rng = random.Random(20240115)
    separators = ["", " ", "-"]
    # Neighbours are separated from the number (digits glued on would make it another number).
    lefts = ["", "x ", "12 ", "2024-01-15 ", "9876543210 ", "4242 ", "4242-", "=", "(", "id "]
    rights = ["", " x", " 12", " 2024-01-15", " 9876543210", " 4242", "-4242", ";", ")", " 123"]
    for _ in range(3_000):
        length = rng.randint(13, 19)
        number = _luhn_complete("".join(rng.choice("0123456789") for _ in range(length - 1)))
        separator = rng.choice(separators)
        size = rng.choice([4, 5, 6])
        grouped = separator.join(number[i : i + size] for i in range(0, length, size))
        left, right = rng.choice(lefts), rng.choice(rights)
        text = left + grouped + right
        masked = mask_pans(text)
        assert find_pans(masked) == [], (text, masked)
        assert number not in _digits(masked), (text, masked)
        # At most 10 of the number's digits (BIN and last 4) survive.
        assert len(_digits(masked)) <= len(_digits(left + right)) + 10, (text, masked)


def test_mask_is_idempotent() -> None:
    text = "a 4242424242424242 b 5555-5555-5555-4444 c"
    once = mask_pans(text)
    assert mask_pans(once) == once


def test_detection_is_linear_on_adversarial_input() -> None:
    rng = random.Random(3)
    hostile = " ".join(str(rng.randint(0, 9)) for _ in range(50_000))  # 100 kB of 1-digit groups
    started = time.perf_counter()
    masked = mask_pans(hostile)
    assert find_pans(masked) == []
    assert find_pans("4" * 200_000 + "a") == []
    assert time.perf_counter() - started < 10  # ~0.5 s in practice; catches quadratic blow-ups
