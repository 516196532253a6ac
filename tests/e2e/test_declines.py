"""Declines with Stripe's test PaymentMethods: the 402 card_error, the PaymentIntent's state after
the decline, the failed Charge it leaves behind, and a successful retry with a good card."""

from __future__ import annotations

import pytest
import stripe

pytestmark = pytest.mark.e2e

# (test PaymentMethod, error code, decline_code) — Stripe's testing docs, "Declined payments".
DECLINES = [
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
    ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
]
DECLINE_IDS = [d[0] for d in DECLINES]


def decline(client: stripe.StripeClient, payment_method: str, **params) -> stripe.CardError:
    with pytest.raises(stripe.CardError) as excinfo:
        client.v1.payment_intents.create(
            {
                "amount": 2000,
                "currency": "usd",
                "payment_method": payment_method,
                "confirm": True,
                **params,
            }
        )
    return excinfo.value


@pytest.mark.parametrize(("payment_method", "code", "decline_code"), DECLINES, ids=DECLINE_IDS)
def test_decline_error_shape(client: stripe.StripeClient, payment_method, code, decline_code):
    err = decline(client, payment_method)
    assert err.http_status == 402
    assert err.code == code
    assert err.error.type == "card_error"
    assert err.error.code == code
    assert err.error.decline_code == decline_code
    assert err.error.message
    # The error carries the PaymentIntent (back to requires_payment_method) and the failed charge.
    pi = err.error.payment_intent
    assert pi.object == "payment_intent"
    assert pi.id.startswith("pi_")
    assert pi.status == "requires_payment_method"
    assert pi.amount_received == 0
    assert err.error.charge == pi.latest_charge
    assert pi.latest_charge.startswith("ch_")


@pytest.mark.parametrize(("payment_method", "code", "decline_code"), DECLINES, ids=DECLINE_IDS)
def test_declined_intent_and_failed_charge(
    client: stripe.StripeClient, balance_total, payment_method, code, decline_code
):
    err = decline(client, payment_method, metadata={"order": "42"})
    pi = client.v1.payment_intents.retrieve(err.error.payment_intent.id)
    assert pi.status == "requires_payment_method"
    assert pi.amount == 2000
    assert pi.amount_received == 0
    assert pi.amount_capturable == 0
    assert pi.metadata.to_dict() == {"order": "42"}
    lpe = pi.last_payment_error
    assert lpe is not None
    assert lpe.type == "card_error"
    assert lpe.code == code
    assert lpe.decline_code == decline_code

    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.status == "failed"
    assert charge.paid is False
    assert charge.captured is False
    assert charge.amount == 2000
    assert charge.amount_captured == 0
    assert charge.payment_intent == pi.id
    assert charge.failure_code == code
    assert charge.failure_message
    assert charge.balance_transaction is None

    listed = client.v1.charges.list({"payment_intent": pi.id})
    assert [c.id for c in listed.data] == [charge.id]
    # A decline moves no money.
    assert balance_total() == 0
    assert client.v1.balance_transactions.list().data == []


def test_retry_with_good_card_after_decline_succeeds(
    client: stripe.StripeClient, balance_total, stripe_fee
):
    err = decline(client, "pm_card_chargeDeclinedInsufficientFunds")
    pi_id = err.error.payment_intent.id
    failed_charge = err.error.charge

    retried = client.v1.payment_intents.confirm(pi_id, {"payment_method": "pm_card_visa"})
    assert retried.status == "succeeded"
    assert retried.amount_received == 2000
    assert retried.last_payment_error is None
    assert retried.latest_charge != failed_charge
    assert retried.latest_charge.startswith("ch_")

    charges = client.v1.charges.list({"payment_intent": pi_id})
    assert [c.id for c in charges.data] == [retried.latest_charge, failed_charge]
    assert [c.status for c in charges.data] == ["succeeded", "failed"]
    assert balance_total() == 2000 - stripe_fee(2000)


def test_decline_on_separate_confirm_then_retry_via_update(client: stripe.StripeClient):
    pi = client.v1.payment_intents.create(
        {
            "amount": 1500,
            "currency": "usd",
            "payment_method": "pm_card_chargeDeclined",
            "capture_method": "manual",
        }
    )
    assert pi.status == "requires_confirmation"
    with pytest.raises(stripe.CardError) as excinfo:
        client.v1.payment_intents.confirm(pi.id)
    assert excinfo.value.error.decline_code == "generic_decline"
    after = client.v1.payment_intents.retrieve(pi.id)
    assert after.status == "requires_payment_method"
    assert after.amount_capturable == 0

    # Attach a good card with update, then confirm: the manual-capture intent authorizes.
    updated = client.v1.payment_intents.update(pi.id, {"payment_method": "pm_card_mastercard"})
    assert updated.status == "requires_confirmation"
    authorized = client.v1.payment_intents.confirm(pi.id)
    assert authorized.status == "requires_capture"
    assert authorized.amount_capturable == 1500
    assert authorized.last_payment_error is None
    charge = client.v1.charges.retrieve(authorized.latest_charge)
    assert charge.status == "succeeded"
    assert charge.captured is False
    assert charge.payment_method_details.card.brand == "mastercard"


def test_declined_intent_can_be_canceled(client: stripe.StripeClient):
    err = decline(client, "pm_card_chargeDeclinedExpiredCard")
    canceled = client.v1.payment_intents.cancel(
        err.error.payment_intent.id, {"cancellation_reason": "abandoned"}
    )
    assert canceled.status == "canceled"
    assert canceled.cancellation_reason == "abandoned"
    assert canceled.amount_received == 0
