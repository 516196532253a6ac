"""Idempotent requests (SECURITY-REQUIREMENTS P1, Stripe semantics): the first response for a key
is replayed with `Idempotent-Replayed: true`; the same key with other parameters is an
`idempotency_error`; concurrent use of one key creates exactly one object (others get 409 or the
replay); keys are at most 255 characters and scoped to the merchant."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import stripe

pytestmark = pytest.mark.e2e

PI_FORM = {
    "amount": "2000",
    "currency": "usd",
    "payment_method": "pm_card_visa",
    "confirm": "true",
    "metadata[order]": "A-1",
}


def key() -> str:
    return f"e2e-{uuid.uuid4()}"


def is_replayed(resp: httpx.Response) -> bool:
    return resp.headers.get("Idempotent-Replayed", "").lower() == "true"


def test_replay_returns_the_first_response(raw: httpx.Client, client: stripe.StripeClient):
    k = key()
    first = raw.post("/v1/payment_intents", data=PI_FORM, headers={"Idempotency-Key": k})
    assert first.status_code == 200, first.text
    assert not is_replayed(first)
    body = first.json()
    assert body["status"] == "succeeded"

    second = raw.post("/v1/payment_intents", data=PI_FORM, headers={"Idempotency-Key": k})
    assert second.status_code == 200
    assert is_replayed(second)
    assert second.json() == body

    # Only one payment happened.
    assert [p.id for p in client.v1.payment_intents.list().data] == [body["id"]]
    assert len(client.v1.charges.list().data) == 1


def test_replay_is_the_saved_response_not_a_fresh_read(
    raw: httpx.Client, client: stripe.StripeClient
):
    k = key()
    form = {"amount": "1500", "currency": "usd", "metadata[v]": "1"}
    first = raw.post("/v1/payment_intents", data=form, headers={"Idempotency-Key": k})
    assert first.status_code == 200
    pi_id = first.json()["id"]
    client.v1.payment_intents.update(pi_id, {"metadata": {"v": "2"}})

    replay = raw.post("/v1/payment_intents", data=form, headers={"Idempotency-Key": k})
    assert replay.status_code == 200
    assert is_replayed(replay)
    assert replay.json() == first.json()
    assert replay.json()["metadata"] == {"v": "1"}


def test_replay_with_sdk_idempotency_key_option(client: stripe.StripeClient):
    k = key()
    params = {"amount": 1200, "currency": "usd", "description": "sdk"}
    first = client.v1.payment_intents.create(params, {"idempotency_key": k})
    second = client.v1.payment_intents.create(params, {"idempotency_key": k})
    assert second.id == first.id
    assert second.to_dict() == first.to_dict()
    assert len(client.v1.payment_intents.list().data) == 1


def test_same_parameters_in_another_order_is_a_replay(raw: httpx.Client):
    k = key()
    body_a = b"amount=1000&currency=usd&metadata[a]=1&metadata[b]=2"
    body_b = b"metadata[b]=2&currency=usd&metadata[a]=1&amount=1000"
    headers = {"Idempotency-Key": k, "Content-Type": "application/x-www-form-urlencoded"}
    first = raw.post("/v1/payment_intents", content=body_a, headers=headers)
    second = raw.post("/v1/payment_intents", content=body_b, headers=headers)
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    assert is_replayed(second)
    assert second.json()["id"] == first.json()["id"]


def test_same_key_with_different_parameters_is_idempotency_error(
    raw: httpx.Client, client: stripe.StripeClient
):
    k = key()
    first = raw.post("/v1/payment_intents", data=PI_FORM, headers={"Idempotency-Key": k})
    assert first.status_code == 200
    changed = {**PI_FORM, "amount": "2001"}
    second = raw.post("/v1/payment_intents", data=changed, headers={"Idempotency-Key": k})
    assert second.status_code == 400
    assert second.json()["error"]["type"] == "idempotency_error"
    assert not is_replayed(second)
    assert len(client.v1.payment_intents.list().data) == 1

    # The SDK maps it to stripe.IdempotencyError.
    with pytest.raises(stripe.IdempotencyError) as excinfo:
        client.v1.payment_intents.create(
            {"amount": 2002, "currency": "usd"}, {"idempotency_key": k}
        )
    assert excinfo.value.http_status == 400
    assert len(client.v1.payment_intents.list().data) == 1


def test_declined_payment_is_replayed_not_retried(raw: httpx.Client, client: stripe.StripeClient):
    k = key()
    form = {**PI_FORM, "payment_method": "pm_card_chargeDeclined"}
    first = raw.post("/v1/payment_intents", data=form, headers={"Idempotency-Key": k})
    assert first.status_code == 402
    err = first.json()["error"]
    assert (err["type"], err["code"], err["decline_code"]) == (
        "card_error",
        "card_declined",
        "generic_decline",
    )
    second = raw.post("/v1/payment_intents", data=form, headers={"Idempotency-Key": k})
    assert second.status_code == 402
    assert is_replayed(second)
    assert second.json() == first.json()

    pi_id = err["payment_intent"]["id"]
    assert [p.id for p in client.v1.payment_intents.list().data] == [pi_id]
    assert len(client.v1.charges.list({"payment_intent": pi_id}).data) == 1


def test_validation_failures_are_not_saved(raw: httpx.Client, client: stripe.StripeClient):
    # Stripe saves a result only once the endpoint starts executing; a request that fails
    # parameter validation can be corrected and retried with the same key.
    k = key()
    bad = raw.post("/v1/payment_intents", data={"currency": "usd"}, headers={"Idempotency-Key": k})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "parameter_missing"
    good = raw.post(
        "/v1/payment_intents",
        data={"amount": "1000", "currency": "usd"},
        headers={"Idempotency-Key": k},
    )
    assert good.status_code == 200, good.text
    assert not is_replayed(good)
    assert [p.id for p in client.v1.payment_intents.list().data] == [good.json()["id"]]


def test_concurrent_requests_with_one_key_create_one_payment(
    raw: httpx.Client, client: stripe.StripeClient
):
    k = key()
    workers = 8
    barrier = threading.Barrier(workers)

    def fire(_: int) -> httpx.Response:
        barrier.wait(timeout=30)
        return raw.post("/v1/payment_intents", data=PI_FORM, headers={"Idempotency-Key": k})

    with ThreadPoolExecutor(max_workers=workers) as pool:
        responses = list(pool.map(fire, range(workers)))

    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 409}, [(r.status_code, r.text[:200]) for r in responses]
    oks = [r for r in responses if r.status_code == 200]
    assert oks, "no request succeeded"
    assert len({r.json()["id"] for r in oks}) == 1
    assert sum(not is_replayed(r) for r in oks) == 1  # exactly one request executed
    for conflict in (r for r in responses if r.status_code == 409):
        assert conflict.json()["error"]["code"] == "idempotency_key_in_use"

    pis = client.v1.payment_intents.list().data
    assert [p.id for p in pis] == [oks[0].json()["id"]]
    assert len(client.v1.charges.list().data) == 1
    assert len(client.v1.balance_transactions.list().data) == 1

    # Once the first request finished, the key replays.
    after = raw.post("/v1/payment_intents", data=PI_FORM, headers={"Idempotency-Key": k})
    assert after.status_code == 200
    assert is_replayed(after)
    assert after.json()["id"] == pis[0].id


def test_concurrent_refunds_with_one_key_refund_once(
    raw: httpx.Client, client: stripe.StripeClient, pay
):
    pi = pay(amount=3000)
    k = key()
    workers = 6
    barrier = threading.Barrier(workers)
    form = {"payment_intent": pi.id, "amount": "1000"}

    def fire(_: int) -> httpx.Response:
        barrier.wait(timeout=30)
        return raw.post("/v1/refunds", data=form, headers={"Idempotency-Key": k})

    with ThreadPoolExecutor(max_workers=workers) as pool:
        responses = list(pool.map(fire, range(workers)))
    assert {r.status_code for r in responses} <= {200, 409}
    assert any(r.status_code == 200 for r in responses)
    refunds = client.v1.refunds.list({"payment_intent": pi.id}).data
    assert len(refunds) == 1
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 1000


def test_idempotency_key_length_limit(raw: httpx.Client, client: stripe.StripeClient):
    too_long = "k" * 256
    resp = raw.post(
        "/v1/payment_intents",
        data={"amount": "1000", "currency": "usd"},
        headers={"Idempotency-Key": too_long},
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert client.v1.payment_intents.list().data == []

    longest = "k" * 255
    ok = raw.post(
        "/v1/payment_intents",
        data={"amount": "1000", "currency": "usd"},
        headers={"Idempotency-Key": longest},
    )
    assert ok.status_code == 200, ok.text


def test_keys_are_scoped_to_the_merchant(make_merchant, make_raw):
    # Another merchant using the same key must get its own payment, never a replay of ours.
    k = key()
    first_raw = make_raw(make_merchant())
    second_raw = make_raw(make_merchant())
    one = first_raw.post("/v1/payment_intents", data=PI_FORM, headers={"Idempotency-Key": k})
    two = second_raw.post("/v1/payment_intents", data=PI_FORM, headers={"Idempotency-Key": k})
    assert one.status_code == 200
    assert two.status_code == 200
    assert not is_replayed(two)
    assert one.json()["id"] != two.json()["id"]
    assert second_raw.get(f"/v1/payment_intents/{one.json()['id']}").status_code == 404


def test_requests_without_a_key_are_not_deduplicated(
    raw: httpx.Client, client: stripe.StripeClient
):
    form = {"amount": "1000", "currency": "usd"}
    a = raw.post("/v1/payment_intents", data=form)
    b = raw.post("/v1/payment_intents", data=form)
    assert a.status_code == b.status_code == 200
    assert a.json()["id"] != b.json()["id"]
    assert len(client.v1.payment_intents.list().data) == 2
