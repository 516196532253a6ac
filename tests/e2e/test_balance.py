"""Balance and balance transactions: the balance is charges minus fees minus refunds, and every
money movement has a balance transaction with amount, fee and net."""

from __future__ import annotations

import pytest
import stripe

pytestmark = pytest.mark.e2e


def test_new_merchant_has_zero_balance(client: stripe.StripeClient, balance_total):
    balance = client.v1.balance.retrieve()
    assert balance.object == "balance"
    assert balance.livemode is False
    assert balance_total() == 0
    txns = client.v1.balance_transactions.list()
    assert txns.object == "list"
    assert txns.data == []
    assert txns.has_more is False


def test_fee_rounding_half_up(stripe_fee):
    # Guards the expected values used across the suite (no server needed, but it documents
    # the pricing the server must implement): 2.9 % + 30, rounded half-up.
    assert stripe_fee(1000) == 59  # 29.0
    assert stripe_fee(2500) == 103  # 72.5 -> 73
    assert stripe_fee(1500) == 74  # 43.5 -> 44
    assert stripe_fee(50) == 31  # 1.45 -> 1
    assert stripe_fee(1724) == 80  # 49.996 -> 50


def test_balance_reflects_charges_fees_and_refunds(
    client: stripe.StripeClient, pay, balance_total, stripe_fee
):
    first = pay(amount=2500)
    second = pay(amount=1000, capture_method="manual")
    # An uncaptured authorization moves no money yet.
    assert balance_total() == 2500 - stripe_fee(2500)

    client.v1.payment_intents.capture(second.id)
    assert balance_total() == (2500 - 103) + (1000 - 59)

    client.v1.refunds.create({"payment_intent": first.id, "amount": 500})
    assert balance_total() == 2397 + 941 - 500

    # Declines and canceled authorizations do not touch the balance.
    with pytest.raises(stripe.CardError):
        pay(amount=4000, payment_method="pm_card_chargeDeclinedInsufficientFunds")
    third = pay(amount=7000, capture_method="manual")
    client.v1.payment_intents.cancel(third.id)
    assert balance_total() == 2838


def test_balance_after_partial_capture_and_full_refund(
    client: stripe.StripeClient, pay, balance_total, stripe_fee
):
    pi = pay(amount=1724, capture_method="manual")
    client.v1.payment_intents.capture(pi.id, {"amount_to_capture": 1500})
    assert balance_total() == 1500 - stripe_fee(1500)
    client.v1.refunds.create({"payment_intent": pi.id})
    # Stripe does not return the processing fee on a refund.
    assert balance_total() == -stripe_fee(1500)


def test_balance_transactions_list_and_retrieve(client: stripe.StripeClient, pay, stripe_fee):
    p1 = pay(amount=1000)
    p2 = pay(amount=2500)
    refund = client.v1.refunds.create({"payment_intent": p1.id, "amount": 400})
    c1 = client.v1.charges.retrieve(p1.latest_charge)
    c2 = client.v1.charges.retrieve(p2.latest_charge)

    txns = client.v1.balance_transactions.list()
    assert txns.has_more is False
    got = [(t.type, t.source, t.amount, t.fee, t.net) for t in txns.data]
    assert got == [
        ("refund", refund.id, -400, 0, -400),
        ("charge", c2.id, 2500, stripe_fee(2500), 2500 - stripe_fee(2500)),
        ("charge", c1.id, 1000, stripe_fee(1000), 1000 - stripe_fee(1000)),
    ]
    assert [t.id for t in txns.data] == [
        refund.balance_transaction,
        c2.balance_transaction,
        c1.balance_transaction,
    ]
    for txn in txns.data:
        assert txn.object == "balance_transaction"
        assert txn.id.startswith("txn_")
        assert txn.currency == "usd"
        assert txn.net == txn.amount - txn.fee
        assert client.v1.balance_transactions.retrieve(txn.id).to_dict() == txn.to_dict()

    page = client.v1.balance_transactions.list({"limit": 1})
    assert [t.id for t in page.data] == [refund.balance_transaction]
    assert page.has_more is True
    page = client.v1.balance_transactions.list({"limit": 2, "starting_after": page.data[0].id})
    assert [t.id for t in page.data] == [c2.balance_transaction, c1.balance_transaction]
    assert page.has_more is False


def test_balance_equals_sum_of_balance_transactions(
    client: stripe.StripeClient, pay, balance_total
):
    for amount in (777, 1313, 9999):
        pay(amount=amount)
    last = pay(amount=2000)
    client.v1.refunds.create({"payment_intent": last.id, "amount": 1999})
    txns = list(client.v1.balance_transactions.list({"limit": 2}).auto_paging_iter())
    assert len(txns) == 5
    assert balance_total() == sum(t.net for t in txns)
