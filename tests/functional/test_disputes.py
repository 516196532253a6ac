"""Disputes (chargebacks) through the ASGI app: Stripe's dispute test cards, the merchant API,
the ledger (P2), labels for retraining (issue 7), the audit log (L1) and isolation (I5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import assert_ledger_ok, operator_session, pay

from bastionpay import bootstrap
from bastionpay.audit.models import AuditEntry, AuditStaged
from bastionpay.db.uow import unit_of_work
from bastionpay.disputes import service as disputes
from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.errors import InvalidRequestError
from bastionpay.ledger import service as ledger
from bastionpay.merchants import service as merchants
from bastionpay.risk.models import RiskLabel
from bastionpay.runtime import Runtime

FEE = 1500  # Settings.dispute_fee's default, Stripe's $15.00
WEEK = 7 * 24 * 3600


def _dispute_for(api: TestClient, intent: dict[str, Any]) -> dict[str, Any]:
    listed = api.get("/v1/disputes", params={"payment_intent": intent["id"]}).json()
    assert len(listed["data"]) == 1, listed
    found: dict[str, Any] = listed["data"][0]
    return found


def _paid(api: TestClient, pm: str, amount: int = 5000, **extra: Any) -> dict[str, Any]:
    response = pay(api, amount, pm=pm, **extra)
    assert response.status_code == 200, response.text
    intent: dict[str, Any] = response.json()
    return intent


def _labels(runtime: Runtime, intent_id: str) -> list[tuple[str, str]]:
    with unit_of_work(runtime.db, write=False) as session:
        rows = session.execute(
            select(RiskLabel.label, RiskLabel.source)
            .where(RiskLabel.payment_intent_id == intent_id)
            .order_by(RiskLabel.pk)
        ).all()
    return [(label, source) for label, source in rows]


def _audited(runtime: Runtime, dispute_id: str) -> list[tuple[str, str, str]]:
    """(action, actor, outcome) of the dispute's audit events, staged or already sealed."""
    with unit_of_work(runtime.db, write=False) as session:
        found = []
        for model in (AuditStaged, AuditEntry):
            found += session.execute(
                select(model.action, model.actor_id, model.outcome).where(
                    model.target_id == dispute_id
                )
            ).all()
    return sorted((a, b, c) for a, b, c in found)


def _balance(runtime: Runtime, merchant_id: str, code: str) -> int:
    with unit_of_work(runtime.db, write=False) as session:
        return ledger.account_balance(session, merchant_id, False, "usd", code)


def test_the_dispute_test_card_opens_a_chargeback_on_capture(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    intent = _paid(api, "pm_card_createDispute")
    assert intent["status"] == "succeeded"
    dispute = _dispute_for(api, intent)
    assert dispute["id"].startswith("dp_") and len(dispute["id"]) == 27
    assert dispute["object"] == "dispute"
    assert (dispute["amount"], dispute["currency"]) == (5000, "usd")
    assert (dispute["charge"], dispute["payment_intent"]) == (intent["latest_charge"], intent["id"])
    assert (dispute["reason"], dispute["status"]) == ("fraudulent", "needs_response")
    assert dispute["is_charge_refundable"] is False
    assert dispute["livemode"] is False
    assert dispute["evidence_details"] == {
        "due_by": dispute["created"] + WEEK,
        "has_evidence": False,
        "past_due": False,
        "submission_count": 0,
        "enhanced_eligibility": {},
    }
    assert dispute["evidence"]["uncategorized_text"] is None
    assert dispute["evidence"]["receipt"] is None  # file fields exist, always null
    charge = api.get(f"/v1/charges/{intent['latest_charge']}").json()
    assert charge["disputed"] is True
    assert api.get(f"/v1/disputes/{dispute['id']}").json() == dispute

    # Ledger (P2): amount and fee withdrawn at once, as an `adjustment` in category `dispute`.
    (txn,) = dispute["balance_transactions"]
    assert (txn["type"], txn["reporting_category"], txn["source"]) == (
        "adjustment",
        "dispute",
        dispute["id"],
    )
    assert (txn["amount"], txn["fee"], txn["net"]) == (-5000, FEE, -5000 - FEE)
    assert txn["status"] == "available"
    charge_txn = api.get(f"/v1/balance_transactions/{charge['balance_transaction']}").json()
    assert _balance(runtime, merchant["id"], ledger.MERCHANT_BALANCE) == -(
        charge_txn["net"] - 5000 - FEE
    )
    assert _balance(runtime, merchant["id"], ledger.PROCESSOR_RECEIVABLE) == 0
    adjustments = api.get("/v1/balance_transactions", params={"type": "adjustment"}).json()
    assert [t["id"] for t in adjustments["data"]] == [txn["id"]]
    assert_ledger_ok(runtime)

    # Issue 7: a fraudulent chargeback is a fraud label, written with it; and it is audited (L1).
    assert _labels(runtime, intent["id"]) == [("fraud", "dispute")]
    assert _audited(runtime, dispute["id"]) == [
        ("disputes.dispute.create", "card_network", "success")
    ]


def test_product_not_received_card_opens_a_chargeback_without_a_fraud_label(
    api: TestClient, runtime: Runtime
) -> None:
    intent = _paid(api, "pm_card_createDisputeProductNotReceived", 3000)
    dispute = _dispute_for(api, intent)
    assert (dispute["reason"], dispute["status"]) == ("product_not_received", "needs_response")
    assert [t["net"] for t in dispute["balance_transactions"]] == [-3000 - FEE]
    assert _labels(runtime, intent["id"]) == []
    assert_ledger_ok(runtime)


def test_an_inquiry_moves_no_money_and_a_refund_closes_it(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    before = _balance(runtime, merchant["id"], ledger.MERCHANT_BALANCE)
    intent = _paid(api, "pm_card_createDisputeInquiry", 2500)
    dispute = _dispute_for(api, intent)
    assert dispute["status"] == "warning_needs_response"
    assert dispute["is_charge_refundable"] is True
    assert dispute["balance_transactions"] == []
    assert _labels(runtime, intent["id"]) == []  # a question, not yet a fraud claim
    charge = api.get(f"/v1/charges/{intent['latest_charge']}").json()
    assert charge["disputed"] is True
    after_charge = _balance(runtime, merchant["id"], ledger.MERCHANT_BALANCE)
    charge_txn = api.get(f"/v1/balance_transactions/{charge['balance_transaction']}").json()
    assert after_charge - before == -charge_txn["net"]  # the charge only: nothing withdrawn

    refund = api.post("/v1/refunds", data={"payment_intent": intent["id"]})
    assert refund.status_code == 200, refund.text
    assert api.get(f"/v1/disputes/{dispute['id']}").json()["status"] == "warning_closed"
    assert [action for action, _, _ in _audited(runtime, dispute["id"])] == [
        "disputes.dispute.close",
        "disputes.dispute.create",
    ]
    assert_ledger_ok(runtime)


def test_manual_capture_opens_the_dispute_when_captured(api: TestClient, runtime: Runtime) -> None:
    intent = _paid(api, "pm_card_createDispute", 4000, capture_method="manual")
    assert intent["status"] == "requires_capture"
    assert api.get("/v1/disputes", params={"payment_intent": intent["id"]}).json()["data"] == []
    captured = api.post(f"/v1/payment_intents/{intent['id']}/capture")
    assert captured.status_code == 200, captured.text
    assert _dispute_for(api, intent)["status"] == "needs_response"
    assert_ledger_ok(runtime)


def test_evidence_staged_then_submitted_wins_and_reverses_the_withdrawal(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    intent = _paid(api, "pm_card_createDispute")
    dispute = _dispute_for(api, intent)
    withdrawn = _balance(runtime, merchant["id"], ledger.MERCHANT_BALANCE)

    staged = api.post(
        f"/v1/disputes/{dispute['id']}",
        data={
            "evidence[customer_name]": "Jenny Rosen",
            "evidence[product_description]": "A pair of shoes",
            "submit": "false",
            "metadata[case]": "42",
        },
    )
    assert staged.status_code == 200, staged.text
    body = staged.json()
    assert body["status"] == "needs_response"
    assert body["evidence"]["customer_name"] == "Jenny Rosen"
    assert body["evidence_details"]["has_evidence"] is True
    assert body["evidence_details"]["submission_count"] == 0
    assert body["metadata"] == {"case": "42"}

    # An empty value clears a field, like Stripe; submitting the winning magic value decides.
    won = api.post(
        f"/v1/disputes/{dispute['id']}",
        data={
            "evidence[customer_name]": "",
            "evidence[uncategorized_text]": "winning_evidence",
            "submit": "true",
        },
    ).json()
    assert won["status"] == "won"
    assert won["evidence"]["customer_name"] is None
    assert won["evidence"]["product_description"] == "A pair of shoes"
    assert won["evidence_details"]["submission_count"] == 1
    withdrawal, reversal = won["balance_transactions"]
    assert withdrawal["reporting_category"] == "dispute"
    assert (reversal["type"], reversal["reporting_category"]) == ("adjustment", "dispute_reversal")
    assert (reversal["amount"], reversal["fee"], reversal["net"]) == (5000, -FEE, 5000 + FEE)
    assert _balance(runtime, merchant["id"], ledger.MERCHANT_BALANCE) == withdrawn - 5000 - FEE
    assert_ledger_ok(runtime)
    # The network upheld the payment: the latest label says legit.
    assert _labels(runtime, intent["id"]) == [("fraud", "dispute"), ("legit", "dispute")]
    events = _audited(runtime, dispute["id"])
    assert [action for action, _, _ in events] == [
        "disputes.dispute.create",
        "disputes.dispute.resolve",
        "disputes.dispute.update",
        "disputes.dispute.update",
    ]
    assert {outcome for _, _, outcome in events} == {"success"}
    network = {actor for action, actor, _ in events if action != "disputes.dispute.update"}
    merchant_key = {actor for action, actor, _ in events if action == "disputes.dispute.update"}
    assert network == {"card_network"} and len(merchant_key) == 1 and merchant_key != network

    # Decided: evidence is refused, metadata may still change.
    late = api.post(f"/v1/disputes/{dispute['id']}", data={"evidence[customer_name]": "x"})
    assert late.status_code == 400
    assert late.json()["error"]["code"] == "dispute_unexpected_state"
    note = api.post(f"/v1/disputes/{dispute['id']}", data={"metadata[note]": "done"})
    assert note.status_code == 200 and note.json()["metadata"] == {"case": "42", "note": "done"}


def test_losing_evidence_loses_and_keeps_the_funds_withdrawn(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    intent = _paid(api, "pm_card_createDisputeProductNotReceived")
    dispute = _dispute_for(api, intent)
    withdrawn = _balance(runtime, merchant["id"], ledger.MERCHANT_BALANCE)
    lost = api.post(
        f"/v1/disputes/{dispute['id']}", data={"evidence[uncategorized_text]": "losing_evidence"}
    ).json()
    assert lost["status"] == "lost"  # evidence without `submit` is submitted (Stripe's default)
    assert len(lost["balance_transactions"]) == 1
    assert _balance(runtime, merchant["id"], ledger.MERCHANT_BALANCE) == withdrawn
    assert _labels(runtime, intent["id"]) == []  # a lost non-fraud dispute says nothing of fraud
    assert_ledger_ok(runtime)


def test_plain_evidence_goes_under_review_and_close_accepts(
    api: TestClient, runtime: Runtime
) -> None:
    intent = _paid(api, "pm_card_createDispute")
    dispute = _dispute_for(api, intent)
    reviewed = api.post(
        f"/v1/disputes/{dispute['id']}",
        data={"evidence[shipping_tracking_number]": "1Z999AA10123456784"},
    ).json()
    assert reviewed["status"] == "under_review"
    refused = api.post(f"/v1/disputes/{dispute['id']}/close")
    assert refused.status_code == 400  # under review: the network decides now

    other = _dispute_for(api, _paid(api, "pm_card_createDispute"))
    closed = api.post(f"/v1/disputes/{other['id']}/close")
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "lost"
    again = api.post(f"/v1/disputes/{other['id']}/close")
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "dispute_unexpected_state"
    inquiry = _dispute_for(api, _paid(api, "pm_card_createDisputeInquiry"))
    assert api.post(f"/v1/disputes/{inquiry['id']}/close").json()["status"] == "warning_closed"
    assert_ledger_ok(runtime)


def test_evidence_is_bounded_text_and_unknown_parameters_are_refused(api: TestClient) -> None:
    dispute = _dispute_for(api, _paid(api, "pm_card_createDispute"))
    url = f"/v1/disputes/{dispute['id']}"
    cases = [
        (
            {"evidence[uncategorized_text]": "x" * 5001},
            "parameter_invalid_string",
            "evidence[uncategorized_text]",
        ),
        ({"evidence[receipt]": "file_123"}, "parameter_unknown", "evidence[receipt]"),
        ({"evidence[nonsense]": "x"}, "parameter_unknown", "evidence[nonsense]"),
        ({"reason": "general"}, "parameter_unknown", "reason"),
        ({"submit": "maybe"}, "parameter_invalid_boolean", "submit"),
        # C5: a card number typed into evidence never reaches the api database.
        (
            {"evidence[customer_name]": "card 4242 4242 4242 4242"},
            "parameter_invalid_string",
            "evidence[customer_name]",
        ),
        (
            {"evidence[customer_name]": "Jenny\x00Rosen"},
            "parameter_invalid_string",
            "evidence[customer_name]",
        ),
    ]
    for data, code, param in cases:
        answer = api.post(url, data=data)
        assert answer.status_code == 400, (data, answer.text)
        error = answer.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            code,
            param,
        ), data
    ok = api.post(url, data={"evidence[uncategorized_text]": "y" * 5000, "submit": "false"})
    assert ok.status_code == 200
    assert api.get(url).json()["evidence"]["uncategorized_text"] == "y" * 5000
    assert api.get("/v1/disputes", params={"status": "won"}).status_code == 400


def test_list_paginates_and_filters(api: TestClient) -> None:
    intents = [_paid(api, "pm_card_createDispute", 1000 + i) for i in range(3)]
    ids = [_dispute_for(api, pi)["id"] for pi in intents]
    first = api.get("/v1/disputes", params={"limit": 2}).json()
    assert first["object"] == "list" and first["url"] == "/v1/disputes"
    assert [d["id"] for d in first["data"]] == [ids[2], ids[1]]
    assert first["has_more"] is True
    rest = api.get("/v1/disputes", params={"limit": 2, "starting_after": ids[1]}).json()
    assert [d["id"] for d in rest["data"]] == [ids[0]] and rest["has_more"] is False
    back = api.get("/v1/disputes", params={"ending_before": ids[0]}).json()
    assert [d["id"] for d in back["data"]] == [ids[2], ids[1]]
    by_charge = api.get("/v1/disputes", params={"charge": intents[1]["latest_charge"]}).json()
    assert [d["id"] for d in by_charge["data"]] == [ids[1]]
    assert api.get("/v1/disputes", params={"charge": "ch_nothing"}).json()["data"] == []
    expanded = api.get(f"/v1/disputes/{ids[0]}", params={"expand[]": "charge"}).json()
    assert expanded["charge"]["id"] == intents[0]["latest_charge"]
    assert expanded["charge"]["disputed"] is True
    listed = api.get("/v1/disputes", params={"expand[]": "data.payment_intent", "limit": 1})
    assert listed.json()["data"][0]["payment_intent"]["id"] == intents[2]["id"]
    refused = api.get(f"/v1/disputes/{ids[0]}", params={"expand[]": "evidence"})
    assert refused.status_code == 400


def test_another_merchants_dispute_is_404(runtime: Runtime, api: TestClient) -> None:
    dispute = _dispute_for(api, _paid(api, "pm_card_createDispute"))
    other = bootstrap.create_merchant_with_keys(runtime, "Other merchant")
    with api_client(runtime, other["secret_key"]) as intruder:
        for method, path in (
            ("GET", f"/v1/disputes/{dispute['id']}"),
            ("POST", f"/v1/disputes/{dispute['id']}"),
            ("POST", f"/v1/disputes/{dispute['id']}/close"),
        ):
            answer = intruder.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "resource_missing"
        assert intruder.get("/v1/disputes").json()["data"] == []
        cursor = intruder.get("/v1/disputes", params={"starting_after": dispute["id"]})
        assert cursor.status_code == 404
    assert api.get(f"/v1/disputes/{dispute['id']}").json()["status"] == "needs_response"


def test_permissions_decide_who_may_answer(
    runtime: Runtime, api: TestClient, merchant: dict[str, Any]
) -> None:
    dispute = _dispute_for(api, _paid(api, "pm_card_createDispute"))
    url = f"/v1/disputes/{dispute['id']}"
    with api_client(runtime, None) as client:
        developer = operator_session(runtime, "developer", merchant["id"])
        assert client.get(url, headers=developer.headers()).status_code == 200
        denied = client.post(url, data={"submit": "true"}, headers=developer.headers())
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "insufficient_permissions"
        analyst = operator_session(runtime, "analyst", merchant["id"])
        staged = client.post(
            url, data={"evidence[customer_name]": "J", "submit": "false"}, headers=analyst.headers()
        )
        assert staged.status_code == 200, staged.text
    with unit_of_work(runtime.db, write=True) as session:
        reader = merchants.issue_key(
            session,
            runtime.api_keys,
            merchant_id=merchant["id"],
            kind="restricted",
            livemode=False,
            now=runtime.clock.now(),
            permissions=frozenset({"disputes:read"}),
        ).plaintext
    with api_client(runtime, reader) as restricted:
        assert restricted.get(url).status_code == 200
        assert restricted.post(f"{url}/close").status_code == 403
        # Expanding the charge reads a payment: it needs payments:read too (I5).
        assert restricted.get(url, params={"expand[]": "charge"}).status_code == 403
    assert api.get(url).json()["status"] == "needs_response"


def test_a_charged_back_charge_cannot_be_refunded(api: TestClient, runtime: Runtime) -> None:
    intent = _paid(api, "pm_card_createDispute")
    for data in ({"payment_intent": intent["id"]}, {"charge": intent["latest_charge"]}):
        refused = api.post("/v1/refunds", data=data)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "charge_disputed"
    assert api.get("/v1/refunds", params={"payment_intent": intent["id"]}).json()["data"] == []
    assert_ledger_ok(runtime)


def test_a_refunded_charge_cannot_be_disputed(
    api: TestClient, runtime: Runtime, merchant: dict[str, Any]
) -> None:
    ctx = runtime.payment_context(merchant["id"], False, runtime.clock.now())
    refunded = _paid(api, "pm_card_visa", 2000)
    api.post("/v1/refunds", data={"payment_intent": refunded["id"]})
    partly = _paid(api, "pm_card_visa", 2000)
    api.post("/v1/refunds", data={"payment_intent": partly["id"], "amount": "500"})
    for charge, amount, code in (
        (refunded["latest_charge"], None, "charge_already_refunded"),
        (partly["latest_charge"], 1501, "amount_too_large"),
        (partly["latest_charge"], 0, "parameter_invalid_integer"),
    ):
        # The error leaves the unit of work (rolled back) before pytest catches it.
        with (
            pytest.raises(InvalidRequestError) as refused,
            unit_of_work(runtime.db, write=True) as session,
        ):
            disputes.open_dispute(session, ctx, charge, reason="fraudulent", amount=amount)
        assert refused.value.code == code
    with unit_of_work(runtime.db, write=True) as session:
        dispute = disputes.open_dispute(session, ctx, partly["latest_charge"], reason="duplicate")
        assert dispute.amount == 1500  # what is left to take back
    with (
        pytest.raises(InvalidRequestError) as twice,
        unit_of_work(runtime.db, write=True) as session,
    ):
        disputes.open_dispute(session, ctx, partly["latest_charge"], reason="duplicate")
    assert twice.value.code == "charge_disputed"
    assert_ledger_ok(runtime)


def test_evidence_after_the_deadline_is_refused(fresh_db_url: str, tmp_path: Path) -> None:
    clock = FrozenClock(1_800_000_000)
    runtime = make_runtime(fresh_db_url, tmp_path, clock=clock)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        dispute = _dispute_for(api, _paid(api, "pm_card_createDispute"))
        url = f"/v1/disputes/{dispute['id']}"
        clock.advance(WEEK)
        assert api.get(url).json()["evidence_details"]["past_due"] is False  # due_by itself
        clock.advance(1)
        late = api.get(url).json()
        assert late["evidence_details"]["past_due"] is True
        refused = api.post(url, data={"evidence[customer_name]": "J"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "dispute_past_due"
        assert api.post(url, data={"metadata[k]": "v"}).status_code == 200
        # The merchant may still accept it; the network may still decide it.
        assert api.post(f"{url}/close").json()["status"] == "lost"
        assert api.get(url).json()["evidence_details"]["past_due"] is False
    assert_ledger_ok(runtime)
    runtime.db.dispose()
