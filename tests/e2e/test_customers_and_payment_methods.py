"""Customers (CRUD, list, email filter, deletion) and PaymentMethods (retrieve, attach, detach,
list) through the Stripe SDK."""

from __future__ import annotations

import re

import pytest
import stripe

pytestmark = pytest.mark.e2e


def test_customer_create_and_retrieve(client: stripe.StripeClient):
    cus = client.v1.customers.create(
        {
            "email": "jenny.rosen@example.com",
            "name": "Jenny Rosen",
            "description": "VIP",
            "phone": "+15555550123",
            "metadata": {"crm_id": "c-1"},
        }
    )
    assert re.fullmatch(r"cus_[0-9A-Za-z]{24}", cus.id)
    assert cus.object == "customer"
    assert cus.livemode is False
    assert cus.email == "jenny.rosen@example.com"
    assert cus.name == "Jenny Rosen"
    assert cus.description == "VIP"
    assert cus.phone == "+15555550123"
    assert cus.metadata.to_dict() == {"crm_id": "c-1"}
    assert isinstance(cus.created, int)
    assert client.v1.customers.retrieve(cus.id).to_dict() == cus.to_dict()


def test_customer_update(client: stripe.StripeClient):
    cus = client.v1.customers.create(
        {"email": "old@example.com", "name": "Old", "metadata": {"a": "1", "b": "2"}}
    )
    updated = client.v1.customers.update(
        cus.id, {"email": "new@example.com", "metadata": {"a": "", "c": "3"}}
    )
    assert updated.id == cus.id
    assert updated.email == "new@example.com"
    assert updated.name == "Old"
    assert updated.metadata.to_dict() == {"b": "2", "c": "3"}
    assert client.v1.customers.retrieve(cus.id).to_dict() == updated.to_dict()


def test_customer_delete(client: stripe.StripeClient):
    keep = client.v1.customers.create({"email": "keep@example.com"})
    gone = client.v1.customers.create({"email": "gone@example.com"})
    deleted = client.v1.customers.delete(gone.id)
    assert deleted.id == gone.id
    assert deleted.object == "customer"
    assert deleted.deleted is True

    # Stripe: retrieving a deleted customer returns a stub with `deleted: true`.
    stub = client.v1.customers.retrieve(gone.id)
    assert stub.id == gone.id
    assert stub.deleted is True

    listed = client.v1.customers.list()
    assert [c.id for c in listed.data] == [keep.id]


def test_deleted_customer_cannot_be_used(client: stripe.StripeClient):
    cus = client.v1.customers.create({"email": "soon-gone@example.com"})
    client.v1.customers.delete(cus.id)
    with pytest.raises(stripe.InvalidRequestError) as attach:
        client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    assert attach.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as pay_err:
        client.v1.payment_intents.create({"amount": 1000, "currency": "usd", "customer": cus.id})
    assert pay_err.value.code == "resource_missing"
    assert client.v1.payment_intents.list().data == []


def test_customer_list_newest_first_and_paginates(client: stripe.StripeClient):
    ids = [client.v1.customers.create({"name": f"c{i}"}).id for i in range(3)]
    page = client.v1.customers.list({"limit": 2})
    assert [c.id for c in page.data] == [ids[2], ids[1]]
    assert page.has_more is True
    rest = client.v1.customers.list({"limit": 2, "starting_after": ids[1]})
    assert [c.id for c in rest.data] == [ids[0]]
    assert rest.has_more is False


def test_customer_list_email_filter(client: stripe.StripeClient):
    a1 = client.v1.customers.create({"email": "shared@example.com", "name": "one"})
    client.v1.customers.create({"email": "other@example.com"})
    a2 = client.v1.customers.create({"email": "shared@example.com", "name": "two"})
    client.v1.customers.create({"name": "no email"})

    hits = client.v1.customers.list({"email": "shared@example.com"})
    assert [c.id for c in hits.data] == [a2.id, a1.id]
    assert client.v1.customers.list({"email": "nobody@example.com"}).data == []
    # Stripe documents the email filter as case-sensitive.
    assert client.v1.customers.list({"email": "SHARED@example.com"}).data == []


def test_attach_list_and_detach_payment_methods(client: stripe.StripeClient):
    cus = client.v1.customers.create({"email": "wallet@example.com"})
    visa = client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    assert re.fullmatch(r"pm_[0-9A-Za-z]{24}", visa.id)
    assert visa.customer == cus.id
    assert visa.type == "card"
    assert (visa.card.brand, visa.card.last4) == ("visa", "4242")
    assert isinstance(visa.card.exp_month, int)
    assert isinstance(visa.card.exp_year, int)
    mc = client.v1.payment_methods.attach("pm_card_mastercard", {"customer": cus.id})
    assert (mc.card.brand, mc.card.last4) == ("mastercard", "4444")

    listed = client.v1.payment_methods.list({"customer": cus.id, "type": "card"})
    assert [pm.id for pm in listed.data] == [mc.id, visa.id]
    via_customer = client.v1.customers.payment_methods.list(cus.id)
    assert [pm.id for pm in via_customer.data] == [mc.id, visa.id]

    detached = client.v1.payment_methods.detach(visa.id)
    assert detached.id == visa.id
    assert detached.customer is None
    assert client.v1.payment_methods.retrieve(visa.id).customer is None
    listed = client.v1.payment_methods.list({"customer": cus.id, "type": "card"})
    assert [pm.id for pm in listed.data] == [mc.id]
    assert [pm.id for pm in client.v1.customers.payment_methods.list(cus.id).data] == [mc.id]


def test_detach_of_unattached_payment_method_is_rejected(client: stripe.StripeClient, pay):
    pi = pay(amount=1000)
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_methods.detach(pi.payment_method)
    assert excinfo.value.http_status == 400
    assert client.v1.payment_methods.retrieve(pi.payment_method).customer is None


def test_attach_to_unknown_customer_is_resource_missing(client: stripe.StripeClient):
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_methods.attach(
            "pm_card_visa", {"customer": "cus_000000000000000000000000"}
        )
    assert excinfo.value.code == "resource_missing"


def test_pay_with_customers_saved_payment_method(client: stripe.StripeClient):
    cus = client.v1.customers.create({"email": "saved@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_amex", {"customer": cus.id})
    pi = client.v1.payment_intents.create(
        {
            "amount": 3300,
            "currency": "usd",
            "customer": cus.id,
            "payment_method": pm.id,
            "confirm": True,
        }
    )
    assert pi.status == "succeeded"
    # A saved PaymentMethod is used as is, not copied.
    assert pi.payment_method == pm.id
    assert pi.customer == cus.id
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.customer == cus.id
    assert charge.payment_method == pm.id
    assert charge.payment_method_details.card.brand == "amex"
    assert [p.id for p in client.v1.payment_intents.list({"customer": cus.id}).data] == [pi.id]


def test_list_payment_methods_of_customer_without_any(client: stripe.StripeClient):
    cus = client.v1.customers.create({"email": "empty@example.com"})
    listed = client.v1.payment_methods.list({"customer": cus.id, "type": "card"})
    assert listed.object == "list"
    assert listed.data == []
    assert listed.has_more is False
