"""Rules, lists and back-tests through the API (issue 7, item 4), acting on real payments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.conftest import api_client
from tests.functional.helpers import pay
from tests.functional.test_risk_decisions import FixedScorer, _runtime

from bastionpay import bootstrap
from bastionpay.audit.models import AuditStaged
from bastionpay.db.uow import unit_of_work
from bastionpay.risk.models import RiskAssessment, RiskRuleSet
from bastionpay.risk.rule_store import MerchantRules
from bastionpay.risk.service import RiskEngine
from bastionpay.runtime import Runtime


@pytest.fixture
def rules_api(db_url: str, tmp_path: Path) -> Iterator[tuple[Runtime, TestClient]]:
    engine = RiskEngine(FixedScorer(30), MerchantRules(), budget_ms=5000)
    runtime = _runtime(db_url, tmp_path, engine)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        yield runtime, api
    runtime.db.dispose()


def _outcome(api: TestClient, response: Any) -> dict[str, Any]:
    body = response.json()
    intent = body["error"]["payment_intent"] if "error" in body else body
    outcome: dict[str, Any] = api.get(f"/v1/charges/{intent['latest_charge']}").json()["outcome"]
    return outcome


def test_a_merchant_rule_blocks_and_a_shadow_rule_only_reports(
    rules_api: tuple[Runtime, TestClient],
) -> None:
    runtime, api = rules_api
    defaults = api.get("/v1/radar/rules").json()
    assert any(r["source"] == "block if :risk_level: = 'highest'" for r in defaults["data"])
    created = api.post("/v1/radar/rules", data={"rule": "block if :amount_in_usd: > 500"})
    assert created.status_code == 200, created.text
    rule = created.json()
    shadow = api.post(
        "/v1/radar/rules", data={"rule": "block if :amount_in_usd: > 100", "mode": "shadow"}
    ).json()
    blocked = pay(api, 60000)
    assert blocked.status_code == 402
    assert blocked.json()["error"]["decline_code"] == "fraudulent"
    outcome = _outcome(api, blocked)
    assert outcome["type"] == "blocked" and outcome["rule"]["id"] == rule["id"]
    passed = pay(api, 20000)  # matches only the shadow rule: it must not act
    assert passed.status_code == 200
    with unit_of_work(runtime.db, write=False) as session:
        # The database is shared by the session's tests: look at this merchant's rows only.
        audited = session.execute(
            select(AuditStaged.action, AuditStaged.merchant_id).where(
                AuditStaged.action == "risk.rule.create",
                AuditStaged.target_id.in_([rule["id"], shadow["id"]]),
            )
        ).all()
        merchant_id = audited[0][1]
        versions = session.scalars(
            select(RiskRuleSet.version).where(RiskRuleSet.merchant_id == merchant_id)
        ).all()
    assert sorted(versions) == [2, 3] and len(audited) == 2
    with unit_of_work(runtime.db, write=False) as session:
        row = session.scalars(
            select(RiskAssessment).where(RiskAssessment.payment_intent_id == passed.json()["id"])
        ).one()
    assert [m["rule"] for m in row.shadow] == [shadow["id"]]


def test_rule_edits_disable_and_delete(rules_api: tuple[Runtime, TestClient]) -> None:
    _, api = rules_api
    rule = api.post("/v1/radar/rules", data={"rule": "block if :amount_in_usd: > 5"}).json()
    assert pay(api, 1000).status_code == 402
    disabled = api.post(f"/v1/radar/rules/{rule['id']}", data={"enabled": "false"})
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert pay(api, 1000).status_code == 200
    assert api.delete(f"/v1/radar/rules/{rule['id']}").json()["deleted"] is True
    assert all(r["id"] != rule["id"] for r in api.get("/v1/radar/rules").json()["data"])


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("block if :amount_in_usd: > 'abc'", "rule_invalid"),
        ("block if :no_such_attribute: > 1", "rule_invalid"),
        ("__import__('os').system('id')", "rule_invalid"),
        ("block if " + "(" * 500 + ":amount_in_usd: > 1" + ")" * 500, "rule_invalid"),
    ],
)
def test_bad_rules_are_refused_with_a_position(
    rules_api: tuple[Runtime, TestClient], rule: str, fragment: str
) -> None:
    _, api = rules_api
    response = api.post("/v1/radar/rules", data={"rule": rule})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == fragment


def test_block_lists_take_effect_on_the_next_payment(
    rules_api: tuple[Runtime, TestClient],
) -> None:
    _, api = rules_api
    lists = api.get("/v1/radar/value_lists").json()["data"]
    email_list = next(
        item["alias"] for item in lists if item["item_type"] == "email" and "block" in item["alias"]
    )
    customer = api.post("/v1/customers", data={"email": "mallory@example.com"}).json()
    assert pay(api, 1500, customer=customer["id"]).status_code == 200
    added = api.post(
        f"/v1/radar/value_lists/{email_list}/items", data={"value": "Mallory@Example.com"}
    )
    assert added.status_code == 200 and added.json()["value"] == "mallory@example.com"
    assert pay(api, 1500, customer=customer["id"]).status_code == 402
    api.post(
        f"/v1/radar/value_lists/{email_list}/remove_item", data={"value": "mallory@example.com"}
    )
    assert pay(api, 1500, customer=customer["id"]).status_code == 200
    in_use = api.delete(f"/v1/radar/value_lists/{email_list}")
    assert in_use.status_code == 400 and in_use.json()["error"]["code"] == "rule_list_in_use"


def test_backtest_replays_a_rule_over_past_payments(
    rules_api: tuple[Runtime, TestClient],
) -> None:
    _, api = rules_api
    for amount in (1000, 2000, 90000, 120000):
        pay(api, amount)
    report = api.post("/v1/radar/rules/backtest", data={"rule": "block if :amount_in_usd: > 500"})
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["object"] == "radar.backtest"
    assert body["payments"] == 4 and body["errors"] == 0
    assert body["matched"]["count"] == 2
    assert body["matched"]["amount"] == {"usd": 210000}  # what it would have blocked
    assert len(body["matched_ids"]) == 2
