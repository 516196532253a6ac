"""ISO 4217 numeric currency codes for field 49 (Currency Code, Transaction).

The platform speaks Stripe's lower-case alphabetic codes; ISO 8583 field 49 carries the numeric
code (n 3). The table covers every currency `bastionpay.kernel.money` accepts (a unit test checks
it) and was generated from the ISO 4217 data in `pycountry`; `ang`, `bgn` and `std` were withdrawn
from that list and are added by hand with their last published numbers.
"""

from __future__ import annotations

from typing import Final

NUMERIC_BY_ALPHA: Final[dict[str, str]] = {
    "aed": "784",
    "afn": "971",
    "all": "008",
    "amd": "051",
    "aoa": "973",
    "ars": "032",
    "aud": "036",
    "awg": "533",
    "azn": "944",
    "bam": "977",
    "bbd": "052",
    "bdt": "050",
    "bhd": "048",
    "bif": "108",
    "bmd": "060",
    "bnd": "096",
    "bob": "068",
    "brl": "986",
    "bsd": "044",
    "bwp": "072",
    "byn": "933",
    "bzd": "084",
    "cad": "124",
    "cdf": "976",
    "chf": "756",
    "clp": "152",
    "cny": "156",
    "cop": "170",
    "crc": "188",
    "cve": "132",
    "czk": "203",
    "djf": "262",
    "dkk": "208",
    "dop": "214",
    "dzd": "012",
    "egp": "818",
    "etb": "230",
    "eur": "978",
    "fjd": "242",
    "fkp": "238",
    "gbp": "826",
    "gel": "981",
    "gip": "292",
    "gmd": "270",
    "gnf": "324",
    "gtq": "320",
    "gyd": "328",
    "hkd": "344",
    "hnl": "340",
    "htg": "332",
    "huf": "348",
    "idr": "360",
    "ils": "376",
    "inr": "356",
    "iqd": "368",
    "isk": "352",
    "jmd": "388",
    "jod": "400",
    "jpy": "392",
    "kes": "404",
    "kgs": "417",
    "khr": "116",
    "kmf": "174",
    "krw": "410",
    "kwd": "414",
    "kyd": "136",
    "kzt": "398",
    "lak": "418",
    "lbp": "422",
    "lkr": "144",
    "lrd": "430",
    "lsl": "426",
    "lyd": "434",
    "mad": "504",
    "mdl": "498",
    "mkd": "807",
    "mmk": "104",
    "mnt": "496",
    "mop": "446",
    "mur": "480",
    "mvr": "462",
    "mwk": "454",
    "mxn": "484",
    "myr": "458",
    "mzn": "943",
    "nad": "516",
    "ngn": "566",
    "nio": "558",
    "nok": "578",
    "npr": "524",
    "nzd": "554",
    "omr": "512",
    "pab": "590",
    "pen": "604",
    "pgk": "598",
    "php": "608",
    "pkr": "586",
    "pln": "985",
    "pyg": "600",
    "qar": "634",
    "ron": "946",
    "rsd": "941",
    "rub": "643",
    "rwf": "646",
    "sar": "682",
    "sbd": "090",
    "scr": "690",
    "sek": "752",
    "sgd": "702",
    "shp": "654",
    "sle": "925",
    "sos": "706",
    "srd": "968",
    "szl": "748",
    "thb": "764",
    "tjs": "972",
    "tnd": "788",
    "top": "776",
    "try": "949",
    "ttd": "780",
    "twd": "901",
    "tzs": "834",
    "uah": "980",
    "ugx": "800",
    "usd": "840",
    "uyu": "858",
    "uzs": "860",
    "vnd": "704",
    "vuv": "548",
    "wst": "882",
    "xaf": "950",
    "xcd": "951",
    "xof": "952",
    "xpf": "953",
    "yer": "886",
    "zar": "710",
    "zmw": "967",
    "ang": "532",
    "bgn": "975",
    "std": "678",
}
ALPHA_BY_NUMERIC: Final[dict[str, str]] = {
    number: alpha for alpha, number in NUMERIC_BY_ALPHA.items()
}


class UnknownCurrencyCode(ValueError):
    """A currency the table does not know (alphabetic or numeric)."""


def to_numeric(alpha: str) -> str:
    """`usd` → `840`."""
    try:
        return NUMERIC_BY_ALPHA[alpha.lower()]
    except KeyError:
        raise UnknownCurrencyCode(alpha[:8]) from None


def to_alpha(numeric: str) -> str:
    """`840` → `usd`."""
    try:
        return ALPHA_BY_NUMERIC[numeric]
    except KeyError:
        raise UnknownCurrencyCode(numeric[:8]) from None
