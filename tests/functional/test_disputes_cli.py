"""`bastionpay disputes open|resolve|list` (the operator plays the card network), and dispute
labels reaching `bastionpay risk train --from-platform`'s labelled table (issue 7)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import assert_ledger_ok, pay
from tests.functional.test_risk_decisions import FixedScorer, _runtime

from bastionpay import bootstrap
from bastionpay.audit.models import AuditEntry, AuditStaged
from bastionpay.cli.main import cli
from bastionpay.db.uow import unit_of_work
from bastionpay.risk import retrain
from bastionpay.risk.models import RiskLabel
from bastionpay.risk.retrain import LABEL
from bastionpay.risk.rule_store import MerchantRules
from bastionpay.risk.service import RiskEngine

FEE = 1500


def _invoke(args: list[str], db_url: str, data_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        [*args, "--data-dir", str(data_dir)],
        env={"BASTIONPAY_DATABASE_URL": db_url},
        catch_exceptions=False,
    )
    return result.exit_code, result.output


def _paid(api: Any, pm: str = "pm_card_visa", amount: int = 4000) -> dict[str, Any]:
    response = pay(api, amount, pm=pm)
    assert response.status_code == 200, response.text
    intent: dict[str, Any] = response.json()
    return intent


def test_operators_open_and_resolve_disputes_from_the_cli(
    fresh_db_url: str, tmp_path: Path
) -> None:
    runtime = make_runtime(fresh_db_url, tmp_path)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        won_pi, lost_pi, refunded_pi, inquiry_pi = (_paid(api) for _ in range(4))
        api.post("/v1/refunds", data={"payment_intent": refunded_pi["id"]})

    code, out = _invoke(
        ["disputes", "open", "--charge", won_pi["latest_charge"], "--reason", "fraudulent"],
        fresh_db_url,
        tmp_path,
    )
    assert code == 0, out
    won = json.loads(out)
    assert (won["status"], won["amount"], won["reason"]) == ("needs_response", 4000, "fraudulent")
    assert [t["net"] for t in won["balance_transactions"]] == [-4000 - FEE]

    code, out = _invoke(
        [
            "disputes",
            "open",
            "--charge",
            lost_pi["latest_charge"],
            "--reason",
            "product_unacceptable",
            "--amount",
            "1000",
        ],
        fresh_db_url,
        tmp_path,
    )
    assert code == 0, out
    lost = json.loads(out)
    assert lost["amount"] == 1000

    # Stripe's `charge_already_refunded`; an unknown charge; a second dispute on one charge.
    for charge, needle in (
        (refunded_pi["latest_charge"], "already been refunded"),
        ("ch_doesnotexist", "No such charge"),
        (won_pi["latest_charge"], "already been disputed"),
    ):
        code, out = _invoke(["disputes", "open", "--charge", charge], fresh_db_url, tmp_path)
        assert code != 0 and needle in out, out

    code, out = _invoke(
        ["disputes", "resolve", won["id"], "--outcome", "won"], fresh_db_url, tmp_path
    )
    assert code == 0, out
    decided = json.loads(out)
    assert decided["status"] == "won"
    assert [t["reporting_category"] for t in decided["balance_transactions"]] == [
        "dispute",
        "dispute_reversal",
    ]
    code, out = _invoke(
        ["disputes", "resolve", lost["id"], "--outcome", "lost"], fresh_db_url, tmp_path
    )
    assert code == 0 and json.loads(out)["status"] == "lost"
    code, out = _invoke(
        ["disputes", "resolve", lost["id"], "--outcome", "won"], fresh_db_url, tmp_path
    )
    assert code != 0 and "status of lost" in out

    # An inquiry the network escalates becomes a chargeback: funds withdrawn only then.
    code, out = _invoke(
        ["disputes", "open", "--charge", inquiry_pi["latest_charge"], "--inquiry"],
        fresh_db_url,
        tmp_path,
    )
    inquiry = json.loads(out)
    assert (inquiry["status"], inquiry["balance_transactions"]) == ("warning_needs_response", [])
    code, out = _invoke(
        ["disputes", "resolve", inquiry["id"], "--outcome", "lost"], fresh_db_url, tmp_path
    )
    escalated = json.loads(out)
    assert escalated["status"] == "needs_response"
    assert escalated["is_charge_refundable"] is False
    assert [t["amount"] for t in escalated["balance_transactions"]] == [-4000]

    code, out = _invoke(
        ["disputes", "list", "--merchant", merchant["id"], "--open"], fresh_db_url, tmp_path
    )
    assert code == 0 and [d["id"] for d in json.loads(out)] == [inquiry["id"]]

    with api_client(runtime, merchant["secret_key"]) as api:
        balance = api.get("/v1/balance").json()["available"][0]["amount"]
        seen = api.get(f"/v1/disputes/{won['id']}").json()
    assert seen["status"] == "won"
    # Captures are still pending (2-day delay); what is available is what the disputes moved:
    # the lost one's amount and fee, the escalated one's, the refund; the won one nets zero.
    assert balance == -(1000 + FEE) - (4000 + FEE) - 4000
    assert_ledger_ok(runtime)
    code, out = _invoke(["ledger", "verify"], fresh_db_url, tmp_path)
    assert code == 0, out

    with unit_of_work(runtime.db, write=False) as session:
        audited = []
        for model in (AuditStaged, AuditEntry):
            audited += session.execute(
                select(model.action, model.actor_id, model.target_id).where(
                    model.action.like("disputes.%")
                )
            ).all()
        labels = session.execute(
            select(RiskLabel.payment_intent_id, RiskLabel.label, RiskLabel.source).order_by(
                RiskLabel.pk
            )
        ).all()
    assert sorted((a, target) for a, actor, target in audited if actor == "cli") == sorted(
        [
            ("disputes.dispute.create", won["id"]),
            ("disputes.dispute.create", lost["id"]),
            ("disputes.dispute.create", inquiry["id"]),
            ("disputes.dispute.resolve", won["id"]),
            ("disputes.dispute.resolve", lost["id"]),
            ("disputes.dispute.resolve", inquiry["id"]),
        ]
    )
    # Fraud claim, then upheld by the network (legit); the non-fraud loss labels nothing; the
    # escalated inquiry (reason `general`) neither.
    assert [tuple(row) for row in labels] == [
        (won_pi["id"], "fraud", "dispute"),
        (won_pi["id"], "legit", "dispute"),
    ]
    runtime.db.dispose()


def test_dispute_labels_reach_the_retraining_table(fresh_db_url: str, tmp_path: Path) -> None:
    runtime = _runtime(
        fresh_db_url, tmp_path, RiskEngine(FixedScorer(20), MerchantRules(), budget_ms=5000)
    )
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        fraud = _paid(api, "pm_card_createDispute")
        not_received = _paid(api, "pm_card_createDisputeProductNotReceived")
        _paid(api, "pm_card_visa")
        assert fraud["status"] == not_received["status"] == "succeeded"
    with unit_of_work(runtime.db, write=False) as session:
        data = retrain.platform_data(
            session, merchant_id=merchant["id"], livemode=False, now=runtime.clock.now()
        )
    # Only the fraudulent dispute is labelled; unlabelled recent payments are left out.
    assert (data.frauds, data.legit_labelled, data.legit_assumed) == (1, 0, 0)
    rows = list(csv.DictReader(io.StringIO(data.csv.decode("utf-8"))))
    assert [row[LABEL] for row in rows] == ["1"]
    runtime.db.dispose()
