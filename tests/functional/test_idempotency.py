"""Idempotency-Key with Stripe's semantics (SECURITY-REQUIREMENTS P1)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from starlette.testclient import TestClient
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import assert_ledger_ok

from bastionpay import bootstrap
from bastionpay.db.uow import unit_of_work
from bastionpay.idempotency.models import IdempotencyRecord
from bastionpay.jobs.worker import run_once
from bastionpay.kernel.clock import FrozenClock
from bastionpay.payments.interfaces import AuthorizationRequest, AuthorizationResult
from bastionpay.payments.models import PaymentIntent
from bastionpay.payments.sandbox import SandboxConnector
from bastionpay.runtime import Runtime

BODY = {"amount": "1500", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"}


def _intent_count(runtime: Runtime, merchant_id: str) -> int:
    with unit_of_work(runtime.db, write=False) as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(PaymentIntent)
                .where(PaymentIntent.merchant_id == merchant_id)
            )
            or 0
        )


def test_replay_returns_the_first_response_byte_for_byte(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    first = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "k1"})
    second = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "k1"})
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert _intent_count(runtime, merchant["id"]) == 1


def test_same_key_other_parameters_is_an_idempotency_error(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "k2"})
    other = api.post(
        "/v1/payment_intents", data={**BODY, "amount": "1501"}, headers={"Idempotency-Key": "k2"}
    )
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"
    other_path = api.post("/v1/customers", data={}, headers={"Idempotency-Key": "k2"})
    assert other_path.json()["error"]["type"] == "idempotency_error"
    assert _intent_count(runtime, merchant["id"]) == 1


def test_a_card_number_sent_as_the_key_is_stored_only_as_a_keyed_hash(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    """C5: the key is the client's free text; a PAN in it must not reach the api's database."""
    pan_key = "4242424242424242"
    first = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": pan_key})
    again = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": pan_key})
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    with unit_of_work(runtime.db, write=False) as session:
        stored = session.scalars(
            select(IdempotencyRecord.key).where(IdempotencyRecord.merchant_id == merchant["id"])
        ).all()
    assert stored == [runtime.idempotency_keys.hexdigest(pan_key)]
    assert all(pan_key not in key for key in stored)


def test_declines_are_replayed_too(api: TestClient) -> None:
    body = {**BODY, "payment_method": "pm_card_chargeDeclined"}
    first = api.post("/v1/payment_intents", data=body, headers={"Idempotency-Key": "k3"})
    second = api.post("/v1/payment_intents", data=body, headers={"Idempotency-Key": "k3"})
    assert first.status_code == second.status_code == 402
    assert first.content == second.content


def test_validation_errors_are_not_stored(api: TestClient) -> None:
    bad = api.post(
        "/v1/payment_intents", data={"currency": "usd"}, headers={"Idempotency-Key": "k4"}
    )
    assert bad.json()["error"]["code"] == "parameter_missing"
    good = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "k4"})
    assert good.status_code == 200


def test_keys_are_scoped_per_merchant(runtime: Runtime, api: TestClient) -> None:
    other = bootstrap.create_merchant_with_keys(runtime, "other")
    mine = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "shared"})
    with api_client(runtime, other["secret_key"]) as other_api:
        theirs = other_api.post(
            "/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "shared"}
        )
    assert theirs.status_code == 200
    assert theirs.json()["id"] != mine.json()["id"]


def test_key_longer_than_255_characters_is_refused(api: TestClient) -> None:
    response = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"
    ok = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "x" * 255})
    assert ok.status_code == 200


class SlowConnector(SandboxConnector):
    """Holds authorizations open until released, so requests truly overlap."""

    def __init__(self, *, first_only: bool = False) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.first_only = first_only
        self.calls = 0

    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult:
        self.calls += 1
        if self.calls == 1 or not self.first_only:
            self.entered.set()
            self.release.wait(timeout=10)
        return super().authorize(request)


def test_concurrent_requests_with_one_key_have_exactly_one_effect(
    fresh_db_url: str, tmp_path: Path
) -> None:
    connector = SlowConnector()
    runtime = make_runtime(fresh_db_url, tmp_path, connector=connector)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    results: list[tuple[int, str, bool]] = []
    lock = threading.Lock()

    def attempt() -> None:
        with api_client(runtime, merchant["secret_key"]) as api:
            response = api.post(
                "/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "race"}
            )
        with lock:
            replayed = response.headers.get("idempotent-replayed") == "true"
            results.append((response.status_code, response.text, replayed))

    first = threading.Thread(target=attempt)
    first.start()
    assert connector.entered.wait(timeout=10)
    others = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in others:
        thread.start()
    for thread in others:
        thread.join(timeout=30)
    connector.release.set()
    first.join(timeout=30)
    assert len(results) == 7
    originals = [text for status, text, replayed in results if status == 200 and not replayed]
    assert len(originals) == 1, results
    for status, text, replayed in results:
        if status == 409:
            assert '"idempotency_key_in_use"' in text
        elif replayed:
            # SQLite serializes writers, so a waiting request sees the finished result instead.
            assert text == originals[0]
        else:
            assert text == originals[0]
    if runtime.db.is_sqlite is False:
        assert any(status == 409 for status, _, _ in results), results
    assert _intent_count(runtime, merchant["id"]) == 1
    with api_client(runtime, merchant["secret_key"]) as api:
        replay = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "race"})
    assert replay.headers["idempotent-replayed"] == "true"
    assert _intent_count(runtime, merchant["id"]) == 1
    assert_ledger_ok(runtime)
    runtime.db.dispose()


def test_keys_are_kept_24_hours_then_pruned(fresh_db_url: str, tmp_path: Path) -> None:
    clock = FrozenClock(1_800_000_000)
    runtime = make_runtime(fresh_db_url, tmp_path, clock=clock)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "old"})
        clock.advance(24 * 3600 - 1)
        assert run_once(runtime)["idempotency_keys_pruned"] == 0
        replay = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "old"})
        assert replay.headers.get("idempotent-replayed") == "true"
        clock.advance(2)
        assert run_once(runtime)["idempotency_keys_pruned"] == 1
        fresh = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "old"})
        assert "idempotent-replayed" not in fresh.headers
    assert _intent_count(runtime, merchant["id"]) == 2
    runtime.db.dispose()


def test_a_key_taken_over_after_the_lock_timeout_still_has_one_effect(
    pg_db_url: str, tmp_path: Path
) -> None:
    """Security review H3: a request that overruns the lock timeout must not commit its effect.

    PostgreSQL only: SQLite in one process serializes writers, so the takeover cannot happen there.
    """
    clock = FrozenClock(1_800_000_000)
    connector = SlowConnector(first_only=True)  # the retry reaches a healthy processor
    runtime = make_runtime(pg_db_url, tmp_path, clock=clock, connector=connector, api_concurrency=4)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    first: dict[str, Any] = {}

    def slow_first() -> None:
        with api_client(runtime, merchant["secret_key"]) as api:
            response = api.post(
                "/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "overrun"}
            )
            first["status"], first["body"] = response.status_code, response.json()

    thread = threading.Thread(target=slow_first)
    thread.start()
    assert connector.entered.wait(timeout=10)
    clock.advance(runtime.settings.idempotency_lock_timeout_seconds + 1)
    with api_client(runtime, merchant["secret_key"]) as api:
        second = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "overrun"})
    assert second.status_code == 200, second.text
    connector.release.set()
    thread.join(timeout=30)
    assert first["status"] == 409
    assert first["body"]["error"]["code"] == "idempotency_key_in_use"
    assert _intent_count(runtime, merchant["id"]) == 1
    with api_client(runtime, merchant["secret_key"]) as api:
        replay = api.post("/v1/payment_intents", data=BODY, headers={"Idempotency-Key": "overrun"})
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == second.json()["id"]
    assert_ledger_ok(runtime)
    runtime.db.dispose()
