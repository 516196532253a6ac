"""3-D Secure on real processes (`bastionpay up`): merchant → api → vault → acquirer, and the
cardholder's browser on the vault's challenge page (issue 4, item 7 and "Done when"; issue 7,
item 5).

Payments go through the official Stripe SDK; the challenge page is driven with httpx as a browser
would (GET the page, POST the button). Covered: a test PaymentMethod and a hosted-fields card that
require authentication succeed after the challenge — the merchant's retrieve after the redirect
already shows `succeeded` / `requires_capture`; a failed challenge leaves the intent in
`requires_payment_method` with `payment_intent_authentication_failure`; a `request_3ds` rule sends
an ordinary card through 3-D Secure once. Then the same scan as test_vault_e2e: no card number or
CVC in any api response, the api database or any log, and no clear card number in the vault
database (C1, C3, C5).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
import stripe
from tests.e2e.test_vault_e2e import (
    CVC_NEAR_NAME,
    RecordingHTTPClient,
    _api_database_url,
    _database_bytes,
    _merchant_with_vault,
    _text_columns,
    _tokenize,
    browser,
    run_info,
)

from bastionpay.kernel.pan import find_pans

__all__ = ["browser", "run_info"]

pytestmark = pytest.mark.e2e

RETURN_URL = "https://shop.example/checkout/done"
# (number, CVC) entered in the hosted fields: Stripe's "3DS required" card.
THREE_DS_CARD = ("4000002760003184", "719")
NUMBERS = ("4000002760003184", "4000000000003220", "4242424242424242", "5555555555554444")


@pytest.fixture
def cardholder(platform: Any, run_info: dict[str, Any]) -> Iterator[httpx.Client]:
    """The cardholder's browser: the vault's public listener, redirects not followed."""
    with httpx.Client(
        verify=ssl.create_default_context(cafile=platform.ca_file),
        timeout=30,
        follow_redirects=False,
    ) as client:
        yield client


def _authenticate(
    cardholder: httpx.Client, intent: Any, run_info: dict[str, Any], result: str
) -> dict[str, list[str]]:
    """What a browser does with `next_action.redirect_to_url`: open it, press a button."""
    assert intent.status == "requires_action"
    action = intent.next_action
    assert action.type == "redirect_to_url"
    assert action.redirect_to_url.return_url == RETURN_URL
    url = action.redirect_to_url.url
    assert url.startswith(run_info["vault_public_url"] + "/3ds/challenge/")
    page = cardholder.get(url)
    assert page.status_code == 200
    assert "Complete authentication" in page.text and "<script" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    done = cardholder.post(url, data={"result": result})
    assert done.status_code == 303, done.text
    target = urlsplit(done.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == RETURN_URL
    query = parse_qs(target.query)
    assert query["payment_intent"] == [intent.id]
    assert query["payment_intent_client_secret"] == [intent.client_secret]
    # The link works once.
    assert cardholder.post(url, data={"result": result}).status_code == 410
    return query


def test_three_d_secure_success_failure_and_risk_through_the_chain(
    platform: Any,
    run_info: dict[str, Any],
    browser: httpx.Client,
    cardholder: httpx.Client,
) -> None:
    merchant = _merchant_with_vault(platform, run_info)
    bodies: list[bytes] = []
    http_client = RecordingHTTPClient(platform.ca_file, bodies)
    client = stripe.StripeClient(
        merchant["secret_key"],
        base_addresses={"api": platform.api_url},
        http_client=http_client,
        max_network_retries=0,
    )
    try:
        # 1. A test PaymentMethod that requires 3DS: success, then the intent is already paid.
        intent = client.v1.payment_intents.create(
            {
                "amount": 2000,
                "currency": "usd",
                "payment_method": "pm_card_threeDSecure2Required",
                "confirm": True,
                "return_url": RETURN_URL,
            }
        )
        assert intent.latest_charge is None  # nothing authorized before authentication
        query = _authenticate(cardholder, intent, run_info, "complete")
        assert query["redirect_status"] == ["succeeded"]
        paid = client.v1.payment_intents.retrieve(intent.id)
        assert paid.status == "succeeded"
        assert paid.next_action is None
        assert paid.amount_received == 2000
        charge = client.v1.charges.retrieve(paid.latest_charge)
        assert charge.outcome.type == "authorized"
        assert client.v1.refunds.create({"payment_intent": paid.id}).status == "succeeded"

        # 2. A hosted-fields card that requires 3DS, manual capture; the merchant confirms again.
        pm = _tokenize(browser, merchant["publishable_key"], THREE_DS_CARD)
        held = client.v1.payment_intents.create(
            {
                "amount": 4200,
                "currency": "usd",
                "payment_method": pm,
                "confirm": True,
                "capture_method": "manual",
                "return_url": RETURN_URL,
            }
        )
        _authenticate(cardholder, held, run_info, "complete")
        confirmed = client.v1.payment_intents.confirm(held.id)
        assert confirmed.status == "requires_capture"
        assert client.v1.payment_intents.capture(held.id).status == "succeeded"

        # 3. Failure: back to requires_payment_method with Stripe's error; nothing was charged.
        failing = client.v1.payment_intents.create(
            {
                "amount": 1500,
                "currency": "usd",
                "payment_method": "pm_card_authenticationRequired",
                "confirm": True,
                "return_url": RETURN_URL,
            }
        )
        query = _authenticate(cardholder, failing, run_info, "fail")
        assert query["redirect_status"] == ["failed"]
        failed = client.v1.payment_intents.retrieve(failing.id)
        assert failed.status == "requires_payment_method"
        assert failed.last_payment_error.code == "payment_intent_authentication_failure"
        assert failed.latest_charge is None
        retried = client.v1.payment_intents.confirm(failing.id, {"payment_method": "pm_card_visa"})
        assert retried.status == "succeeded"

        # 4. A request_3ds rule sends an ordinary card through 3DS, once.
        with httpx.Client(
            base_url=platform.api_url,
            verify=ssl.create_default_context(cafile=platform.ca_file),
            headers={"Authorization": f"Bearer {merchant['secret_key']}"},
            timeout=30,
        ) as api:
            rule = api.post(
                "/v1/radar/rules", data={"rule": "request_3ds if :amount_in_usd: > 500"}
            )
            assert rule.status_code == 200, rule.text
            bodies.append(rule.content)
        asked = client.v1.payment_intents.create(
            {
                "amount": 60000,
                "currency": "usd",
                "payment_method": "pm_card_mastercard",
                "confirm": True,
                "return_url": RETURN_URL,
            }
        )
        _authenticate(cardholder, asked, run_info, "complete")
        assert client.v1.payment_intents.retrieve(asked.id).status == "succeeded"
        small = client.v1.payment_intents.create(
            {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
        )
        assert small.status == "succeeded"
    finally:
        http_client.close()

    # --- C1, C5: no card number or CVC in any api response, the api database or any log ---
    assert len(bodies) >= 12
    for body in bodies:
        decoded = body.decode("utf-8", errors="replace")
        assert find_pans(decoded) == [], decoded[:500]
        assert not CVC_NEAR_NAME.search(decoded), decoded[:500]
    engine = sa.create_engine(_api_database_url(platform))
    try:
        hits = [
            f"{table}.{column}"
            for table, column, value in _text_columns(engine)
            if find_pans(value if isinstance(value, str) else json.dumps(value))
        ]
    finally:
        engine.dispose()
    assert hits == []
    if platform.backend == "sqlite":
        raw = _database_bytes(platform.data_dir / "api.db")
        assert not any(number.encode() in raw for number in NUMBERS)
        vault_raw = _database_bytes(platform.data_dir / "vault.db")
        assert not any(number.encode() in vault_raw for number in NUMBERS)
    log = platform.log_file.read_text(errors="replace")
    assert find_pans(log) == [], [line for line in log.splitlines() if find_pans(line)][:3]
    assert "719" not in [word.strip('",:') for word in log.split()]  # the hosted-fields CVC
