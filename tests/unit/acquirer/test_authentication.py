"""acquirer.authentication: the simulated network's 3-D Secure authentication value (DE 48.43)."""

from __future__ import annotations

import base64

import pytest

from bastionpay.acquirer import authentication as cavv

MAC = bytes(range(32))


def test_a_value_names_its_eci_and_is_twenty_bytes() -> None:
    value = cavv.encode("05", MAC)
    raw = base64.b64decode(value)
    assert (len(value), len(raw)) == (28, 20)
    assert raw[:2] == b"\x01\x05"
    assert raw[2:] == MAC[:18]
    assert cavv.well_formed("05", value)
    assert not cavv.well_formed("02", value)  # copied from another kind of authentication


@pytest.mark.parametrize(
    ("eci", "value"),
    [
        ("05", None),
        (None, cavv.encode("05", MAC)),
        ("05", ""),
        ("05", "not base64!"),
        ("05", base64.b64encode(b"\x01\x05" + MAC[:10]).decode()),  # truncated
        ("05", base64.b64encode(b"\x02\x05" + MAC[:18]).decode()),  # another format
        ("5", cavv.encode("05", MAC)),
    ],
)
def test_malformed_values_are_refused(eci: str | None, value: str | None) -> None:
    assert not cavv.well_formed(eci, value)


def test_encode_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="eci"):
        cavv.encode("5", MAC)
    with pytest.raises(ValueError, match="short"):
        cavv.encode("05", MAC[:10])
