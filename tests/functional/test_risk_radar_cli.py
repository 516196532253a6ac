"""`bastionpay radar rules|lists` (issue 7, item 4): the CLI changes what payments see, through
the same service as the API, and every change is audited with the CLI as the actor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.conftest import api_client
from tests.functional.helpers import pay
from tests.functional.test_risk_decisions import FixedScorer, _runtime

from bastionpay import bootstrap
from bastionpay.audit.models import AuditStaged
from bastionpay.cli.main import cli
from bastionpay.db.uow import unit_of_work
from bastionpay.risk.models import RiskRuleSet
from bastionpay.risk.rule_store import MerchantRules
from bastionpay.risk.service import RiskEngine
from bastionpay.runtime import Runtime


@dataclass
class Radar:
    runtime: Runtime
    api: TestClient
    merchant: str
    db_url: str
    data_dir: Path

    def run(self, *args: str, merchant: bool = True) -> tuple[int, str]:
        scope = ["--merchant", self.merchant] if merchant else []
        result = CliRunner().invoke(
            cli,
            ["radar", *args, *scope, "--data-dir", str(self.data_dir)],
            env={"BASTIONPAY_DATABASE_URL": self.db_url},
            catch_exceptions=False,
        )
        return result.exit_code, result.output

    def ok(self, *args: str) -> Any:
        code, out = self.run(*args)
        assert code == 0, out
        return json.loads(out)

    def audit(self) -> list[AuditStaged]:
        with unit_of_work(self.runtime.db, write=False) as session:
            return list(
                session.scalars(
                    select(AuditStaged)
                    .where(AuditStaged.action.like("risk.%"))
                    .order_by(AuditStaged.pk)
                )
            )


@pytest.fixture
def radar(fresh_db_url: str, tmp_path: Path) -> Iterator[Radar]:
    engine = RiskEngine(FixedScorer(30), MerchantRules(), budget_ms=5000)
    runtime = _runtime(fresh_db_url, tmp_path, engine)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        yield Radar(runtime, api, merchant["id"], fresh_db_url, tmp_path)
    runtime.db.dispose()


def test_rules_made_on_the_cli_act_on_payments_and_are_audited(radar: Radar) -> None:
    listed = radar.ok("rules", "list")
    assert [r["source"] for r in listed["data"]] == [
        r["source"] for r in radar.api.get("/v1/radar/rules").json()["data"]
    ]
    rule = radar.ok("rules", "create", "block if :amount_in_usd: > 500", "--description", "big")
    assert rule["object"] == "radar.rule" and rule["mode"] == "live"
    shadow = radar.ok("rules", "create", "block if :amount_in_usd: > 100", "--shadow")
    assert shadow["mode"] == "shadow"

    assert pay(radar.api, 60000).status_code == 402  # the CLI's live rule blocks
    assert pay(radar.api, 20000).status_code == 200  # the shadow rule only records

    disabled = radar.ok("rules", "disable", rule["id"])
    assert disabled["enabled"] is False
    assert pay(radar.api, 60000).status_code == 200
    assert radar.ok("rules", "enable", rule["id"])["enabled"] is True
    assert pay(radar.api, 60000).status_code == 402
    acting = radar.ok(
        "rules", "update", shadow["id"], "--act", "--rule", "review if :amount_in_usd: > 150"
    )
    assert acting["mode"] == "live" and acting["source"] == "review if :amount_in_usd: > 150"
    assert radar.ok("rules", "delete", rule["id"])["deleted"] is True
    ids = [r["id"] for r in radar.api.get("/v1/radar/rules").json()["data"]]
    assert rule["id"] not in ids and shadow["id"] in ids

    events = radar.audit()
    assert [e.action for e in events] == [
        "risk.rule.create",
        "risk.rule.create",
        "risk.rule.update",
        "risk.rule.update",
        "risk.rule.update",
        "risk.rule.delete",
    ]
    assert {(e.actor_type, e.actor_id, e.outcome) for e in events} == {("system", "cli", "success")}
    assert [e.target_id for e in events] == [
        rule["id"], shadow["id"], rule["id"], rule["id"], shadow["id"], rule["id"],
    ]  # fmt: skip
    assert all(e.target_type == "radar.rule" and e.merchant_id == radar.merchant for e in events)
    with unit_of_work(radar.runtime.db, write=False) as session:
        versions = session.execute(
            select(RiskRuleSet.version, RiskRuleSet.changed_by).order_by(RiskRuleSet.version)
        ).all()
    assert [tuple(v) for v in versions] == [(n, "cli") for n in range(2, 8)]


@pytest.mark.parametrize(
    ("rule", "message", "caret"),
    [
        ("block if :amount_in_usd: > 'abc'", "", None),
        ("block if :no_such_attribute: > 1", "no_such_attribute", 9),
        ("__import__('os').system('id')", "", 0),
    ],
)
def test_a_rule_that_does_not_parse_prints_where_and_changes_nothing(
    radar: Radar, rule: str, message: str, caret: int | None
) -> None:
    api_error = radar.api.post("/v1/radar/rules", data={"rule": rule}).json()["error"]
    code, out = radar.run("rules", "create", rule)
    assert code == 1
    # The parser's own message and position, as the API reports them.
    assert api_error["message"] in out and message in out
    assert f"(at column {api_error['column']})" in out
    lines = out.splitlines()
    assert lines[-2] == f"  {rule}" and lines[-1] == "  " + " " * api_error["position"] + "^"
    if caret is not None:
        assert api_error["position"] == caret
    code, out = radar.run("rules", "backtest", rule)
    assert code == 1 and api_error["message"] in out
    assert radar.audit() == []
    with unit_of_work(radar.runtime.db, write=False) as session:
        assert session.scalars(select(RiskRuleSet)).all() == []


def test_control_characters_in_a_bad_rule_are_not_echoed(radar: Radar) -> None:
    code, out = radar.run("rules", "create", "block if :amount_in_usd: >\x1b[2J 5")
    assert code == 1 and "\x1b" not in out and "\\u001b" in out


def test_bad_input_gives_clear_errors(radar: Radar) -> None:
    code, out = radar.run("rules", "disable", "rule_nope")
    assert code == 1 and "rule_nope" in out
    code, out = radar.run("rules", "update", "rule_nope")
    assert code == 2 and "--rule" in out  # nothing to change: a usage error
    code, out = radar.run("lists", "create", "vips", "--item-type", "pan")
    assert code == 1 and "item_type must be one of" in out
    code, out = radar.run("lists", "items", "add", "no_such_list", "x@example.com")
    assert code == 1 and "no such list: @no_such_list" in out
    result = CliRunner().invoke(
        cli,
        ["radar", "rules", "list", "--merchant", "acct_missing", "--data-dir", str(radar.data_dir)],
        env={"BASTIONPAY_DATABASE_URL": radar.db_url},
    )
    assert result.exit_code == 1 and "No such merchant: acct_missing" in result.output
    assert radar.audit() == []


def test_lists_and_items_from_the_cli(radar: Radar) -> None:
    lists = radar.ok("lists", "list")["data"]
    assert "email_blocklist" in {entry["alias"] for entry in lists}
    customer = radar.api.post("/v1/customers", data={"email": "mallory@example.com"}).json()
    assert pay(radar.api, 1500, customer=customer["id"]).status_code == 200

    added = radar.ok("lists", "items", "add", "email_blocklist", "Mallory@Example.com")
    assert added == [
        {"object": "radar.value_list_item", "value_list": "email_blocklist",
         "value": "mallory@example.com"},
    ]  # fmt: skip
    assert pay(radar.api, 1500, customer=customer["id"]).status_code == 402
    items = radar.ok("lists", "items", "list", "email_blocklist")
    assert items["data"] == ["mallory@example.com"] and items["has_more"] is False
    removed = radar.ok("lists", "items", "remove", "email_blocklist", "mallory@example.com")
    assert removed[0]["deleted"] is True
    assert pay(radar.api, 1500, customer=customer["id"]).status_code == 200

    created = radar.ok("lists", "create", "vip_emails", "--item-type", "email", "--name", "VIPs")
    assert created["object"] == "radar.value_list" and created["item_type"] == "email"
    radar.ok("lists", "items", "add", "vip_emails", "a@example.com", "b@example.com")
    page = radar.ok("lists", "items", "list", "vip_emails", "--limit", "1")
    assert page["data"] == ["a@example.com"] and page["has_more"] is True
    rule = radar.ok("rules", "create", "allow if :email: in @vip_emails")
    code, out = radar.run("lists", "delete", "vip_emails")
    assert code == 1 and "@vip_emails is used by a rule" in out
    radar.ok("rules", "delete", rule["id"])
    assert radar.ok("lists", "delete", "vip_emails")["deleted"] is True
    api_lists = radar.api.get("/v1/radar/value_lists").json()["data"]
    assert "vip_emails" not in {entry["alias"] for entry in api_lists}

    events = [(e.action, e.target_type, e.target_id, e.details) for e in radar.audit()]
    list_events = [e for e in events if e[0] == "risk.list.update"]
    assert [(e[1], e[2]) for e in list_events] == [
        ("radar.value_list_item", None),  # add: one event per value
        ("radar.value_list_item", None),  # remove
        ("radar.value_list", "vip_emails"),  # create
        ("radar.value_list_item", None),
        ("radar.value_list_item", None),
        ("radar.value_list", "vip_emails"),  # delete
    ]
    assert list_events[0][3]["value_list"] == "email_blocklist"
    assert list_events[0][3]["operator"]


def test_backtest_from_the_cli_matches_the_api(radar: Radar) -> None:
    for amount in (1000, 2000, 90000, 120000):
        pay(radar.api, amount)
    rule = "block if :amount_in_usd: > 500"
    report = radar.ok("rules", "backtest", rule)
    assert report == radar.api.post("/v1/radar/rules/backtest", data={"rule": rule}).json()
    assert report["matched"]["count"] == 2 and report["matched"]["amount"] == {"usd": 210000}
    assert radar.audit() == []  # a back-test changes nothing
