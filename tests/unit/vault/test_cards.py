"""vault.cards: card number, expiry and CVC validation with Stripe's error codes (C1, C2, C3)."""

from __future__ import annotations

import datetime as dt
import json
import pickle

import pytest

from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.errors import CardError
from bastionpay.kernel.pan import find_pans, luhn_valid
from bastionpay.vault.cards import (
    STRIPE_TEST_CARDS,
    STRIPE_TEST_CARDS_BY_PAYMENT_METHOD,
    Brand,
    CardNumber,
    Expiry,
    SecurityCode,
    validate_card,
)

NOW = int(dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.UTC).timestamp())


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


def complete(prefix: str, length: int) -> str:
    """`prefix`, zero-padded to `length`, with the one final digit that passes the Luhn check."""
    body = prefix.ljust(length - 1, "0")
    return next(body + digit for digit in "0123456789" if luhn_valid(body + digit))


def refused(raw: object) -> CardError:
    with pytest.raises(CardError) as caught:
        CardNumber.parse(raw)
    return caught.value


# --- Stripe's test cards: an independent copy of /work/shared/reference/test-cards-and-codes.md ---
REFERENCE = [
    ("pm_card_visa", "4242424242424242", "visa", "credit"),
    ("pm_card_visa_debit", "4000056655665556", "visa", "debit"),
    ("pm_card_mastercard", "5555555555554444", "mastercard", "credit"),
    ("pm_card_mastercard_debit", "5200828282828210", "mastercard", "debit"),
    ("pm_card_mastercard_prepaid", "5105105105105100", "mastercard", "prepaid"),
    ("pm_card_amex", "378282246310005", "amex", "credit"),
    ("pm_card_discover", "6011111111111117", "discover", "credit"),
    ("pm_card_diners", "3056930009020004", "diners", "credit"),
    ("pm_card_jcb", "3566002020360505", "jcb", "credit"),
    ("pm_card_unionpay", "6200000000000005", "unionpay", "credit"),
    ("pm_card_chargeDeclined", "4000000000000002", "visa", "credit"),
    ("pm_card_chargeDeclinedInsufficientFunds", "4000000000009995", "visa", "credit"),
    ("pm_card_chargeDeclinedLostCard", "4000000000009987", "visa", "credit"),
    ("pm_card_chargeDeclinedStolenCard", "4000000000009979", "visa", "credit"),
    ("pm_card_chargeDeclinedExpiredCard", "4000000000000069", "visa", "credit"),
    ("pm_card_chargeDeclinedIncorrectCvc", "4000000000000127", "visa", "credit"),
    ("pm_card_chargeDeclinedProcessingError", "4000000000000119", "visa", "credit"),
    ("pm_card_chargeDeclinedVelocityLimitExceeded", "4000000000006975", "visa", "credit"),
    ("pm_card_radarBlock", "4100000000000019", "visa", "credit"),
    ("pm_card_riskLevelHighest", "4000000000004954", "visa", "credit"),
    ("pm_card_riskLevelElevated", "4000000000009235", "visa", "credit"),
    ("pm_card_cvcCheckFail", "4000000000000101", "visa", "credit"),
    ("pm_card_authenticationRequired", "4000002760003184", "visa", "credit"),
    ("pm_card_threeDSecure2Required", "4000000000003220", "visa", "credit"),
    (None, "4000008260003178", "visa", "credit"),
    ("pm_card_createDispute", "4000000000000259", "visa", "credit"),
    ("pm_card_createDisputeProductNotReceived", "4000000000002685", "visa", "credit"),
    ("pm_card_createDisputeInquiry", "4000000000001976", "visa", "credit"),
]


@pytest.mark.parametrize(("payment_method", "number", "brand", "funding"), REFERENCE)
def test_stripe_test_cards_are_valid_with_the_right_brand(
    clock: FrozenClock, payment_method: str | None, number: str, brand: str, funding: str
) -> None:
    card = validate_card(number, 12, 2034, "1234" if brand == "amex" else "123", clock=clock)
    metadata = card.metadata()
    assert (metadata.brand, metadata.funding, metadata.country) == (brand, funding, "US")
    assert metadata.last4 == number[-4:]
    if payment_method is not None:
        assert STRIPE_TEST_CARDS_BY_PAYMENT_METHOD[payment_method].number == number


def test_the_table_in_the_module_is_exactly_the_reference() -> None:
    assert [
        (c.payment_method, c.number, c.brand.wire, c.funding.value) for c in STRIPE_TEST_CARDS
    ] == (REFERENCE)


def test_luhn_failures_are_incorrect_number() -> None:
    error = refused("4242424242424241")  # the reference's Luhn-failing card
    assert (error.code, error.param, error.error_type, error.http_status) == (
        "incorrect_number",
        "number",
        "card_error",
        402,
    )
    for _, number, _, _ in REFERENCE:
        wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
        assert refused(wrong).code == "incorrect_number"


BOUNDARIES = [
    # (prefix, length, brand or None for "not a card number")
    ("4", 13, Brand.VISA),
    ("4", 16, Brand.VISA),
    ("4", 19, Brand.VISA),
    ("4", 15, None),
    ("50", 16, None),
    ("51", 16, Brand.MASTERCARD),
    ("55", 16, Brand.MASTERCARD),
    ("56", 16, None),
    ("2220", 16, None),
    ("2221", 16, Brand.MASTERCARD),
    ("2720", 16, Brand.MASTERCARD),
    ("2721", 16, None),
    ("51", 15, None),
    ("33", 15, None),
    ("34", 15, Brand.AMEX),
    ("37", 15, Brand.AMEX),
    ("37", 16, None),
    ("6010", 16, None),
    ("6011", 16, Brand.DISCOVER),
    ("6011", 19, Brand.DISCOVER),
    ("6012", 16, None),
    ("643", 16, None),
    ("644", 16, Brand.DISCOVER),
    ("649", 16, Brand.DISCOVER),
    ("65", 16, Brand.DISCOVER),
    ("66", 16, None),
    ("622125", 16, Brand.UNIONPAY),
    ("622126", 16, Brand.DISCOVER),
    ("622925", 16, Brand.DISCOVER),
    ("622926", 16, Brand.UNIONPAY),
    ("62", 19, Brand.UNIONPAY),
    ("8099", 16, None),
    ("8100", 16, Brand.UNIONPAY),
    ("8171", 16, Brand.UNIONPAY),
    ("8172", 16, None),
    ("299", 14, None),
    ("300", 14, Brand.DINERS),
    ("305", 14, Brand.DINERS),
    ("306", 14, None),
    ("3094", 14, None),
    ("3095", 14, Brand.DINERS),
    ("3096", 14, None),
    ("36", 14, Brand.DINERS),
    ("36", 13, None),
    ("38", 16, Brand.DINERS),
    ("39", 16, Brand.DINERS),
    ("3527", 16, None),
    ("3528", 16, Brand.JCB),
    ("3589", 16, Brand.JCB),
    ("3590", 16, None),
    ("3528", 15, None),
    ("5018", 13, Brand.MAESTRO),
    ("5020", 16, Brand.MAESTRO),
    ("5038", 19, Brand.MAESTRO),
    ("5893", 16, Brand.MAESTRO),
    ("6304", 16, Brand.MAESTRO),
    ("6759", 16, Brand.MAESTRO),
    ("6760", 16, None),
    ("6761", 16, Brand.MAESTRO),
    ("6763", 16, Brand.MAESTRO),
    ("6764", 16, None),
    ("5018", 12, None),  # 12-digit Maestro: below what the C5 scanner can see
    ("4", 20, None),
]


@pytest.mark.parametrize(("prefix", "length", "brand"), BOUNDARIES)
def test_brand_range_boundaries(prefix: str, length: int, brand: Brand | None) -> None:
    number = complete(prefix, length)
    if brand is None:
        assert refused(number).code == "invalid_number"
    else:
        assert CardNumber.parse(number).brand is brand


def test_unknown_brands_only_when_allowed() -> None:
    number = complete("99", 16)
    assert refused(number).code == "invalid_number"
    card = CardNumber.parse(number, allow_unknown_brand=True)
    assert card.brand is Brand.UNKNOWN
    assert card.brand.cvc_lengths == {3, 4}


def test_maestro_is_reported_as_mastercard(clock: FrozenClock) -> None:
    card = validate_card(complete("6759", 16), 1, 30, clock=clock)
    assert card.number.brand is Brand.MAESTRO
    assert card.metadata().brand == "mastercard"
    assert (card.metadata().funding, card.metadata().country) == ("unknown", None)


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("4242 4242 4242 4242", "4242424242424242"),
        ("4242-4242-4242-4242", "4242424242424242"),
        (" 378282246310005 ", "378282246310005"),
        ("3782 822463 10005", "378282246310005"),
    ],
)
def test_typed_separators_are_accepted(raw: str, digits: str) -> None:
    assert CardNumber.parse(raw).reveal() == digits


@pytest.mark.parametrize(
    "raw",
    [
        "4242  4242 4242 4242",  # double separator
        "4242_4242_4242_4242",
        "4242424242424242x",
        "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢",  # Arabic-Indic digits: isdigit() but not ASCII
        "4" * 41,
        "",
        4242424242424242,
        None,
    ],
)
def test_malformed_numbers_are_invalid_number(raw: object) -> None:
    error = refused(raw)
    assert (error.code, error.param) == ("invalid_number", "number")


@pytest.mark.parametrize(
    "raw",
    ["4242424242424241", "4242 4242 4242 424", complete("99", 16), "4242424242424242" + "0" * 5],
)
def test_errors_never_echo_the_number(raw: str) -> None:
    error = refused(raw)
    digits = raw.replace(" ", "")
    rendered = f"{error!s} {error!r} {json.dumps(error.to_wire())} {error.args!r}"
    assert digits not in rendered
    assert digits[-4:] not in rendered
    assert not find_pans(rendered)
    assert error.__context__ is None


def test_card_numbers_never_print() -> None:
    card = CardNumber.parse("4242424242424242")
    for rendered in (repr(card), str(card), f"{card}", "%s" % card, format(card, "")):  # noqa: UP031
        assert "4242424242424242" not in rendered
        assert not find_pans(rendered)
    assert repr(card) == "CardNumber(visa ****4242)"
    assert str(card) == card.masked() == "424242******4242"
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(card)
    with pytest.raises(TypeError):
        json.dumps(card)


def test_display_is_at_most_bin_and_last4() -> None:
    amex = CardNumber.parse("378282246310005")
    assert amex.masked() == "378282*****0005"
    display = amex.display
    assert (display.brand, display.bin, display.last4) == (Brand.AMEX, "378282", "0005")
    assert len(display.bin) + len(display.last4) == 10  # of 15 digits
    assert amex.bin6 == "378282"
    assert amex.last4 == "0005"


def test_equality_is_by_value() -> None:
    assert CardNumber.parse("4242 4242 4242 4242") == CardNumber.parse("4242424242424242")
    assert CardNumber.parse("4242424242424242") != CardNumber.parse("5555555555554444")
    assert hash(CardNumber.parse("4242424242424242")) == hash(CardNumber.parse("4242424242424242"))


# --- expiry, with a clock frozen at 2026-03-15 12:00 UTC ---


@pytest.mark.parametrize(
    ("month", "year", "expected"),
    [
        (3, 2026, (3, 2026)),  # the current month is still valid
        ("03", "2026", (3, 2026)),
        ("3", "26", (3, 2026)),  # two-digit year
        (12, 26, (12, 2026)),
        (1, 2076, (1, 2076)),  # 50 years ahead
        ("12", "99", None),  # 2099 is too far ahead
    ],
)
def test_expiry_accepts_stripe_forms(
    clock: FrozenClock, month: object, year: object, expected: tuple[int, int] | None
) -> None:
    if expected is None:
        with pytest.raises(CardError) as caught:
            Expiry.parse(month, year, clock=clock)
        assert (caught.value.code, caught.value.param) == ("invalid_expiry_year", "exp_year")
        return
    expiry = Expiry.parse(month, year, clock=clock)
    assert (expiry.month, expiry.year) == expected


@pytest.mark.parametrize(
    ("month", "year", "code", "param"),
    [
        (2, 2026, "expired_card", "exp_month"),
        ("02", "26", "expired_card", "exp_month"),
        (12, 2025, "expired_card", "exp_year"),
        (1, 2077, "invalid_expiry_year", "exp_year"),
        (0, 2027, "invalid_expiry_month", "exp_month"),
        (13, 2027, "invalid_expiry_month", "exp_month"),
        ("1a", 2027, "invalid_expiry_month", "exp_month"),
        ("-1", 2027, "invalid_expiry_month", "exp_month"),
        (True, 2027, "invalid_expiry_month", "exp_month"),
        ("", 2027, "invalid_expiry_month", "exp_month"),
        (None, 2027, "invalid_expiry_month", "exp_month"),
        ("١", 2027, "invalid_expiry_month", "exp_month"),
        (1, "202", "invalid_expiry_year", "exp_year"),
        (1, 202, "invalid_expiry_year", "exp_year"),
        (1, "7", "invalid_expiry_year", "exp_year"),
        (1, "20271", "invalid_expiry_year", "exp_year"),
        (1, " 2027", "invalid_expiry_year", "exp_year"),
        (1, 2027.0, "invalid_expiry_year", "exp_year"),
    ],
)
def test_expiry_errors(
    clock: FrozenClock, month: object, year: object, code: str, param: str
) -> None:
    with pytest.raises(CardError) as caught:
        Expiry.parse(month, year, clock=clock)
    assert (caught.value.code, caught.value.param) == (code, param)


def test_a_card_expires_at_the_end_of_its_month() -> None:
    last_second = int(dt.datetime(2026, 3, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp())
    clock = FrozenClock(last_second)
    expiry = Expiry.parse(3, 2026, clock=clock)
    assert not expiry.expired(clock)
    clock.advance(1)
    assert expiry.expired(clock)
    with pytest.raises(CardError, match="expired"):
        Expiry.parse(3, 2026, clock=clock)


def test_december_rolls_into_the_next_year() -> None:
    expiry = Expiry(month=12, year=2026)
    assert expiry.ends_at == int(dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp())


# --- CVC ---


@pytest.mark.parametrize(
    ("brand", "cvc", "ok"),
    [
        (Brand.VISA, "123", True),
        (Brand.VISA, "012", True),
        (Brand.VISA, "1234", False),
        (Brand.VISA, "12", False),
        (Brand.AMEX, "1234", True),
        (Brand.AMEX, "123", False),
        (Brand.MASTERCARD, "12a", False),
        (Brand.DISCOVER, "١٢٣", False),
        (Brand.JCB, 123, False),
        (Brand.UNKNOWN, "1234", True),
        (Brand.UNKNOWN, "123", True),
    ],
)
def test_cvc_lengths_per_brand(brand: Brand, cvc: object, ok: bool) -> None:
    if ok:
        assert SecurityCode.parse(cvc, brand).reveal() == cvc
        return
    with pytest.raises(CardError) as caught:
        SecurityCode.parse(cvc, brand)
    assert (caught.value.code, caught.value.param) == ("invalid_cvc", "cvc")
    assert str(cvc) not in caught.value.message


def test_cvcs_never_print_or_pickle() -> None:
    cvc = SecurityCode.parse("987", Brand.VISA)
    assert "987" not in f"{cvc!r} {cvc!s} {cvc}"
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(cvc)


def test_cvc_is_optional_unless_required(clock: FrozenClock) -> None:
    assert validate_card("4242424242424242", 1, 2030, clock=clock).cvc is None
    assert validate_card("4242424242424242", 1, 2030, "", clock=clock).cvc is None
    with pytest.raises(CardError) as caught:
        validate_card("4242424242424242", 1, 2030, clock=clock, require_cvc=True)
    assert (caught.value.code, caught.value.param) == ("invalid_cvc", "cvc")


def test_validation_reports_the_number_first(clock: FrozenClock) -> None:
    with pytest.raises(CardError) as caught:
        validate_card("4242424242424241", 13, 1999, "x", clock=clock)
    assert caught.value.param == "number"
    with pytest.raises(CardError) as caught:
        validate_card("4242424242424242", 13, 1999, "x", clock=clock)
    assert caught.value.param == "exp_month"
    with pytest.raises(CardError) as caught:
        validate_card("378282246310005", 1, 2030, "123", clock=clock)
    assert caught.value.param == "cvc"


def test_a_validated_card_prints_nothing_sensitive(clock: FrozenClock) -> None:
    card = validate_card("378282246310005", 4, 2030, "7319", clock=clock)
    rendered = f"{card!r} {card}"
    assert "378282246310005" not in rendered
    assert "7319" not in rendered
    assert rendered.startswith("Card(CardNumber(amex ****0005), exp=04/2030, cvc=present)")
