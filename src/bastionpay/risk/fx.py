"""Approximate foreign-exchange rates for risk features: `amount_in_usd` and amount ratios.

These rates exist so that a 3,000 JPY payment and a 20 USD payment land on one scale for the
model, the rules (`:amount_in_usd: > 1000`) and the 30-day amount means. They are static,
rounded, mid-2024 figures and deliberately *approximate*: a risk feature is not hurt by a rate
that is a few per cent off, and a static table keeps the feature reproducible (the simulator, the
api's SQL features and a back-test months later all get the same number for the same payment).
They must never be used to move money; the ledger has no floats and no conversions (ARCHITECTURE:
money is integer minor units + ISO 4217 code).

Every currency the kernel accepts has a rate, so the payment path never meets a currency it
cannot convert. The arithmetic is integer-only: the rate is held as nano-dollars per major unit
and the result rounded half up to whole US cents.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from bastionpay.kernel.money import CURRENCY_EXPONENTS, normalize_currency

# US dollars per one major unit of the currency (approximate mid-2024 market rates, 2-3
# significant digits; pegged currencies at their peg). Written as decimal strings so the table
# reads like a rate sheet; converted to exact integers below.
_USD_PER_UNIT: Final[dict[str, str]] = {
    # The majors, as the risk design lists them.
    "usd": "1.0",
    "eur": "1.08",
    "gbp": "1.27",
    "jpy": "0.0067",
    "cad": "0.73",
    "aud": "0.66",
    "chf": "1.12",
    "nzd": "0.60",
    "sek": "0.095",
    "nok": "0.093",
    "dkk": "0.145",
    "cny": "0.139",
    "hkd": "0.128",
    "sgd": "0.745",
    "inr": "0.012",
    "krw": "0.00073",
    "mxn": "0.055",
    "brl": "0.19",
    # Europe and the Middle East
    "all": "0.0107",
    "amd": "0.00257",
    "azn": "0.588",
    "bam": "0.552",
    "bgn": "0.552",
    "byn": "0.31",
    "czk": "0.043",
    "gel": "0.37",
    "gip": "1.27",
    "huf": "0.0027",
    "isk": "0.0072",
    "mdl": "0.056",
    "mkd": "0.0175",
    "pln": "0.25",
    "ron": "0.217",
    "rsd": "0.0092",
    "rub": "0.011",
    "try": "0.030",
    "uah": "0.0245",
    "aed": "0.2723",
    "bhd": "2.65",
    "ils": "0.27",
    "iqd": "0.00076",
    "jod": "1.41",
    "kwd": "3.26",
    "lbp": "0.0000112",
    "omr": "2.60",
    "qar": "0.2747",
    "sar": "0.2667",
    "yer": "0.0040",
    # Africa
    "aoa": "0.00115",
    "bif": "0.00035",
    "bwp": "0.074",
    "cdf": "0.00036",
    "cve": "0.0098",
    "djf": "0.0056",
    "dzd": "0.0074",
    "egp": "0.021",
    "etb": "0.010",
    "gmd": "0.0147",
    "gnf": "0.000116",
    "kes": "0.0075",
    "kmf": "0.0022",
    "lrd": "0.0052",
    "lsl": "0.054",
    "lyd": "0.207",
    "mad": "0.10",
    "mur": "0.0216",
    "mwk": "0.00058",
    "mzn": "0.0157",
    "nad": "0.054",
    "ngn": "0.00065",
    "rwf": "0.00076",
    "scr": "0.073",
    "sle": "0.044",
    "sos": "0.00175",
    "std": "0.0000450",
    "szl": "0.054",
    "tnd": "0.32",
    "tzs": "0.00038",
    "ugx": "0.00027",
    "xaf": "0.00165",
    "xof": "0.00165",
    "zar": "0.054",
    "zmw": "0.038",
    "shp": "1.27",
    # Asia and the Pacific
    "afn": "0.014",
    "bdt": "0.0085",
    "bnd": "0.745",
    "fjd": "0.44",
    "idr": "0.000063",
    "khr": "0.000245",
    "kgs": "0.0115",
    "kzt": "0.0021",
    "lak": "0.000046",
    "lkr": "0.0033",
    "mmk": "0.00048",
    "mnt": "0.00029",
    "mop": "0.124",
    "mvr": "0.065",
    "myr": "0.215",
    "npr": "0.0075",
    "pgk": "0.26",
    "php": "0.0175",
    "pkr": "0.0036",
    "sbd": "0.118",
    "thb": "0.028",
    "tjs": "0.093",
    "top": "0.42",
    "twd": "0.031",
    "uzs": "0.000079",
    "vnd": "0.000040",
    "vuv": "0.0084",
    "wst": "0.36",
    "xpf": "0.0091",
    # The Americas
    "ang": "0.555",
    "ars": "0.0011",
    "awg": "0.555",
    "bbd": "0.50",
    "bmd": "1.0",
    "bob": "0.145",
    "bsd": "1.0",
    "bzd": "0.50",
    "clp": "0.00106",
    "cop": "0.00025",
    "crc": "0.0019",
    "dop": "0.017",
    "fkp": "1.27",
    "gtq": "0.129",
    "gyd": "0.0048",
    "hnl": "0.0405",
    "htg": "0.0076",
    "jmd": "0.0064",
    "kyd": "1.20",
    "nio": "0.0272",
    "pab": "1.0",
    "pen": "0.265",
    "pyg": "0.000133",
    "srd": "0.030",
    "ttd": "0.147",
    "uyu": "0.025",
    "xcd": "0.37",
}

_NANO: Final = 10**9


def _nano(rate: str) -> int:
    scaled = Decimal(rate) * _NANO
    if scaled != scaled.to_integral_value() or scaled <= 0:
        # A rate finer than a nano-dollar would be silently truncated; refuse it at import.
        raise ValueError(f"rate {rate} is not a whole number of nano-dollars")
    return int(scaled)


NANO_USD_PER_UNIT: Final[Mapping[str, int]] = MappingProxyType(
    {code: _nano(r) for code, r in _USD_PER_UNIT.items()}
)

_missing = set(CURRENCY_EXPONENTS) - set(NANO_USD_PER_UNIT)
if _missing:  # a currency the payment path accepts must also be convertible (checked at import)
    raise RuntimeError(f"no approximate USD rate for {sorted(_missing)}")


def usd_per_unit(currency: str) -> Decimal:
    """The approximate rate: US dollars per major unit of `currency`."""
    return Decimal(NANO_USD_PER_UNIT[normalize_currency(currency)]) / _NANO


def to_usd_cents(amount: int, currency: str) -> int:
    """`amount` (minor units of `currency`) in whole US cents, rounded half up (away from zero).

    The currency's ISO 4217 exponent comes from the kernel, so 3,000 JPY (exponent 0) is
    3,000 × 0.0067 = 20.10 USD = 2,010 cents, while 3,000 EUR cents (exponent 2) is 32.40 USD.
    Raises `UnknownCurrency` for a code the kernel does not accept.
    """
    # Every payment is converted (twice by the simulator): skip normalising a code already in
    # its wire form.
    code = currency if currency in NANO_USD_PER_UNIT else normalize_currency(currency)
    numerator = abs(amount) * NANO_USD_PER_UNIT[code]
    # cents = amount / 10**exp (major units) × nano / 10**9 (USD) × 100
    denominator = int(10 ** (CURRENCY_EXPONENTS[code] + 7))
    cents = (2 * numerator + denominator) // (2 * denominator)
    return -cents if amount < 0 else cents


def amount_in_usd(amount: int, currency: str) -> float:
    """The `amount_in_usd` feature: USD major units, from the whole cents above."""
    return round(to_usd_cents(amount, currency) / 100, 2)
