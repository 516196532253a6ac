"""Process lifecycle of `bastionpay up`: a clean stop on SIGTERM as well as SIGINT (the shared
platform fixture checks SIGINT at the end of the session), and data — payments, refunds,
customers and saved idempotent responses — that survives a restart."""

from __future__ import annotations

import signal

import pytest
import stripe

pytestmark = pytest.mark.e2e


def test_sigterm_stops_cleanly_and_data_survives_restart(
    sqlite_runner, merchant_cli, stripe_client_for
):
    first = sqlite_runner.start()
    merchant = merchant_cli(first, "Lifecycle Shop")
    client = stripe_client_for(first, merchant["secret_key"])
    pi = client.v1.payment_intents.create(
        {"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    refund = client.v1.refunds.create({"payment_intent": pi.id, "amount": 500})
    cus = client.v1.customers.create(
        {"email": "durable@example.com"}, {"idempotency_key": "lifecycle-key"}
    )

    # Stopped with the SDK's idle keep-alive connection still open, as a real client would leave
    # it; the runner requires exit code 0 within 20 s and no surviving child processes.
    sqlite_runner.stop(signal.SIGTERM)
    # A stale run.json must not be mistaken for the restarted platform's.
    (sqlite_runner.data_dir / "run.json").unlink(missing_ok=True)

    second = sqlite_runner.start()
    # The dev CA persists in the data dir, so clients keep trusting the platform.
    assert second.ca_file == first.ca_file
    again = stripe_client_for(second, merchant["secret_key"])
    after = again.v1.payment_intents.retrieve(pi.id)
    assert (after.status, after.amount_received, after.latest_charge) == (
        "succeeded",
        2500,
        pi.latest_charge,
    )
    assert again.v1.refunds.retrieve(refund.id).amount == 500
    assert again.v1.charges.retrieve(pi.latest_charge).amount_refunded == 500
    assert again.v1.customers.retrieve(cus.id).email == "durable@example.com"
    # Saved idempotent responses survive the restart (replayed for >= 24 h, P1).
    replay = again.v1.customers.create(
        {"email": "durable@example.com"}, {"idempotency_key": "lifecycle-key"}
    )
    assert replay.id == cus.id
    assert [c.id for c in again.v1.customers.list().data] == [cus.id]

    stripe_client_for.close()
    sqlite_runner.stop(signal.SIGINT)
    with pytest.raises(stripe.APIConnectionError):
        stripe_client_for(second, merchant["secret_key"]).v1.customers.retrieve(cus.id)
