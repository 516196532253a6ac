"""Card data validation: number (Luhn, brand by BIN, length), expiry and CVC (C1, C2, C3).

Everything raises `CardError` with Stripe's `code` and `param` (`invalid_number`, `incorrect_number`
on `number`; `invalid_expiry_month`, `invalid_expiry_year`, `expired_card` on `exp_month` /
`exp_year`; `invalid_cvc` on `cvc`). Messages are Stripe's wording and never echo the input, so an
error can be logged and returned as is (L3, C5).

Card numbers and CVCs are `Secret`s: `str()`, `repr()` and f-strings show a mask, equality is
constant-time, and they refuse to be pickled (a pickled card number in a queue or cache would be
stored in clear, C3). The most a card number shows is its BIN and last four digits (C2, PCI DSS
3.4.1): `CardNumber.masked()` and `CardNumber.display`.

Brand detection is by IIN/BIN prefix range, longest prefix first, from the networks' published
ranges:

| brand      | prefixes                                                   | lengths |
|------------|------------------------------------------------------------|---------|
| visa       | 4                                                          | 13, 16, 19 |
| mastercard | 51-55, 2221-2720                                           | 16 |
| amex       | 34, 37                                                     | 15 |
| discover   | 6011, 644-649, 65, 622126-622925 (UnionPay co-badged range) | 16-19 |
| diners     | 300-305, 3095, 36, 38-39                                   | 14-19 |
| jcb        | 3528-3589                                                  | 16-19 |
| unionpay   | 62 (outside 622126-622925), 8100-8171                      | 16-19 |
| maestro    | 5018, 5020, 5038, 5893, 6304, 6759, 6761-6763              | 13-19 |

Maestro is a Mastercard product and Stripe reports it as `mastercard` (`Brand.wire`). 12-digit
Maestro numbers exist but are refused: the card-number scanner (C5) looks for 13-19 digits, and a
number the scanner cannot see must not be accepted. Every brand must pass the Luhn check; Stripe's
test numbers all do.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, NoReturn, SupportsIndex

from bastionpay.kernel.clock import Clock
from bastionpay.kernel.errors import CardError
from bastionpay.kernel.pan import (
    KEEP_FIRST,
    KEEP_LAST,
    MASK_CHAR,
    PAN_MAX_DIGITS,
    PAN_MIN_DIGITS,
    luhn_valid,
)
from bastionpay.kernel.secrets import MASK, Secret

MAX_RAW_NUMBER: Final = 40  # 19 digits with separators; longer input is refused unread
MAX_YEARS_AHEAD: Final = 50  # Stripe-style bound on far-future expiry years


class Brand(StrEnum):
    VISA = "visa"
    MASTERCARD = "mastercard"
    AMEX = "amex"
    DISCOVER = "discover"
    DINERS = "diners"
    JCB = "jcb"
    UNIONPAY = "unionpay"
    MAESTRO = "maestro"
    UNKNOWN = "unknown"

    @property
    def wire(self) -> str:
        """The value of Stripe's `card.brand`."""
        return "mastercard" if self is Brand.MAESTRO else self.value

    @property
    def cvc_lengths(self) -> frozenset[int]:
        if self is Brand.AMEX:
            return frozenset({4})
        if self is Brand.UNKNOWN:
            return frozenset({3, 4})
        return frozenset({3})


class Funding(StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"
    PREPAID = "prepaid"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class BinRange:
    low: str
    high: str
    brand: Brand
    lengths: frozenset[int]

    def matches(self, digits: str) -> bool:
        prefix = digits[: len(self.low)]
        return len(prefix) == len(self.low) and self.low <= prefix <= self.high


def _lengths(first: int, last: int) -> frozenset[int]:
    return frozenset(range(first, last + 1))


_VISA = frozenset({13, 16, 19})
_SIXTEEN = frozenset({16})
_DISCOVER = _lengths(16, 19)
_DINERS = _lengths(14, 19)
_JCB = _lengths(16, 19)
_UNIONPAY = _lengths(16, 19)
_MAESTRO = _lengths(13, 19)

# Longest prefix wins, so the ranges below may overlap shorter ones (622126-622925 inside 62).
BIN_RANGES: Final[tuple[BinRange, ...]] = tuple(
    sorted(
        (
            BinRange("4", "4", Brand.VISA, _VISA),
            BinRange("51", "55", Brand.MASTERCARD, _SIXTEEN),
            BinRange("2221", "2720", Brand.MASTERCARD, _SIXTEEN),
            BinRange("34", "34", Brand.AMEX, frozenset({15})),
            BinRange("37", "37", Brand.AMEX, frozenset({15})),
            BinRange("6011", "6011", Brand.DISCOVER, _DISCOVER),
            BinRange("644", "649", Brand.DISCOVER, _DISCOVER),
            BinRange("65", "65", Brand.DISCOVER, _DISCOVER),
            BinRange("622126", "622925", Brand.DISCOVER, _DISCOVER),
            BinRange("300", "305", Brand.DINERS, _DINERS),
            BinRange("3095", "3095", Brand.DINERS, _DINERS),
            BinRange("36", "36", Brand.DINERS, _DINERS),
            BinRange("38", "39", Brand.DINERS, _DINERS),
            BinRange("3528", "3589", Brand.JCB, _JCB),
            BinRange("62", "62", Brand.UNIONPAY, _UNIONPAY),
            BinRange("8100", "8171", Brand.UNIONPAY, _UNIONPAY),
            BinRange("5018", "5018", Brand.MAESTRO, _MAESTRO),
            BinRange("5020", "5020", Brand.MAESTRO, _MAESTRO),
            BinRange("5038", "5038", Brand.MAESTRO, _MAESTRO),
            BinRange("5893", "5893", Brand.MAESTRO, _MAESTRO),
            BinRange("6304", "6304", Brand.MAESTRO, _MAESTRO),
            BinRange("6759", "6759", Brand.MAESTRO, _MAESTRO),
            BinRange("6761", "6763", Brand.MAESTRO, _MAESTRO),
        ),
        key=lambda entry: -len(entry.low),
    )
)

# Digits in groups separated by single spaces or dashes, as people type them.
_NUMBER_RE: Final = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_DIGITS_RE: Final = re.compile(r"[0-9]+")


def brand_of(digits: str) -> BinRange | None:
    """The BIN range `digits` falls in (longest prefix first), or None."""
    for entry in BIN_RANGES:
        if entry.matches(digits):
            return entry
    return None


def _refuse(code: str, param: str, message: str) -> NoReturn:
    # `from None` at every call site would be easy to forget; raising here keeps the input out of
    # any exception context.
    raise CardError(message, code=code, param=param)


class _NoPickle:
    __slots__ = ()

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError("card data cannot be pickled (C1, C3)")


class CardNumber(_NoPickle, Secret):
    """A validated card number (PAN). Prints masked; `reveal()` gives the digits."""

    __slots__ = ("_brand",)

    def __init__(self, digits: str, brand: Brand) -> None:
        super().__init__(digits)
        self._brand = brand

    @classmethod
    def parse(cls, raw: object, *, allow_unknown_brand: bool = False) -> CardNumber:
        if not isinstance(raw, str) or len(raw) > MAX_RAW_NUMBER:
            _refuse("invalid_number", "number", "Your card number is invalid.")
        text = raw.strip()
        if not _NUMBER_RE.fullmatch(text):  # ASCII digits only: no other scripts' digits
            _refuse("invalid_number", "number", "Your card number is invalid.")
        digits = "".join(_DIGITS_RE.findall(text))
        if not PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS:
            _refuse("invalid_number", "number", "Your card number is invalid.")
        entry = brand_of(digits)
        if entry is None:
            if not allow_unknown_brand:
                _refuse("invalid_number", "number", "Your card number is invalid.")
            brand = Brand.UNKNOWN
        else:
            if len(digits) not in entry.lengths:
                _refuse("invalid_number", "number", "Your card number is invalid.")
            brand = entry.brand
        if not luhn_valid(digits):
            _refuse("incorrect_number", "number", "Your card number is incorrect.")
        return cls(digits, brand)

    @property
    def brand(self) -> Brand:
        return self._brand

    @property
    def bin6(self) -> str:
        return self.reveal()[:KEEP_FIRST]

    @property
    def last4(self) -> str:
        return self.reveal()[-KEEP_LAST:]

    @property
    def requires_authentication(self) -> bool:
        """Whether the issuer demands 3-D Secure for this card (issue 4, item 7)."""
        return self.reveal() in THREE_DS_REQUIRED

    @property
    def display(self) -> CardDisplay:
        """The most of the number that may be shown: BIN (first 6) and last 4 (C2)."""
        return CardDisplay(brand=self._brand, bin=self.bin6, last4=self.last4)

    def masked(self) -> str:
        """`424242******4242`: BIN and last 4, the middle masked (C2, PCI DSS 3.4.1)."""
        digits = self.reveal()
        middle = len(digits) - KEEP_FIRST - KEEP_LAST
        return digits[:KEEP_FIRST] + MASK_CHAR * middle + digits[-KEEP_LAST:]

    def __repr__(self) -> str:
        return f"CardNumber({self._brand.value} ****{self.last4})"

    def __str__(self) -> str:
        return self.masked()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CardNumber):
            return NotImplemented
        return hmac.compare_digest(self.reveal().encode(), other.reveal().encode())

    __hash__ = Secret.__hash__


@dataclass(frozen=True, slots=True)
class CardDisplay:
    brand: Brand
    bin: str
    last4: str


class SecurityCode(_NoPickle, Secret):
    """A CVC/CVV. Prints masked; kept only until authorization (C1, PCI DSS 3.3.1-3.3.2)."""

    __slots__ = ()

    @classmethod
    def parse(cls, raw: object, brand: Brand) -> SecurityCode:
        if (
            not isinstance(raw, str)
            or not raw.isascii()
            or not raw.isdigit()
            or len(raw) not in brand.cvc_lengths
        ):
            _refuse("invalid_cvc", "cvc", "Your card's security code is invalid.")
        return cls(raw)

    def __repr__(self) -> str:
        return f"SecurityCode('{MASK}')"


@dataclass(frozen=True, slots=True)
class Expiry:
    month: int
    year: int

    @classmethod
    def parse(cls, exp_month: object, exp_year: object, *, clock: Clock) -> Expiry:
        month = _small_int(exp_month, max_digits=2)
        if month is None or not 1 <= month <= 12:
            _refuse("invalid_expiry_month", "exp_month", "Your card's expiration month is invalid.")
        year = _year(exp_year)
        if year is None:
            _refuse("invalid_expiry_year", "exp_year", "Your card's expiration year is invalid.")
        today = dt.datetime.fromtimestamp(clock.now(), dt.UTC)
        if year < today.year:
            _refuse("expired_card", "exp_year", "Your card has expired.")
        if year > today.year + MAX_YEARS_AHEAD:
            _refuse("invalid_expiry_year", "exp_year", "Your card's expiration year is invalid.")
        expiry = cls(month=month, year=year)
        if expiry.expired(clock):
            _refuse("expired_card", "exp_month", "Your card has expired.")
        return expiry

    @property
    def ends_at(self) -> int:
        """Unix seconds of the first instant the card is expired: the start of the next month.

        A card marked 04/30 is valid through the last day of April 2030 (ISO/IEC 7813); we take
        the end of that day in UTC, the least surprising choice without the issuer's time zone.
        """
        year, month = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return int(dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp())

    def expired(self, clock: Clock) -> bool:
        return clock.now() >= self.ends_at


def _year(value: object) -> int | None:
    """Two or four digits; two-digit years are 20yy (no card expires in the 1900s any more)."""
    if isinstance(value, str) and len(value) not in (2, 4):
        return None
    year = _small_int(value, max_digits=4)
    if year is None or 100 <= year < 1000:
        return None
    return year + 2000 if year < 100 else year


def _small_int(value: object, *, max_digits: int) -> int | None:
    # Stripe's form encoding sends strings; SDKs may send ints. `bool` is an int in Python and is
    # refused explicitly, as are signs, spaces and non-ASCII digits.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**max_digits else None
    if (
        isinstance(value, str)
        and 1 <= len(value) <= max_digits
        and value.isascii()
        and value.isdigit()
    ):
        return int(value)
    return None


@dataclass(frozen=True, slots=True)
class StripeTestCard:
    """One of Stripe's published test cards (/work/shared/reference/test-cards-and-codes.md)."""

    number: str
    brand: Brand
    funding: Funding
    country: str
    payment_method: str | None
    behaviour: str

    def __repr__(self) -> str:
        return f"StripeTestCard({self.payment_method or self.brand.value})"


# Country: Stripe's testing docs state that each basic test card's billing country is the U.S.;
# the reference table gives no other country for any of these cards (all rows say "US").
# The table itself is test data: `testdata/stripe_test_cards.json` (no card-number literals in the
# source, C1/C5 scans; a public test number is still a number a scanner must not learn to ignore).
TEST_CARDS_FILE: Final = Path(__file__).parent / "testdata" / "stripe_test_cards.json"


def _load_test_cards(path: Path) -> tuple[StripeTestCard, ...]:
    rows = json.loads(path.read_text(encoding="utf-8"))["cards"]
    return tuple(
        StripeTestCard(
            row["number"],
            Brand(row["brand"]),
            Funding(row["funding"]),
            row["country"],
            row["payment_method"],
            row["behaviour"],
        )
        for row in rows
    )


STRIPE_TEST_CARDS: Final[tuple[StripeTestCard, ...]] = _load_test_cards(TEST_CARDS_FILE)
STRIPE_TEST_CARDS_BY_NUMBER: Final = {card.number: card for card in STRIPE_TEST_CARDS}
# Cards whose issuer requires 3-D Secure on every payment (Stripe's "3ds_required" cards). A real
# vault learns this from the card scheme's directory server (EMV 3DS version lookup by BIN range);
# the simulated network's directory is this table.
THREE_DS_REQUIRED: Final = frozenset(
    card.number for card in STRIPE_TEST_CARDS if card.behaviour.startswith("3ds")
)
STRIPE_TEST_CARDS_BY_PAYMENT_METHOD: Final = {
    card.payment_method: card for card in STRIPE_TEST_CARDS if card.payment_method is not None
}


@dataclass(frozen=True, slots=True)
class CardMetadata:
    """What the api may learn about a card (ARCHITECTURE: the main flows) — never the number."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int
    funding: str
    country: str | None


@dataclass(frozen=True, slots=True, repr=False)
class Card:
    number: CardNumber
    expiry: Expiry
    cvc: SecurityCode | None

    @property
    def stripe_test_card(self) -> StripeTestCard | None:
        return STRIPE_TEST_CARDS_BY_NUMBER.get(self.number.reveal())

    def metadata(self) -> CardMetadata:
        known = self.stripe_test_card
        return CardMetadata(
            brand=self.number.brand.wire,
            last4=self.number.last4,
            exp_month=self.expiry.month,
            exp_year=self.expiry.year,
            funding=(known.funding if known else Funding.UNKNOWN).value,
            country=known.country if known else None,
        )

    def __repr__(self) -> str:
        cvc = "present" if self.cvc is not None else "absent"
        return f"Card({self.number!r}, exp={self.expiry.month:02d}/{self.expiry.year}, cvc={cvc})"


def validate_card(
    number: object,
    exp_month: object,
    exp_year: object,
    cvc: object = None,
    *,
    clock: Clock,
    require_cvc: bool = False,
    allow_unknown_brand: bool = False,
) -> Card:
    """Validate card input in Stripe's order — number, expiry, CVC — raising the first error."""
    card_number = CardNumber.parse(number, allow_unknown_brand=allow_unknown_brand)
    expiry = Expiry.parse(exp_month, exp_year, clock=clock)
    code: SecurityCode | None = None
    if cvc is None or cvc == "":
        if require_cvc:
            _refuse("invalid_cvc", "cvc", "Your card's security code is invalid.")
    else:
        code = SecurityCode.parse(cvc, card_number.brand)
    return Card(number=card_number, expiry=expiry, cvc=code)
