"""acquirer.codes and acquirer.testcards checked against the reference file
(/work/shared/reference/test-cards-and-codes.md).

The reference lives outside the repository (shared/ sits beside the clone, in CI too); a copy is
kept in tests/unit/acquirer/data so the check runs everywhere. When the shared file is present,
both are checked — an edit to the reference that the tables do not follow fails here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from bastionpay.acquirer import codes, testcards
from bastionpay.acquirer.currencies import NUMERIC_BY_ALPHA, UnknownCurrencyCode, to_alpha
from bastionpay.acquirer.currencies import to_numeric as currency_number
from bastionpay.acquirer.faults import Fault
from bastionpay.kernel.money import CURRENCY_EXPONENTS
from bastionpay.kernel.pan import luhn_valid

_HERE = Path(__file__).resolve().parent
_NAME = "test-cards-and-codes.md"
REFERENCES = [
    path
    for path in (_HERE / "data" / _NAME, _HERE.parents[3] / "shared" / "reference" / _NAME)
    if path.is_file()
]


@dataclass(frozen=True)
class Decline:
    number: str
    code: str
    decline_code: str
    iso: str


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = text.find("\n## ", start + len(heading))
    return text[start : following if following != -1 else len(text)]


def _rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not set(line) <= set("|- "):
            rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows[1:]  # without the header


def _declines(text: str) -> list[Decline]:
    found = []
    for row in _rows(_section(text, "## Declines")):
        number, code, decline_code, iso = row[1], row[2], row[3], row[4]
        if decline_code == "—":
            continue  # the Luhn failure: never reaches the network
        found.append(Decline(number, code, decline_code, iso.split()[0]))
    return found


@pytest.fixture(params=REFERENCES, ids=lambda path: path.parent.name)
def reference(request: pytest.FixtureRequest) -> str:
    path: Path = request.param
    return path.read_text(encoding="utf-8")


def test_a_reference_copy_is_available() -> None:
    assert REFERENCES, "the vendored copy of the reference file is missing"


def test_every_decline_card_maps_to_the_reference_iso_and_stripe_codes(reference: str) -> None:
    declines = _declines(reference)
    assert len(declines) >= 8
    for row in declines:
        assert testcards.DECLINES[row.number] == row.iso, row.number
        mapped = codes.lookup(row.iso)
        assert (mapped.code, mapped.decline_code) == (row.code, row.decline_code), row.iso


def test_every_iso_code_the_reference_lists_is_in_the_table(reference: str) -> None:
    section = _section(reference, "## ISO 8583 response codes")
    listed = re.findall(r"`([0-9A-Z]{2})`", section)
    assert {"00", "05", "14", "41", "43", "51", "54", "59", "61", "65", "N7", "1A", "91", "96"} <= (
        set(listed)
    )
    for iso in listed:
        assert iso in codes.RESPONSE_CODES, iso


def test_the_issue_s_decline_reasons_map_as_stripe_names_them() -> None:
    expected = {
        "05": "generic_decline",
        "51": "insufficient_funds",
        "54": "expired_card",
        "N7": "incorrect_cvc",
        "82": "incorrect_cvc",
        "41": "lost_card",
        "43": "stolen_card",
        "59": "fraudulent",
        "91": "issuer_not_available",
        "96": "processing_error",
        "1A": "authentication_required",
    }
    for iso, decline_code in expected.items():
        assert codes.lookup(iso).decline_code == decline_code, iso


def test_the_radar_block_card_is_declined_as_fraudulent(reference: str) -> None:
    row = next(r for r in _rows(_section(reference, "## Fraud")) if "radarBlock" in r[0])
    assert "`fraudulent`" in row[2] or "fraudulent" in row[2]
    assert codes.lookup(testcards.DECLINES[row[1]]).decline_code == "fraudulent"


def test_three_d_secure_cards_require_authentication(reference: str) -> None:
    rows = _rows(_section(reference, "## 3-D Secure"))
    assert {row[1] for row in rows} == set(testcards.AUTHENTICATION_REQUIRED)
    for row in rows:
        after = testcards.AUTHENTICATION_REQUIRED[row[1]]
        assert after == ("51" if "insufficient_funds" in row[2] else codes.APPROVED)


def test_cards_that_succeed_are_not_declined(reference: str) -> None:
    for row in _rows(_section(reference, "## Cards that succeed")):
        number = row[1]
        assert luhn_valid(number)
        assert number not in testcards.DECLINES
        assert number not in testcards.FAULT_CARDS


def test_the_simulator_s_own_numbers_are_valid_and_distinct() -> None:
    own = [*testcards.FAULT_CARDS, "4000009900000913", "4000009900000616"]
    assert len(set(own)) == len(own)
    for number in own:
        assert luhn_valid(number), number
        assert number.startswith("400000990000")
    assert set(testcards.FAULT_CARDS.values()) == set(Fault)  # every fault has a card


def test_unknown_codes_decline_generically_never_approve() -> None:
    unknown = codes.lookup("Z9")
    assert (unknown.iso, unknown.code, unknown.decline_code) == (
        "Z9",
        "card_declined",
        "generic_decline",
    )
    for row in codes.RESPONSE_CODES.values():
        assert (row.code is None) == (row.iso == codes.APPROVED)


def test_every_currency_the_platform_accepts_has_an_iso_numeric_code() -> None:
    assert set(CURRENCY_EXPONENTS) <= set(NUMERIC_BY_ALPHA)
    assert len(set(NUMERIC_BY_ALPHA.values())) == len(NUMERIC_BY_ALPHA)
    assert (currency_number("USD"), currency_number("eur"), currency_number("jpy")) == (
        "840",
        "978",
        "392",
    )
    assert to_alpha("826") == "gbp"
    with pytest.raises(UnknownCurrencyCode):
        currency_number("xxx")
    with pytest.raises(UnknownCurrencyCode):
        to_alpha("000")
