"""Money: integer minor units and an ISO 4217 currency code; no floats (ARCHITECTURE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# ISO 4217 minor-unit exponents for the active currencies we accept. Most use 2; the exceptions are
# listed explicitly so an unknown code is rejected rather than guessed.
_ZERO_DECIMAL: Final = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "isk",
        "jpy",
        "kmf",
        "krw",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
_THREE_DECIMAL: Final = frozenset(["bhd", "iqd", "jod", "kwd", "lyd", "omr", "tnd"])
_TWO_DECIMAL: Final = frozenset(
    [
        "aed",
        "afn",
        "all",
        "amd",
        "ang",
        "aoa",
        "ars",
        "aud",
        "awg",
        "azn",
        "bam",
        "bbd",
        "bdt",
        "bgn",
        "bmd",
        "bnd",
        "bob",
        "brl",
        "bsd",
        "bwp",
        "byn",
        "bzd",
        "cad",
        "cdf",
        "chf",
        "cny",
        "cop",
        "crc",
        "cve",
        "czk",
        "dkk",
        "dop",
        "dzd",
        "egp",
        "etb",
        "eur",
        "fjd",
        "fkp",
        "gbp",
        "gel",
        "gip",
        "gmd",
        "gtq",
        "gyd",
        "hkd",
        "hnl",
        "htg",
        "huf",
        "idr",
        "ils",
        "inr",
        "jmd",
        "kes",
        "kgs",
        "khr",
        "kyd",
        "kzt",
        "lak",
        "lbp",
        "lkr",
        "lrd",
        "lsl",
        "mad",
        "mdl",
        "mkd",
        "mmk",
        "mnt",
        "mop",
        "mur",
        "mvr",
        "mwk",
        "mxn",
        "myr",
        "mzn",
        "nad",
        "ngn",
        "nio",
        "nok",
        "npr",
        "nzd",
        "pab",
        "pen",
        "pgk",
        "php",
        "pkr",
        "pln",
        "qar",
        "ron",
        "rsd",
        "rub",
        "sar",
        "sbd",
        "scr",
        "sek",
        "sgd",
        "shp",
        "sle",
        "sos",
        "srd",
        "std",
        "szl",
        "thb",
        "tjs",
        "top",
        "try",
        "ttd",
        "twd",
        "tzs",
        "uah",
        "usd",
        "uyu",
        "uzs",
        "wst",
        "xcd",
        "yer",
        "zar",
        "zmw",
    ]
)
CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    **dict.fromkeys(_TWO_DECIMAL, 2),
    **dict.fromkeys(_ZERO_DECIMAL, 0),
    **dict.fromkeys(_THREE_DECIMAL, 3),
}

# Stripe's documented minimum charge amounts for the major settlement currencies (minor units);
# other currencies must be at least 1 minor unit.
MINIMUM_CHARGE: Final[dict[str, int]] = {
    "usd": 50,
    "eur": 50,
    "gbp": 30,
    "aud": 50,
    "cad": 50,
    "chf": 50,
    "dkk": 250,
    "hkd": 400,
    "jpy": 50,
    "mxn": 1000,
    "nok": 300,
    "nzd": 50,
    "sek": 300,
    "sgd": 50,
    "brl": 50,
    "inr": 50,
}
# Stripe's ceiling: eight digits of minor units.
MAXIMUM_AMOUNT: Final = 99_999_999


class UnknownCurrency(ValueError):
    pass


def normalize_currency(code: str) -> str:
    """Lower-case ISO 4217 code (Stripe's wire form), or raise UnknownCurrency."""
    lowered = code.strip().lower()
    if lowered not in CURRENCY_EXPONENTS:
        raise UnknownCurrency(code)
    return lowered


def exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS[normalize_currency(currency)]


def minimum_amount(currency: str) -> int:
    return MINIMUM_CHARGE.get(currency, 1)


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError("money amounts are integer minor units")
        normalize_currency(self.currency)

    def format(self) -> str:
        """Human form for messages, e.g. `$20.00 usd`-style `20.00 USD`."""
        exp = exponent(self.currency)
        sign = "-" if self.amount < 0 else ""
        whole, frac = divmod(abs(self.amount), 10**exp) if exp else (abs(self.amount), 0)
        body = f"{whole}.{frac:0{exp}d}" if exp else f"{whole}"
        return f"{sign}{body} {self.currency.upper()}"


def percentage_fee(amount: int, basis_points: int, fixed: int) -> int:
    """Fee = round-half-up(amount × bps / 10 000) + fixed, in integer arithmetic only.

    2.9 % + 30 on 2000 → 58 + 30 = 88. Never negative, never more than the amount.
    """
    if amount < 0 or basis_points < 0 or fixed < 0:
        raise ValueError("fee inputs must be non-negative")
    variable = (amount * basis_points + 5_000) // 10_000
    return min(amount, variable + fixed)
