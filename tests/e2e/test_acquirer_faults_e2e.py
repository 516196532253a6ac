"""Each acquirer fault through the whole chain with the Stripe SDK (issue 4, item 6, "Done when").

Real processes (`bastionpay up`): the simulator's fault cards are entered in the hosted fields and
paid through api → vault → acquirer. Timeouts never double-charge:

- slow answer (within the vault's timeout) → approved, `succeeded`;
- no answer, dropped connection, malformed reply → the vault reverses, the reversal is
  acknowledged → a clean decline (`processing_error` / `try_again_later`), nothing held;
- no answer **and** the reversal unanswered too (a private platform whose acquirer drops
  reversals, seeded) → the PaymentIntent shows `processing`, never `succeeded`, until the worker's
  janitor gets the reversal through and returns it to `requires_payment_method`.

Afterwards no card number appears in any api response or log.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from tests.e2e.test_vault_e2e import (
    RecordingHTTPClient,
    _merchant_with_vault,
    _tokenize,
    browser,
    run_info,
)

from bastionpay.kernel.pan import find_pans

__all__ = ["browser", "run_info"]

pytestmark = pytest.mark.e2e

SLOW = ("4000009900000111", "123")
NO_ANSWER = ("4000009900000210", "123")
DROP = ("4000009900000319", "123")
GARBAGE = ("4000009900000418", "123")
NUMBERS = tuple(card[0] for card in (SLOW, NO_ANSWER, DROP, GARBAGE))


@contextlib.contextmanager
def _client(platform: Any, secret_key: str, bodies: list[bytes]) -> Iterator[stripe.StripeClient]:
    http_client = RecordingHTTPClient(platform.ca_file, bodies)
    try:
        yield stripe.StripeClient(
            secret_key,
            base_addresses={"api": platform.api_url},
            http_client=http_client,
            max_network_retries=0,
        )
    finally:
        http_client.close()


def _pay(client: stripe.StripeClient, pm: str) -> Any:
    return client.v1.payment_intents.create(
        {"amount": 2000, "currency": "usd", "payment_method": pm, "confirm": True}
    )


def _scan(platform: Any, bodies: list[bytes]) -> None:
    for body in bodies:
        decoded = body.decode("utf-8", errors="replace")
        assert find_pans(decoded) == [], decoded[:300]
    log = platform.log_file.read_text(errors="replace")
    assert not any(number in log for number in NUMBERS)
    assert find_pans(log) == [], [line for line in log.splitlines() if find_pans(line)][:3]


def test_each_acquirer_fault_through_the_stripe_sdk(
    platform: Any, run_info: dict[str, Any], browser: httpx.Client
) -> None:
    merchant = _merchant_with_vault(platform, run_info)
    bodies: list[bytes] = []
    with _client(platform, merchant["secret_key"], bodies) as client:
        _each_fault(client, browser, merchant["publishable_key"])
    _scan(platform, bodies)


def _each_fault(client: stripe.StripeClient, browser: httpx.Client, key: str) -> None:
    started = time.monotonic()
    slow = _pay(client, _tokenize(browser, key, SLOW))
    assert slow.status == "succeeded"  # answered after the slow delay, within the timeout
    assert time.monotonic() - started >= 2.5

    for card in (NO_ANSWER, DROP, GARBAGE):
        pm = _tokenize(browser, key, card)
        with pytest.raises(stripe.CardError) as declined:
            _pay(client, pm)
        error = declined.value.error
        assert declined.value.http_status == 402
        assert (error.code, error.decline_code) == ("processing_error", "try_again_later")
        intent = error.payment_intent
        assert intent.status == "requires_payment_method"
        assert intent.amount_received == 0
        charge = client.v1.charges.retrieve(intent.latest_charge)
        assert (charge.status, charge.captured) == ("failed", False)


@pytest.fixture
def unanswered_reversals(sqlite_runner: Any) -> Iterator[Any]:
    """A private platform whose acquirer leaves reversals unanswered 3 times out of 4.

    Seed 9 makes the draws fault, fault, fault, then answer: the three reversals of the first
    timed-out authorization go unanswered (so it is `reversal_pending`), the next gets through.
    """
    sqlite_runner.env.update(
        {
            "BASTIONPAY_ACQUIRER_FAULTS": "0400=no_answer:0.75",
            "BASTIONPAY_ACQUIRER_SEED": "9",
            "BASTIONPAY_VAULT_ACQUIRER_TIMEOUT_SECONDS": "1",
        }
    )
    platform = sqlite_runner.start()
    try:
        yield platform
    finally:
        sqlite_runner.stop()


def test_an_unanswered_reversal_shows_processing_until_the_janitor_settles_it(
    unanswered_reversals: Any,
) -> None:
    platform = unanswered_reversals
    info: dict[str, Any] = json.loads((platform.data_dir / "run.json").read_text())
    merchant = _merchant_with_vault(platform, info)
    bodies: list[bytes] = []
    with httpx.Client(
        base_url=info["vault_public_url"],
        verify=ssl.create_default_context(cafile=platform.ca_file),
        timeout=30,
    ) as cardholder:
        pm = _tokenize(cardholder, merchant["publishable_key"], NO_ANSWER)
    with _client(platform, merchant["secret_key"], bodies) as client:
        _processing_then_settled(client, pm)
    _scan(platform, bodies)


def _processing_then_settled(client: stripe.StripeClient, pm: str) -> None:
    intent = _pay(client, pm)
    assert intent.status == "processing"  # neither answered nor (yet) reversed: never succeeded
    assert intent.amount_received == 0
    deadline = time.monotonic() + 60
    current = intent
    while current.status == "processing" and time.monotonic() < deadline:
        time.sleep(0.5)
        current = client.v1.payment_intents.retrieve(intent.id)
    assert current.status == "requires_payment_method"
    assert current.last_payment_error.decline_code == "try_again_later"
    charge = client.v1.charges.retrieve(current.latest_charge)
    assert (charge.status, charge.captured, charge.amount_captured) == ("failed", False, 0)
    # The attempt is over: the same intent takes another card.
    again = client.v1.payment_intents.confirm(intent.id, {"payment_method": "pm_card_visa"})
    assert again.status == "succeeded"
