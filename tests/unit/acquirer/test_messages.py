"""acquirer.spec and acquirer.messages: every message type round-trips; bad fields are refused
by name, never by value (L3)."""

from __future__ import annotations

import pytest

from bastionpay.acquirer import spec
from bastionpay.acquirer.messages import (
    MessageError,
    decode_message,
    decode_original_data,
    decode_private_data,
    decode_raw,
    derive_reference,
    encode_message,
    encode_original_data,
    encode_private_data,
    time_fields,
    validate,
)
from bastionpay.acquirer.server import GARBAGE_PAYLOAD

PAN = "4242424242424242"
CVC = "731"
TRACE = {
    "4": "000000002000",
    "7": "1128163502",
    "11": "000042",
    "37": "KTYYIOD2F632",
    "41": "BPVAULT1",
    "42": "BASTIONPAY     ",
    "49": "840",
}
ORIGINAL = encode_original_data("0100", "000041", "1128163501")

MESSAGES: dict[str, dict[str, str]] = {
    "0100": {
        **TRACE,
        "2": PAN,
        "3": "000000",
        "12": "163502",
        "13": "1128",
        "14": "3012",
        "22": "812",
        "48": encode_private_data({"92": CVC, "42": "05", "43": "AQVINFYSNFZ4kBI0VgAAAAAAAAA="}),
    },
    "0110": {**TRACE, "3": "000000", "38": "3YR1AI", "39": "00", "44": "M"},
    "0200": {
        **TRACE,
        "3": "200000",
        "12": "163502",
        "13": "1128",
        "48": encode_private_data({"71": "ABCDEF012345"}),
        "90": ORIGINAL,
    },
    "0210": {**TRACE, "3": "200000", "38": "2NDOR6", "39": "00"},
    "0220": {**TRACE, "3": "000000", "12": "163502", "13": "1128", "38": "3YR1AI", "90": ORIGINAL},
    "0221": {**TRACE, "3": "000000", "12": "163502", "13": "1128", "90": ORIGINAL},
    "0230": {**TRACE, "38": "3YR1AI", "39": "00"},
    "0400": {**TRACE, "3": "000000", "12": "163502", "13": "1128", "90": ORIGINAL},
    "0401": {**TRACE, "3": "000000", "12": "163502", "13": "1128", "90": ORIGINAL},
    "0410": {**TRACE, "39": "00"},
    "0800": {"7": "1128163502", "11": "000001", "70": "301"},
    "0810": {"7": "1128163502", "11": "000001", "39": "00", "70": "301"},
}


def test_every_message_type_in_the_dialect_has_an_example() -> None:
    assert set(MESSAGES) == set(spec.REQUIRED_FIELDS)


@pytest.mark.parametrize("mti", sorted(MESSAGES))
def test_every_message_type_round_trips(mti: str) -> None:
    message = {"t": mti, **MESSAGES[mti]}
    wire = encode_message(message)
    assert wire[:4] == mti.encode()
    assert decode_message(wire) == message
    assert encode_message(decode_message(wire)) == wire


def test_the_bitmap_is_ascii_hex_and_the_secondary_bitmap_appears_for_field_90() -> None:
    reversal = encode_message({"t": "0400", **MESSAGES["0400"]})
    primary = reversal[4:20].decode()
    assert int(primary, 16) >> 63 == 1  # bit 1: a secondary bitmap follows (field 90)
    echo = encode_message({"t": "0800", **MESSAGES["0800"]})
    assert int(echo[4:20].decode(), 16) >> 63 == 1  # field 70


def test_private_subelements_round_trip_sorted_by_tag() -> None:
    text = encode_private_data({"92": "1234", "42": "05"})
    assert text == "4202059204" + "1234"
    assert decode_private_data(text) == {"42": "05", "92": "1234"}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "48"),
        ("92", "48"),
        ("9205123", "48.92"),  # claims 5, carries 3
        ("9200", "48.92"),
        ("1103abc", "48.11"),  # unknown tag
        ("92031239203456", "48.92"),  # repeated
        ("9203abc", "48.92"),  # a CVC is digits
    ],
)
def test_malformed_private_data_is_refused(text: str, field: str) -> None:
    with pytest.raises(MessageError) as caught:
        decode_private_data(text)
    assert caught.value.field == field


def test_unknown_or_invalid_subelements_cannot_be_encoded() -> None:
    with pytest.raises(MessageError):
        encode_private_data({"11": "x"})
    with pytest.raises(MessageError):
        encode_private_data({"92": "12"})


def test_original_data_elements_hold_mti_stan_and_time() -> None:
    assert len(ORIGINAL) == 42
    original = decode_original_data(ORIGINAL)
    assert (original.mti, original.stan, original.transmitted) == ("0100", "000041", "1128163501")
    with pytest.raises(MessageError):
        encode_original_data("0100", "41", "1128163501")


def test_time_fields_are_utc() -> None:
    fields = time_fields(1_795_883_702)  # 2026-11-28 16:35:02 UTC
    assert (fields.transmitted, fields.local_time, fields.local_date) == (
        "1128163502",
        "163502",
        "1128",
    )


@pytest.mark.parametrize(
    ("mti", "change", "field"),
    [
        ("0100", {"2": "42424242"}, "2"),  # too short for a card number
        ("0100", {"4": "2000"}, "4"),
        ("0100", {"4": "00000000200x"}, "4"),
        ("0100", {"37": "lowercase123"}, "37"),
        ("0100", {"42": "BASTIONPAY"}, "42"),  # ans 15, padded by the sender
        ("0110", {"39": "0"}, "39"),
        ("0110", {"44": "X"}, "44"),
        ("0400", {"2": PAN}, "2"),  # a PAN never rides along in a follow-up (C3)
        ("0110", {"2": PAN}, "2"),  # nor in a response
        ("0230", {"48": "9203123"}, "48"),  # nor a CVC (C1)
        ("0200", {"48": "9203123" + "7112ABCDEF012345"}, "48.92"),  # not even in a refund
        ("0100", {"48": "7112ABCDEF012345"}, "48.71"),
    ],
)
def test_invalid_fields_are_refused_by_name_without_their_value(
    mti: str, change: dict[str, str], field: str
) -> None:
    message = {"t": mti, **MESSAGES[mti], **change}
    with pytest.raises(MessageError) as caught:
        encode_message(message)
    assert caught.value.field == field
    assert PAN not in str(caught.value)
    assert "42424242" not in str(caught.value)


def test_missing_fields_and_unknown_types_are_refused() -> None:
    without_stan = {"t": "0100", **MESSAGES["0100"]}
    del without_stan["11"]
    with pytest.raises(MessageError, match="missing field") as caught:
        validate(without_stan)
    assert caught.value.field == "11"
    with pytest.raises(MessageError, match="unsupported"):
        validate({"t": "0600", "11": "000001"})


def test_undecodable_bytes_are_a_message_error_without_content() -> None:
    with pytest.raises(MessageError):
        decode_raw(GARBAGE_PAYLOAD)
    wire = encode_message({"t": "0100", **MESSAGES["0100"]})
    for broken in (wire[:-3], wire + b"extra", b"01"):
        with pytest.raises(MessageError) as caught:
            decode_message(broken)
        assert PAN not in str(caught.value)
        assert caught.value.__cause__ is None  # pyiso8583's error (which holds the data) is gone


def test_a_decodable_message_with_an_invalid_field_still_decodes_raw() -> None:
    wire = encode_message({"t": "0800", **MESSAGES["0800"]})
    tampered = wire.replace(b"000001", b"00000A")
    with pytest.raises(MessageError):
        decode_message(tampered)
    assert decode_raw(tampered)["11"] == "00000A"


def test_references_are_stable_distinct_and_an_rrn() -> None:
    first = derive_reference("auth", "BASTIONPAY     ", "pi_123:attempt-1")
    assert first == derive_reference("auth", "BASTIONPAY     ", "pi_123:attempt-1")
    assert len(first) == 12
    assert first.isalnum()
    assert first.upper() == first
    others = {
        derive_reference("refund", "BASTIONPAY     ", "pi_123:attempt-1"),
        derive_reference("auth", "OTHERMERCHANT  ", "pi_123:attempt-1"),
        derive_reference("auth", "BASTIONPAY     ", "pi_123:attempt-2"),
    }
    assert first not in others
    assert len(others) == 3
    for bad in ("", "x" * 256, "line\nbreak"):
        with pytest.raises(ValueError, match="reference"):
            derive_reference("auth", "BASTIONPAY     ", bad)
