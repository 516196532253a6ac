"""Payments through the ASGI app, with the ledger re-verified after each flow (P2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import assert_ledger_ok, pay

from bastionpay import bootstrap
from bastionpay.db.uow import unit_of_work
from bastionpay.jobs.worker import run_once
from bastionpay.kernel.clock import FrozenClock
from bastionpay.ledger import service as ledger
from bastionpay.ledger.models import LedgerAccount, LedgerTransaction
from bastionpay.runtime import Runtime


def _balance(runtime: Runtime, merchant: dict[str, Any], code: str) -> int:
    with unit_of_work(runtime.db, write=False) as session:
        return ledger.account_balance(session, merchant["id"], False, "usd", code)


def test_automatic_capture_posts_authorization_and_capture(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    response = pay(api, 2000)
    assert response.status_code == 200, response.text
    intent = response.json()
    assert intent["status"] == "succeeded"
    assert intent["amount_received"] == 2000
    charge = api.get(f"/v1/charges/{intent['latest_charge']}").json()
    txn = api.get(f"/v1/balance_transactions/{charge['balance_transaction']}").json()
    assert (txn["amount"], txn["fee"], txn["net"]) == (2000, 88, 1912)
    assert _balance(runtime, merchant, ledger.MERCHANT_BALANCE) == -1912
    assert _balance(runtime, merchant, ledger.FEE_REVENUE) == -88
    assert _balance(runtime, merchant, ledger.PROCESSOR_RECEIVABLE) == 2000
    assert _balance(runtime, merchant, ledger.AUTHORIZATION_HOLDS) == 0
    with unit_of_work(runtime.db, write=False) as session:
        kinds = session.scalars(
            select(LedgerTransaction.kind)
            .where(LedgerTransaction.source_id == intent["latest_charge"])
            .order_by(LedgerTransaction.pk)
        ).all()
    assert list(kinds) == ["authorization", "capture"]
    assert_ledger_ok(runtime)


def test_manual_partial_capture_and_partial_refunds(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    intent = pay(api, 5000, capture_method="manual").json()
    assert intent["status"] == "requires_capture"
    assert intent["amount_capturable"] == 5000
    assert _balance(runtime, merchant, ledger.AUTHORIZATION_HOLDS) == 5000
    assert_ledger_ok(runtime)

    captured = api.post(
        f"/v1/payment_intents/{intent['id']}/capture", data={"amount_to_capture": "3000"}
    ).json()
    assert (captured["status"], captured["amount_received"], captured["amount_capturable"]) == (
        "succeeded",
        3000,
        0,
    )
    assert _balance(runtime, merchant, ledger.AUTHORIZATION_HOLDS) == 0
    for amount in (1000, 1500):
        refund = api.post("/v1/refunds", data={"payment_intent": intent["id"], "amount": amount})
        assert refund.status_code == 200, refund.text
    over = api.post("/v1/refunds", data={"payment_intent": intent["id"], "amount": "501"})
    assert over.status_code == 400
    assert over.json()["error"]["param"] == "amount"
    rest = api.post("/v1/refunds", data={"payment_intent": intent["id"]}).json()
    assert rest["amount"] == 500
    again = api.post("/v1/refunds", data={"payment_intent": intent["id"]})
    assert again.json()["error"]["code"] == "charge_already_refunded"
    charge = api.get(f"/v1/charges/{captured['latest_charge']}").json()
    assert (charge["amount_captured"], charge["amount_refunded"], charge["refunded"]) == (
        3000,
        3000,
        True,
    )
    fee = 3000 * 29 // 1000 + 30  # 87 + 30
    assert _balance(runtime, merchant, ledger.MERCHANT_BALANCE) == -(3000 - fee) + 3000
    assert_ledger_ok(runtime)


def test_cancel_after_authorization_releases_the_hold(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    intent = pay(api, 700, capture_method="manual").json()
    canceled = api.post(
        f"/v1/payment_intents/{intent['id']}/cancel",
        data={"cancellation_reason": "requested_by_customer"},
    ).json()
    assert canceled["status"] == "canceled"
    assert canceled["cancellation_reason"] == "requested_by_customer"
    assert _balance(runtime, merchant, ledger.AUTHORIZATION_HOLDS) == 0
    capture = api.post(f"/v1/payment_intents/{intent['id']}/capture")
    assert capture.status_code == 400
    assert capture.json()["error"]["code"] == "payment_intent_unexpected_state"
    assert_ledger_ok(runtime)


def test_decline_changes_no_money_and_returns_402(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    response = pay(api, 1000, pm="pm_card_chargeDeclinedInsufficientFunds")
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        "card_declined",
        "insufficient_funds",
    )
    assert error["payment_intent"]["status"] == "requires_payment_method"
    assert error["payment_intent"]["last_payment_error"]["decline_code"] == "insufficient_funds"
    charge = api.get(f"/v1/charges/{error['charge']}").json()
    assert (charge["status"], charge["failure_code"]) == ("failed", "card_declined")
    assert _balance(runtime, merchant, ledger.MERCHANT_BALANCE) == 0
    retry = api.post(
        f"/v1/payment_intents/{error['payment_intent']['id']}/confirm",
        data={"payment_method": "pm_card_visa"},
    )
    assert retry.json()["status"] == "succeeded"
    assert_ledger_ok(runtime)


def test_balance_is_pending_until_available_on(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    pay(api, 1000)
    pay(api, 3000)
    balance = api.get("/v1/balance").json()
    expected = (1000 - 59) + (3000 - 117)  # fees 29+30 and 87+30
    assert balance["pending"] == [
        {"amount": expected, "currency": "usd", "source_types": {"card": expected}}
    ]
    assert balance["available"][0]["amount"] == 0


def test_checkpoints_fold_old_entries_and_leave_balances_unchanged(
    fresh_db_url: str, tmp_path: Path
) -> None:
    clock = FrozenClock(1_800_000_000)
    runtime = make_runtime(fresh_db_url, tmp_path, clock=clock)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        pay(api, 2000)
        clock.advance(301)  # past the 300 s horizon
        pay(api, 1000)  # too recent to be folded
        before = _balance(runtime, merchant, ledger.MERCHANT_BALANCE)
        summary = run_once(runtime)
        assert summary["ledger_accounts_checkpointed"] == 5  # every account the payment touched
        with unit_of_work(runtime.db, write=False) as session:
            checkpoint = session.execute(
                select(LedgerAccount.checkpoint_balance, LedgerAccount.checkpoint_entry_pk).where(
                    LedgerAccount.merchant_id == merchant["id"],
                    LedgerAccount.code == ledger.MERCHANT_BALANCE,
                )
            ).one()
        assert checkpoint[0] == -(2000 - 88)  # only the first payment is folded
        assert (
            _balance(runtime, merchant, ledger.MERCHANT_BALANCE)
            == before
            == -((2000 - 88) + (1000 - 59))
        )
        assert run_once(runtime)["ledger_accounts_checkpointed"] == 0  # idempotent
        clock.advance(301)
        assert run_once(runtime)["ledger_accounts_checkpointed"] == 5
        assert _balance(runtime, merchant, ledger.MERCHANT_BALANCE) == before
    assert_ledger_ok(runtime)
    runtime.db.dispose()
