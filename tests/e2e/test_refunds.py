"""Refunds: full and partial, by PaymentIntent or by Charge, the limits (never more than was
captured), refusals for payments that were never captured, and the balance transactions."""

from __future__ import annotations

import re

import pytest
import stripe

pytestmark = pytest.mark.e2e


def test_full_refund_by_payment_intent(client: stripe.StripeClient, pay):
    pi = pay(amount=2000)
    refund = client.v1.refunds.create(
        {"payment_intent": pi.id, "reason": "requested_by_customer", "metadata": {"ticket": "7"}}
    )
    assert re.fullmatch(r"re_[0-9A-Za-z]{24}", refund.id)
    assert refund.object == "refund"
    assert refund.amount == 2000
    assert refund.currency == "usd"
    assert refund.status == "succeeded"
    assert refund.charge == pi.latest_charge
    assert refund.payment_intent == pi.id
    assert refund.reason == "requested_by_customer"
    assert refund.metadata.to_dict() == {"ticket": "7"}

    assert client.v1.refunds.retrieve(refund.id).to_dict() == refund.to_dict()
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 2000
    assert charge.refunded is True
    # Stripe keeps a refunded PaymentIntent in `succeeded`.
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


def test_refund_by_charge_defaults_to_remaining_amount(client: stripe.StripeClient, pay):
    pi = pay(amount=1800)
    first = client.v1.refunds.create({"charge": pi.latest_charge, "amount": 500})
    rest = client.v1.refunds.create({"charge": pi.latest_charge})
    assert first.amount == 500
    assert rest.amount == 1300
    assert rest.payment_intent == pi.id
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 1800
    assert charge.refunded is True


def test_several_partial_refunds_up_to_captured_amount(client: stripe.StripeClient, pay):
    pi = pay(amount=1000)
    amounts = [300, 300, 400]
    refunds = [client.v1.refunds.create({"payment_intent": pi.id, "amount": a}) for a in amounts]
    assert [r.amount for r in refunds] == amounts
    assert len({r.id for r in refunds}) == 3

    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 1000
    assert charge.refunded is True

    by_pi = client.v1.refunds.list({"payment_intent": pi.id})
    assert [r.id for r in by_pi.data] == [r.id for r in reversed(refunds)]
    by_charge = client.v1.refunds.list({"charge": pi.latest_charge, "limit": 2})
    assert [r.id for r in by_charge.data] == [refunds[2].id, refunds[1].id]
    assert by_charge.has_more is True


def test_partial_refund_keeps_charge_unrefunded(client: stripe.StripeClient, pay):
    pi = pay(amount=1000)
    client.v1.refunds.create({"payment_intent": pi.id, "amount": 250})
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 250
    assert charge.refunded is False


def test_over_refund_is_rejected_and_changes_nothing(client: stripe.StripeClient, pay):
    pi = pay(amount=1000)
    client.v1.refunds.create({"payment_intent": pi.id, "amount": 700})
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.refunds.create({"payment_intent": pi.id, "amount": 301})
    err = excinfo.value
    assert err.http_status == 400
    assert err.error.type == "invalid_request_error"
    assert err.param == "amount"

    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 700
    assert len(client.v1.refunds.list({"payment_intent": pi.id}).data) == 1
    # The exact remainder is still refundable.
    assert client.v1.refunds.create({"payment_intent": pi.id, "amount": 300}).amount == 300


def test_refund_larger_than_the_charge_is_rejected(client: stripe.StripeClient, pay):
    pi = pay(amount=1000)
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.refunds.create({"charge": pi.latest_charge, "amount": 1001})
    assert excinfo.value.http_status == 400
    assert excinfo.value.param == "amount"
    assert client.v1.refunds.list({"charge": pi.latest_charge}).data == []


def test_refund_of_fully_refunded_charge_is_rejected(client: stripe.StripeClient, pay):
    pi = pay(amount=1000)
    client.v1.refunds.create({"payment_intent": pi.id})
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.refunds.create({"payment_intent": pi.id})
    assert excinfo.value.http_status == 400
    # Stripe error code: "charge_already_refunded".
    assert excinfo.value.code == "charge_already_refunded"
    assert len(client.v1.refunds.list({"payment_intent": pi.id}).data) == 1


def test_partial_capture_limits_refunds_to_captured_amount(client: stripe.StripeClient, pay):
    pi = pay(amount=1000, capture_method="manual")
    client.v1.payment_intents.capture(pi.id, {"amount_to_capture": 600})
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.refunds.create({"payment_intent": pi.id, "amount": 601})
    assert excinfo.value.param == "amount"
    refund = client.v1.refunds.create({"payment_intent": pi.id})
    assert refund.amount == 600
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 600
    assert charge.refunded is True


def test_refund_of_uncaptured_intent_is_rejected(client: stripe.StripeClient, pay, balance_total):
    pi = pay(amount=1000, capture_method="manual")
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.refunds.create({"payment_intent": pi.id, "amount": 100})
    assert excinfo.value.http_status == 400
    assert excinfo.value.error.type == "invalid_request_error"
    after = client.v1.payment_intents.retrieve(pi.id)
    assert after.status == "requires_capture"
    assert after.amount_capturable == 1000
    assert client.v1.refunds.list({"payment_intent": pi.id}).data == []
    assert balance_total() == 0


def test_refund_of_failed_charge_or_unpaid_intent_is_rejected(client: stripe.StripeClient):
    with pytest.raises(stripe.CardError) as excinfo:
        client.v1.payment_intents.create(
            {
                "amount": 1000,
                "currency": "usd",
                "payment_method": "pm_card_chargeDeclined",
                "confirm": True,
            }
        )
    failed_charge = excinfo.value.error.charge
    pi_id = excinfo.value.error.payment_intent.id
    with pytest.raises(stripe.InvalidRequestError) as by_charge:
        client.v1.refunds.create({"charge": failed_charge})
    assert by_charge.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as by_pi:
        client.v1.refunds.create({"payment_intent": pi_id})
    assert by_pi.value.http_status == 400
    assert client.v1.refunds.list().data == []


def test_refund_with_invalid_reason_is_rejected(client: stripe.StripeClient, pay):
    pi = pay(amount=1000)
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.refunds.create({"payment_intent": pi.id, "reason": "changed_my_mind"})
    assert excinfo.value.http_status == 400
    assert excinfo.value.param == "reason"
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 0


def test_refund_and_charge_balance_transactions(client: stripe.StripeClient, pay, stripe_fee):
    pi = pay(amount=2500)
    charge = client.v1.charges.retrieve(pi.latest_charge)
    refund = client.v1.refunds.create({"payment_intent": pi.id, "amount": 1000})

    charge_txn = client.v1.balance_transactions.retrieve(charge.balance_transaction)
    assert charge_txn.type == "charge"
    assert charge_txn.source == charge.id
    assert charge_txn.currency == "usd"
    assert (charge_txn.amount, charge_txn.fee, charge_txn.net) == (2500, 103, 2397)
    assert charge_txn.fee == stripe_fee(2500)

    refund_txn = client.v1.balance_transactions.retrieve(refund.balance_transaction)
    assert refund_txn.object == "balance_transaction"
    assert refund_txn.type == "refund"
    assert refund_txn.source == refund.id
    assert refund_txn.currency == "usd"
    assert (refund_txn.amount, refund_txn.fee, refund_txn.net) == (-1000, 0, -1000)
