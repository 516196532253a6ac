"""kernel: money, ids, secrets."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from bastionpay.kernel import ids, money
from bastionpay.kernel.ids import new_id, random_base62
from bastionpay.kernel.secrets import MASK, Secret


@pytest.mark.parametrize(
    ("amount", "expected"),
    [(2000, 58 + 30), (100, 3 + 30), (50, 1 + 30), (1, 1), (0, 0), (99_999_999, 2_900_000 + 30)],
)
def test_fee_is_2_9_percent_plus_30_rounded_half_up_and_never_above_amount(
    amount: int, expected: int
) -> None:
    assert money.percentage_fee(amount, 290, 30) == expected


def test_fee_rounds_half_up() -> None:
    # 1 000 × 2.5 % = 25 exactly; 1 020 × 2.5 % = 25.5 → 26
    assert money.percentage_fee(1_020, 250, 0) == 26
    assert money.percentage_fee(1_019, 250, 0) == 25


def test_fee_rejects_negative_inputs() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        money.percentage_fee(-1, 290, 30)


def test_currency_exponents_follow_iso_4217() -> None:
    assert money.exponent("usd") == 2
    assert money.exponent("JPY") == 0
    assert money.exponent("kwd") == 3
    with pytest.raises(money.UnknownCurrency):
        money.normalize_currency("xyz")


def test_money_refuses_floats_and_formats_by_exponent() -> None:
    with pytest.raises(TypeError):
        money.Money(10.5, "usd")  # type: ignore[arg-type]
    assert money.Money(2000, "usd").format() == "20.00 USD"
    assert money.Money(500, "jpy").format() == "500 JPY"
    assert money.Money(-1234, "kwd").format() == "-1.234 KWD"


def test_ids_have_prefix_and_24_base62_characters_and_do_not_repeat() -> None:
    ids = {new_id("pi") for _ in range(2_000)}
    assert len(ids) == 2_000
    assert all(re.fullmatch(r"pi_[0-9A-Za-z]{24}", value) for value in ids)


def test_secret_never_prints_and_compares_in_constant_time() -> None:
    secret = Secret("sk_test_abc")
    assert str(secret) == MASK
    assert "sk_test" not in repr(secret)
    assert f"{secret}" == MASK
    assert secret == Secret("sk_test_abc")
    assert secret != Secret("sk_test_abd")
    assert secret.reveal() == "sk_test_abc"


def test_id_digits_reject_high_bytes_and_map_the_rest_evenly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bytes 248–255 are dropped (no modulo bias); 0–247 map 4-to-1 onto the 62 digits."""
    draws = iter([bytes([255, 248, 0, 61, 62, 247]) + bytes(30), bytes(40)])
    monkeypatch.setattr(ids.secrets, "token_bytes", lambda n: next(draws))
    assert ids.random_base62(4) == "0Z0Z"  # 0 → '0', 61 → 'Z', 62 → '0', 247 → 'Z'
    # Every digit has exactly four preimages among the accepted bytes.
    mapped = bytes(range(248)).translate(ids._TO_DIGIT, ids._REJECTED).decode()
    assert len(mapped) == 248
    assert all(mapped.count(c) == 4 for c in set(mapped)) and len(set(mapped)) == 62


def test_id_digits_are_roughly_uniform() -> None:
    counts = Counter("".join(random_base62(24) for _ in range(10_000)))
    expected = 240_000 / 62
    chi_square = sum((counts[c] - expected) ** 2 / expected for c in counts)
    # 61 degrees of freedom: p < 1e-6 beyond ~125; a biased mapping lands in the thousands.
    assert len(counts) == 62 and chi_square < 125
