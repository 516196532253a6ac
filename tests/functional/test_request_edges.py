"""Odd requests get clear Stripe-shaped answers, never a 500 (security review L1, L2)."""

from __future__ import annotations

import json
from typing import Any

from starlette.testclient import TestClient


def test_head_on_a_get_route_is_answered(api: TestClient) -> None:
    assert api.head("/v1/balance").status_code == 200
    assert api.head("/v1/payment_intents").status_code == 200


def test_wrong_method_is_405_in_the_error_shape(api: TestClient) -> None:
    response = api.put("/v1/payment_intents")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_odd_form_keys_are_400_not_500(api: TestClient) -> None:
    # "²".isdigit() is True in Python: it must stay a plain key, not become a list index.
    superscript = api.post("/v1/customers", data={"metadata[²]": "x"})
    assert superscript.status_code == 200
    assert superscript.json()["metadata"] == {"²": "x"}
    for body in (
        "a[" + "9" * 5000 + "]=x",
        "amount=100&currency=usd&description=%FF%FE",
    ):
        response = api.post(
            "/v1/payment_intents",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 400, (body[:40], response.text)


def test_unicode_digits_are_not_amounts(api: TestClient) -> None:
    response = api.post("/v1/payment_intents", data={"amount": "٢٠٠٠", "currency": "usd"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parameter_invalid_integer"


def test_json_must_be_utf8_without_duplicate_keys(api: TestClient) -> None:
    dup = b'{"amount": 100, "currency": "usd", "amount": 5000}'
    utf16 = json.dumps({"amount": 100, "currency": "usd"}).encode("utf-16")
    for raw in (dup, utf16):
        response = api.post(
            "/v1/payment_intents", content=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, raw[:30]


def test_control_characters_in_ids_are_404(api: TestClient) -> None:
    for path in ("/v1/payment_intents/pi_%00x", "/v1/customers/cus_%1b%5b31m"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "resource_missing"


def test_amounts_as_json_numbers_must_be_integers(api: TestClient) -> None:
    body: dict[str, Any] = {"amount": 10.5, "currency": "usd"}
    response = api.post("/v1/payment_intents", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "amount"


def test_card_numbers_are_refused_in_free_text_fields(api: TestClient) -> None:
    """C5: a card number typed into description or metadata would be stored outside the vault."""
    for data in (
        {"amount": "100", "currency": "usd", "description": "card 4242 4242 4242 4242"},
        {"amount": "100", "currency": "usd", "metadata[note]": "5555-5555-5555-4444"},
    ):
        response = api.post("/v1/payment_intents", data=data)
        assert response.status_code == 400
        assert "card numbers are not accepted" in response.json()["error"]["message"]
        assert "4242 4242" not in response.text and "5555-5555" not in response.text
    ok = api.post("/v1/customers", data={"description": "order 1795879694 ref 4242"})
    assert ok.status_code == 200  # ordinary numbers and last4 are fine
