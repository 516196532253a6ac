"""A failure at any step leaves nothing behind (P2, P3): no intent, charge, posting or key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import assert_ledger_ok, pay

from bastionpay import bootstrap
from bastionpay.api import render
from bastionpay.db.uow import unit_of_work
from bastionpay.idempotency.models import IdempotencyRecord
from bastionpay.ledger import service as ledger_service
from bastionpay.ledger.models import BalanceTransaction, LedgerEntry, LedgerTransaction
from bastionpay.payments.interfaces import (
    AuthorizationRequest,
    AuthorizationResult,
    OperationResult,
)
from bastionpay.payments.models import Charge, PaymentIntent
from bastionpay.payments.sandbox import SandboxConnector
from bastionpay.runtime import Runtime

TABLES = (PaymentIntent, Charge, LedgerTransaction, LedgerEntry, BalanceTransaction)


class ProcessorDown(Exception):
    pass


class FailingConnector(SandboxConnector):
    """Authorizes, then fails at a chosen later step, like a network partition would."""

    def __init__(self, fail_at: str) -> None:
        self.fail_at = fail_at

    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult:
        if self.fail_at == "authorize":
            raise ProcessorDown("timeout talking to the processor")
        return super().authorize(request)

    def capture(self, reference: str, amount: int, currency: str) -> OperationResult:
        if self.fail_at == "capture":
            raise ProcessorDown("timeout talking to the processor")
        if self.fail_at == "capture-refused":
            return OperationResult(succeeded=False, failure_message="capture refused")
        return super().capture(reference, amount, currency)


def _counts(runtime: Runtime) -> dict[str, int]:
    with unit_of_work(runtime.db, write=False) as session:
        counts = {
            m.__tablename__: session.scalar(select(func.count()).select_from(m)) or 0
            for m in TABLES
        }
        counts["idempotency_keys"] = (
            session.scalar(select(func.count()).select_from(IdempotencyRecord)) or 0
        )
        return counts


@pytest.mark.parametrize("fail_at", ["authorize", "capture", "capture-refused"])
def test_processor_failure_mid_payment_rolls_everything_back(
    fresh_db_url: str, tmp_path: Path, fail_at: str
) -> None:
    runtime = make_runtime(fresh_db_url, tmp_path, connector=FailingConnector(fail_at))
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    before = _counts(runtime)
    with api_client(runtime, merchant["secret_key"]) as api:
        api_response = pay(api, 2000)
        response = api.post(
            "/v1/payment_intents",
            data={
                "amount": "2000",
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "confirm": "true",
            },
            headers={"Idempotency-Key": "crash-1"},
        )
    assert api_response.status_code >= 500
    assert response.status_code >= 500
    assert response.json()["error"]["type"] == "api_error"
    assert "timeout" not in response.text  # internal detail is logged, not returned
    after = _counts(runtime)
    assert after == before, "a failed payment left rows behind"
    assert_ledger_ok(runtime)
    runtime.db.dispose()


def test_unbalanced_posting_never_commits(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = make_runtime(fresh_db_url, tmp_path)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    original = ledger_service.capture_lines

    def off_by_one(authorized: int, captured: int, fee: int) -> list[ledger_service.Line]:
        lines = original(authorized, captured, fee)
        return [*lines[:-1], ledger_service.Line(lines[-1].account, lines[-1].amount + 1)]

    monkeypatch.setattr(ledger_service, "capture_lines", off_by_one)
    before = _counts(runtime)
    with api_client(runtime, merchant["secret_key"]) as api:
        response = pay(api, 2000)
    assert response.status_code == 500
    assert _counts(runtime) == before
    monkeypatch.setattr(ledger_service, "capture_lines", original)
    assert_ledger_ok(runtime)
    runtime.db.dispose()


def test_ledger_rows_are_immutable_in_the_database(fresh_db_url: str, tmp_path: Path) -> None:
    runtime = make_runtime(fresh_db_url, tmp_path)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        assert pay(api, 2000).status_code == 200
    for statement in (
        "UPDATE ledger_entries SET amount = amount + 1",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transactions SET kind = 'x'",
        "DELETE FROM balance_transactions",
        *(["TRUNCATE ledger_entries"] if not runtime.db.is_sqlite else []),
    ):
        with pytest.raises(DBAPIError) as info, unit_of_work(runtime.db, write=True) as session:
            session.execute(text(statement))
        assert "immutable" in str(info.value)
    assert_ledger_ok(runtime)
    runtime.db.dispose()


def test_rolled_back_postings_leave_no_cached_account_behind(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Security review H1: a rollback after a posting must not poison the account-id cache.

    SQLite reuses rolled-back rowids, so a stale cached id would book merchant A's money into
    merchant B's accounts; on PostgreSQL it would fail every later posting of A.
    """
    runtime = make_runtime(fresh_db_url, tmp_path)
    first = bootstrap.create_merchant_with_keys(runtime, "a")
    second = bootstrap.create_merchant_with_keys(runtime, "b")
    original = render.payment_intent
    calls = {"n": 0}

    def fail_once(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("crash after the ledger posting, before commit")
        return original(*args, **kwargs)

    monkeypatch.setattr(render, "payment_intent", fail_once)
    with api_client(runtime, first["secret_key"]) as api_a:
        assert pay(api_a, 2000).status_code == 500  # postings written, then rolled back
        with api_client(runtime, second["secret_key"]) as api_b:
            assert pay(api_b, 3000).status_code == 200  # creates B's accounts
        assert pay(api_a, 2000).status_code == 200
    assert_ledger_ok(runtime)
    with unit_of_work(runtime.db, write=False) as session:
        assert ledger_service.account_balance(
            session, first["id"], False, "usd", ledger_service.MERCHANT_BALANCE
        ) == -(2000 - 88)
        assert ledger_service.account_balance(
            session, second["id"], False, "usd", ledger_service.MERCHANT_BALANCE
        ) == -(3000 - 117)
    runtime.db.dispose()


class RecordingConnector(SandboxConnector):
    """Remembers what was done at the processor, including compensations."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult:
        result = super().authorize(request)
        self.log.append(f"authorize {result.reference}")
        return result

    def capture(self, reference: str, amount: int, currency: str) -> OperationResult:
        self.log.append(f"capture {reference} {amount}")
        return super().capture(reference, amount, currency)

    def void(self, reference: str) -> OperationResult:
        self.log.append(f"void {reference}")
        return super().void(reference)

    def refund(self, reference: str, refund_id: str, amount: int, currency: str) -> OperationResult:
        self.log.append(f"refund {reference} {amount}")
        return super().refund(reference, refund_id, amount, currency)


def test_a_failure_after_the_processor_moved_money_is_compensated(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Security review H2: authorized and captured at the processor, then the unit of work fails:
    the capture is refunded and the authorization voided, and nothing is recorded."""
    connector = RecordingConnector()
    runtime = make_runtime(fresh_db_url, tmp_path, connector=connector)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    before = _counts(runtime)

    def crash(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("crash after the processor calls, before commit")

    monkeypatch.setattr(render, "payment_intent", crash)
    with api_client(runtime, merchant["secret_key"]) as api:
        assert pay(api, 2000).status_code == 500
    reference = connector.log[0].split()[1]
    assert connector.log == [
        f"authorize {reference}",
        f"capture {reference} 2000",
        f"refund {reference} 2000",  # newest first: the capture is undone, then the hold
        f"void {reference}",
    ]
    assert _counts(runtime) == before
    runtime.db.dispose()


def test_invalid_input_is_refused_before_the_processor_is_called(
    fresh_db_url: str, tmp_path: Path
) -> None:
    """Security review H2/M2: a NUL byte or a 51st metadata key fails validation, not the commit."""
    connector = RecordingConnector()
    runtime = make_runtime(fresh_db_url, tmp_path, connector=connector)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        nul = pay(api, 2000, description="bad\x00byte")
        assert nul.status_code == 400
        assert nul.json()["error"]["param"] == "description"
        assert api.post("/v1/customers", data={"email": "a\x1b[31m@x.test"}).status_code == 400
        assert connector.log == []
        intent = pay(
            api, 2000, capture_method="manual", **{f"metadata[k{i}]": "v" for i in range(50)}
        ).json()
        connector.log.clear()
        too_many = api.post(
            f"/v1/payment_intents/{intent['id']}/capture", data={"metadata[one_more]": "v"}
        )
        assert too_many.status_code == 400
        assert connector.log == []  # refused before the capture reached the processor
        assert api.get(f"/v1/payment_intents/{intent['id']}").json()["status"] == (
            "requires_capture"
        )
    assert_ledger_ok(runtime)
    runtime.db.dispose()
