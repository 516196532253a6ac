"""PaymentIntents over the wire with the official Stripe SDK: the status machine, capture,
cancel, update, list/pagination and expand, with the amounts and charges each step produces."""

from __future__ import annotations

import re
import time

import pytest
import stripe

pytestmark = pytest.mark.e2e

ID_RE = r"[0-9A-Za-z]{24}"


def assert_id(value: object, prefix: str) -> None:
    assert isinstance(value, str), value
    assert re.fullmatch(prefix + ID_RE, value), f"{value!r} is not {prefix}<24 base62>"


def snapshot(pi: stripe.PaymentIntent) -> dict[str, object]:
    return {
        "status": pi.status,
        "amount": pi.amount,
        "amount_capturable": pi.amount_capturable,
        "amount_received": pi.amount_received,
        "latest_charge": pi.latest_charge,
        "payment_method": pi.payment_method,
    }


def test_create_without_payment_method_requires_payment_method(client: stripe.StripeClient):
    before = int(time.time())
    pi = client.v1.payment_intents.create(
        {"amount": 1999, "currency": "usd", "description": "order #1", "metadata": {"o": "1"}}
    )
    assert_id(pi.id, "pi_")
    assert pi.object == "payment_intent"
    assert pi.livemode is False
    assert pi.amount == 1999
    assert pi.currency == "usd"
    assert pi.status == "requires_payment_method"
    assert pi.amount_capturable == 0
    assert pi.amount_received == 0
    assert pi.latest_charge is None
    assert pi.payment_method is None
    assert pi.customer is None
    assert pi.description == "order #1"
    assert pi.metadata.to_dict() == {"o": "1"}
    assert pi.capture_method in {"automatic", "automatic_async"}
    assert before - 5 <= pi.created <= int(time.time()) + 5

    fetched = client.v1.payment_intents.retrieve(pi.id)
    assert fetched.to_dict() == pi.to_dict()


def test_create_with_payment_method_then_confirm_auto_captures(
    client: stripe.StripeClient, stripe_fee
):
    pi = client.v1.payment_intents.create(
        {"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa"}
    )
    assert pi.status == "requires_confirmation"
    assert_id(pi.payment_method, "pm_")
    assert pi.latest_charge is None

    confirmed = client.v1.payment_intents.confirm(pi.id)
    assert confirmed.id == pi.id
    assert confirmed.status == "succeeded"
    assert confirmed.amount_received == 2500
    assert confirmed.amount_capturable == 0
    assert confirmed.payment_method == pi.payment_method
    assert confirmed.last_payment_error is None
    assert_id(confirmed.latest_charge, "ch_")

    charge = client.v1.charges.retrieve(confirmed.latest_charge)
    assert charge.object == "charge"
    assert charge.status == "succeeded"
    assert charge.paid is True
    assert charge.captured is True
    assert charge.amount == 2500
    assert charge.amount_captured == 2500
    assert charge.amount_refunded == 0
    assert charge.refunded is False
    assert charge.currency == "usd"
    assert charge.payment_intent == pi.id
    assert charge.payment_method == pi.payment_method
    txn = client.v1.balance_transactions.retrieve(charge.balance_transaction)
    # 2500 * 2.9 % = 72.5, rounded half-up to 73 (banker's rounding would give 72), + 30.
    assert txn.amount == 2500
    assert txn.fee == stripe_fee(2500) == 103
    assert txn.net == 2397


def test_create_with_confirm_true_succeeds_in_one_call(client: stripe.StripeClient, pay):
    pi = pay(amount=1000)
    assert pi.status == "succeeded"
    assert pi.amount == 1000
    assert pi.amount_received == 1000
    assert pi.amount_capturable == 0
    assert_id(pi.latest_charge, "ch_")
    assert_id(pi.payment_method, "pm_")

    charges = client.v1.charges.list({"payment_intent": pi.id})
    assert [c.id for c in charges.data] == [pi.latest_charge]
    assert charges.has_more is False


def test_magic_test_payment_method_creates_a_new_payment_method_each_time(
    client: stripe.StripeClient, pay
):
    first = pay(amount=700)
    second = pay(amount=700)
    assert_id(first.payment_method, "pm_")
    assert_id(second.payment_method, "pm_")
    assert first.payment_method != second.payment_method
    assert "pm_card_visa" not in {first.payment_method, second.payment_method}

    pm = client.v1.payment_methods.retrieve(first.payment_method)
    assert pm.object == "payment_method"
    assert pm.type == "card"
    assert pm.card.brand == "visa"
    assert pm.card.last4 == "4242"
    assert pm.customer is None


@pytest.mark.parametrize(
    ("magic", "brand", "last4"),
    [
        ("pm_card_visa", "visa", "4242"),
        ("pm_card_mastercard", "mastercard", "4444"),
        ("pm_card_amex", "amex", "0005"),
    ],
)
def test_each_good_test_card_pays(client: stripe.StripeClient, pay, magic, brand, last4):
    pi = pay(amount=1234, payment_method=magic)
    assert pi.status == "succeeded"
    assert pi.amount_received == 1234
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.status == "succeeded"
    assert charge.payment_method_details.card.brand == brand
    assert charge.payment_method_details.card.last4 == last4
    pm = client.v1.payment_methods.retrieve(pi.payment_method)
    assert (pm.card.brand, pm.card.last4) == (brand, last4)


def test_manual_capture_full(client: stripe.StripeClient, pay, stripe_fee):
    pi = pay(amount=5000, capture_method="manual")
    assert pi.capture_method == "manual"
    assert pi.status == "requires_capture"
    assert pi.amount_capturable == 5000
    assert pi.amount_received == 0
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.status == "succeeded"
    assert charge.paid is True
    assert charge.captured is False
    assert charge.amount == 5000
    assert charge.amount_captured == 0

    captured = client.v1.payment_intents.capture(pi.id)
    assert captured.status == "succeeded"
    assert captured.amount_received == 5000
    assert captured.amount_capturable == 0
    assert captured.latest_charge == pi.latest_charge
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.captured is True
    assert charge.amount_captured == 5000
    txn = client.v1.balance_transactions.retrieve(charge.balance_transaction)
    assert (txn.amount, txn.fee, txn.net) == (5000, stripe_fee(5000), 5000 - stripe_fee(5000))


def test_manual_capture_partial(client: stripe.StripeClient, pay, stripe_fee):
    pi = pay(amount=1000, capture_method="manual")
    assert pi.status == "requires_capture"

    captured = client.v1.payment_intents.capture(pi.id, {"amount_to_capture": 600})
    assert captured.status == "succeeded"
    assert captured.amount == 1000
    assert captured.amount_received == 600
    # Stripe releases the uncaptured remainder: nothing is left to capture.
    assert captured.amount_capturable == 0

    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount == 1000
    assert charge.amount_captured == 600
    assert charge.captured is True
    txn = client.v1.balance_transactions.retrieve(charge.balance_transaction)
    # Fees are charged on what was captured: 600 * 2.9 % = 17.4 -> 17, + 30.
    assert txn.amount == 600
    assert txn.fee == stripe_fee(600) == 47
    assert txn.net == 553


def test_capture_more_than_capturable_is_rejected_and_changes_nothing(
    client: stripe.StripeClient, pay
):
    pi = pay(amount=1000, capture_method="manual")
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.capture(pi.id, {"amount_to_capture": 1001})
    assert excinfo.value.http_status == 400
    assert excinfo.value.error.type == "invalid_request_error"
    assert excinfo.value.param == "amount_to_capture"
    after = client.v1.payment_intents.retrieve(pi.id)
    assert snapshot(after) == snapshot(pi)


def test_capture_of_automatic_succeeded_intent_is_unexpected_state(
    client: stripe.StripeClient, pay
):
    pi = pay(amount=1500)
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.capture(pi.id)
    assert excinfo.value.http_status == 400
    assert excinfo.value.code == "payment_intent_unexpected_state"
    assert snapshot(client.v1.payment_intents.retrieve(pi.id)) == snapshot(pi)


def test_cancel_requires_payment_method_intent(client: stripe.StripeClient):
    pi = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"})
    canceled = client.v1.payment_intents.cancel(
        pi.id, {"cancellation_reason": "requested_by_customer"}
    )
    assert canceled.status == "canceled"
    assert canceled.cancellation_reason == "requested_by_customer"
    assert isinstance(canceled.canceled_at, int)
    assert abs(canceled.canceled_at - time.time()) < 300
    assert canceled.amount_received == 0
    assert client.v1.payment_intents.retrieve(pi.id).status == "canceled"


def test_cancel_authorized_intent_releases_it(client: stripe.StripeClient, pay, balance_total):
    pi = pay(amount=3000, capture_method="manual")
    canceled = client.v1.payment_intents.cancel(pi.id, {"cancellation_reason": "abandoned"})
    assert canceled.status == "canceled"
    assert canceled.cancellation_reason == "abandoned"
    assert canceled.amount_capturable == 0
    assert canceled.amount_received == 0
    # An authorization that was never captured moves no money.
    assert balance_total() == 0

    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.capture(pi.id)
    assert excinfo.value.http_status == 400
    assert excinfo.value.code == "payment_intent_unexpected_state"
    after = client.v1.payment_intents.retrieve(pi.id)
    assert after.status == "canceled"
    assert after.amount_received == 0


def test_cancel_of_succeeded_intent_is_unexpected_state(client: stripe.StripeClient, pay):
    pi = pay(amount=1100)
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.cancel(pi.id)
    assert excinfo.value.http_status == 400
    assert excinfo.value.code == "payment_intent_unexpected_state"
    after = client.v1.payment_intents.retrieve(pi.id)
    assert after.status == "succeeded"
    assert after.cancellation_reason is None
    assert after.canceled_at is None


def test_confirm_of_succeeded_or_canceled_intent_is_unexpected_state(
    client: stripe.StripeClient, pay
):
    done = pay(amount=1200)
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.confirm(done.id, {"payment_method": "pm_card_visa"})
    assert excinfo.value.code == "payment_intent_unexpected_state"
    assert snapshot(client.v1.payment_intents.retrieve(done.id)) == snapshot(done)
    assert len(client.v1.charges.list({"payment_intent": done.id}).data) == 1

    gone = client.v1.payment_intents.create({"amount": 1200, "currency": "usd"})
    client.v1.payment_intents.cancel(gone.id)
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.confirm(gone.id, {"payment_method": "pm_card_visa"})
    assert excinfo.value.code == "payment_intent_unexpected_state"
    after = client.v1.payment_intents.retrieve(gone.id)
    assert after.status == "canceled"
    assert after.latest_charge is None
    assert client.v1.charges.list({"payment_intent": gone.id}).data == []


def test_confirm_without_payment_method_is_rejected(client: stripe.StripeClient):
    pi = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.confirm(pi.id)
    assert excinfo.value.http_status == 400
    after = client.v1.payment_intents.retrieve(pi.id)
    assert after.status == "requires_payment_method"
    assert after.latest_charge is None


def test_update_amount_description_and_metadata(client: stripe.StripeClient):
    pi = client.v1.payment_intents.create(
        {"amount": 1000, "currency": "usd", "metadata": {"keep": "1", "drop": "2"}}
    )
    updated = client.v1.payment_intents.update(
        pi.id,
        {
            "amount": 1750,
            "description": "two widgets",
            "metadata": {"drop": "", "added": "3"},
        },
    )
    assert updated.amount == 1750
    assert updated.description == "two widgets"
    # Metadata updates merge; an empty string deletes the key.
    assert updated.metadata.to_dict() == {"keep": "1", "added": "3"}
    assert updated.status == "requires_payment_method"
    fetched = client.v1.payment_intents.retrieve(pi.id)
    assert fetched.amount == 1750
    assert fetched.metadata.to_dict() == {"keep": "1", "added": "3"}

    paid = client.v1.payment_intents.confirm(pi.id, {"payment_method": "pm_card_visa"})
    assert paid.status == "succeeded"
    assert paid.amount_received == 1750


def test_update_metadata_after_success_is_allowed(client: stripe.StripeClient, pay):
    pi = pay(amount=900, metadata={"order": "A"})
    updated = client.v1.payment_intents.update(pi.id, {"metadata": {"shipped": "yes"}})
    assert updated.status == "succeeded"
    assert updated.amount_received == 900
    assert updated.metadata.to_dict() == {"order": "A", "shipped": "yes"}


def test_list_is_newest_first_and_paginates(client: stripe.StripeClient):
    created = [
        client.v1.payment_intents.create({"amount": 1000 + i, "currency": "usd"}).id
        for i in range(5)
    ]
    newest_first = list(reversed(created))

    page1 = client.v1.payment_intents.list({"limit": 2})
    assert page1.object == "list"
    assert page1.url == "/v1/payment_intents"
    assert [p.id for p in page1.data] == newest_first[0:2]
    assert page1.has_more is True

    page2 = client.v1.payment_intents.list({"limit": 2, "starting_after": page1.data[-1].id})
    assert [p.id for p in page2.data] == newest_first[2:4]
    assert page2.has_more is True

    page3 = client.v1.payment_intents.list({"limit": 2, "starting_after": page2.data[-1].id})
    assert [p.id for p in page3.data] == newest_first[4:5]
    assert page3.has_more is False

    before = client.v1.payment_intents.list({"limit": 2, "ending_before": newest_first[4]})
    assert [p.id for p in before.data] == newest_first[2:4]
    assert before.has_more is True

    everything = client.v1.payment_intents.list({"limit": 100})
    assert [p.id for p in everything.data] == newest_first
    assert everything.has_more is False

    walked = [p.id for p in client.v1.payment_intents.list({"limit": 2}).auto_paging_iter()]
    assert walked == newest_first


def test_list_filters_by_customer(client: stripe.StripeClient, pay):
    alice = client.v1.customers.create({"email": "alice@example.com"})
    bob = client.v1.customers.create({"email": "bob@example.com"})
    a1 = pay(amount=1000, customer=alice.id)
    b1 = pay(amount=1100, customer=bob.id)
    a2 = client.v1.payment_intents.create({"amount": 1200, "currency": "usd", "customer": alice.id})

    alices = client.v1.payment_intents.list({"customer": alice.id})
    assert [p.id for p in alices.data] == [a2.id, a1.id]
    assert all(p.customer == alice.id for p in alices.data)
    bobs = client.v1.payment_intents.list({"customer": bob.id})
    assert [p.id for p in bobs.data] == [b1.id]


def test_expand_latest_charge_customer_and_payment_method(client: stripe.StripeClient, pay):
    cus = client.v1.customers.create({"email": "expand@example.com"})
    pi = pay(amount=4200, customer=cus.id)
    expanded = client.v1.payment_intents.retrieve(
        pi.id, {"expand": ["latest_charge", "customer", "payment_method"]}
    )
    assert expanded.latest_charge.object == "charge"
    assert expanded.latest_charge.id == pi.latest_charge
    assert expanded.latest_charge.amount == 4200
    assert expanded.latest_charge.payment_intent == pi.id
    assert expanded.customer.object == "customer"
    assert expanded.customer.id == cus.id
    assert expanded.customer.email == "expand@example.com"
    assert expanded.payment_method.object == "payment_method"
    assert expanded.payment_method.id == pi.payment_method
    assert expanded.payment_method.card.last4 == "4242"

    # Without expand the same fields are plain ids.
    plain = client.v1.payment_intents.retrieve(pi.id)
    assert plain.latest_charge == pi.latest_charge
    assert plain.customer == cus.id


def test_expand_on_lists(client: stripe.StripeClient, pay):
    pi = pay(amount=3100)
    listing = client.v1.payment_intents.list({"expand": ["data.latest_charge"]})
    [item] = listing.data
    assert item.id == pi.id
    assert item.latest_charge.object == "charge"
    assert item.latest_charge.id == pi.latest_charge
    assert item.latest_charge.amount_captured == 3100
    assert item.payment_method == pi.payment_method  # not expanded unless asked


def test_expand_of_unknown_field_is_rejected(client: stripe.StripeClient):
    pi = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.retrieve(pi.id, {"expand": ["not_a_field"]})
    assert excinfo.value.http_status == 400
    assert excinfo.value.error.type == "invalid_request_error"


def test_charges_list_and_retrieve(client: stripe.StripeClient, pay):
    p1 = pay(amount=1000)
    p2 = pay(amount=2000)
    listing = client.v1.charges.list()
    assert [c.id for c in listing.data] == [p2.latest_charge, p1.latest_charge]
    assert [c.amount for c in listing.data] == [2000, 1000]
    only_p1 = client.v1.charges.list({"payment_intent": p1.id})
    assert [c.id for c in only_p1.data] == [p1.latest_charge]
    charge = client.v1.charges.retrieve(p2.latest_charge)
    assert charge.to_dict() == listing.data[0].to_dict()
