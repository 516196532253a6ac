"""api.forms and api.params: Stripe-style decoding, limits and error mapping."""

from __future__ import annotations

import json

import pytest

from bastionpay.api.forms import Limits, decode_body, decode_form
from bastionpay.api.params import (
    CLEAR_ALL,
    FormBool,
    FormInt,
    Metadata,
    Params,
    merge_metadata,
    validate,
)
from bastionpay.kernel.errors import InvalidRequestError, RequestTooLarge

LIMITS = Limits(max_body_bytes=4096, max_parameters=20, max_depth=3)


def test_bracket_nesting_lists_and_appends() -> None:
    decoded = decode_form(
        "amount=100&metadata[order]=42&metadata[note]=&payment_method_types[0]=card"
        "&expand[]=latest_charge&expand[]=customer",
        LIMITS,
    )
    assert decoded == {
        "amount": "100",
        "metadata": {"order": "42", "note": ""},
        "payment_method_types": ["card"],
        "expand": ["latest_charge", "customer"],
    }


def test_indexed_lists_are_ordered_numerically() -> None:
    decoded = decode_form("a[10]=k&a[2]=c&a[0]=a", LIMITS)
    assert decoded == {"a": ["a", "c", "k"]}


@pytest.mark.parametrize("body", ["a=1&a=2", "a=1&a[b]=2", "a[b=1", "[x]=1"])
def test_malformed_or_conflicting_parameters_are_refused(body: str) -> None:
    with pytest.raises(InvalidRequestError):
        decode_form(body, LIMITS)


def test_nesting_depth_limit() -> None:
    decode_form("a[b][c]=1", LIMITS)
    with pytest.raises(InvalidRequestError, match="nested"):
        decode_form("a[b][c][d]=1", LIMITS)


def test_parameter_count_limit_is_413() -> None:
    body = "&".join(f"p{i}=1" for i in range(25))
    with pytest.raises(RequestTooLarge) as info:
        decode_form(body, LIMITS)
    assert info.value.http_status == 413


def test_body_size_limit_is_413() -> None:
    with pytest.raises(RequestTooLarge):
        decode_body(b"a=" + b"x" * 5000, "application/x-www-form-urlencoded", LIMITS)


def test_json_bodies_are_accepted_and_scalars_normalised() -> None:
    raw = json.dumps({"amount": 100, "confirm": True, "metadata": {"k": "v"}}).encode()
    assert decode_body(raw, "application/json; charset=utf-8", LIMITS) == {
        "amount": "100",
        "confirm": "true",
        "metadata": {"k": "v"},
    }


@pytest.mark.parametrize("raw", [b"{", b"[1,2]", b'"x"'])
def test_bad_json_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidRequestError):
        decode_body(raw, "application/json", LIMITS)


def test_deep_json_is_refused() -> None:
    raw = json.dumps({"a": {"b": {"c": {"d": 1}}}}).encode()
    with pytest.raises(InvalidRequestError, match="nested"):
        decode_body(raw, "application/json", LIMITS)


def test_unsupported_content_type() -> None:
    with pytest.raises(InvalidRequestError, match="Unsupported Content-Type") as caught:
        decode_body(b"<x/>", "application/xml", LIMITS)
    assert caught.value.http_status == 415
    assert caught.value.code == "unsupported_media_type"


class Sample(Params):
    amount: FormInt
    confirm: FormBool = False
    metadata: Metadata | None = None


def test_validation_maps_to_stripe_errors() -> None:
    assert validate(Sample, {"amount": "100", "confirm": "true"}).amount == 100
    cases = {
        "parameter_unknown": {"amount": "1", "foo": "x"},
        "parameter_missing": {},
        "parameter_invalid_integer": {"amount": "1.5"},
        "parameter_invalid_boolean": {"amount": "1", "confirm": "yes"},
    }
    for code, data in cases.items():
        with pytest.raises(InvalidRequestError) as info:
            validate(Sample, data)
        assert info.value.code == code, data
    with pytest.raises(InvalidRequestError) as info:
        validate(Sample, {"amount": "1", "foo": "x"})
    assert info.value.param == "foo"
    assert info.value.message == "Received unknown parameter: foo"


def test_metadata_limits() -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate(Sample, {"amount": "1", "metadata": {f"k{i}": "v" for i in range(51)}})
    assert info.value.param == "metadata"
    with pytest.raises(InvalidRequestError):
        validate(Sample, {"amount": "1", "metadata": {"k" * 41: "v"}})
    with pytest.raises(InvalidRequestError):
        validate(Sample, {"amount": "1", "metadata": {"k": "v" * 501}})
    ok = validate(Sample, {"amount": "1", "metadata": {"k" * 40: "v" * 500}})
    assert ok.metadata == {"k" * 40: "v" * 500}


def test_metadata_update_semantics() -> None:
    current = {"a": "1", "b": "2"}
    assert merge_metadata(current, {"a": "", "c": "3"}) == {"b": "2", "c": "3"}
    assert merge_metadata(current, {CLEAR_ALL: ""}) == {}
    # The clear marker cannot be forged: a user key with brackets is refused.
    with pytest.raises(InvalidRequestError):
        validate(Sample, {"amount": "1", "metadata": {CLEAR_ALL: ""}})
    assert validate(Sample, {"amount": "1", "metadata": {"__clear__": "x"}}).metadata == {
        "__clear__": "x"
    }
    assert merge_metadata(current, None) == current
