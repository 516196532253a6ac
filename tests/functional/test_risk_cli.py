"""`bastionpay reviews` and `bastionpay merchants risk` (issue 7, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from tests.conftest import api_client
from tests.functional.helpers import assert_ledger_ok, pay
from tests.functional.test_risk_decisions import FixedScorer, ReviewEverything, _runtime

from bastionpay import bootstrap
from bastionpay.cli.main import cli
from bastionpay.risk.rule_store import MerchantRules
from bastionpay.risk.service import RiskEngine


def _invoke(args: list[str], db_url: str, data_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        [*args, "--data-dir", str(data_dir)],
        env={"BASTIONPAY_DATABASE_URL": db_url},
        catch_exceptions=False,
    )
    return result.exit_code, result.output


def test_operators_work_the_review_queue_from_the_cli(fresh_db_url: str, tmp_path: Path) -> None:
    runtime = _runtime(
        fresh_db_url, tmp_path, RiskEngine(FixedScorer(30), ReviewEverything(), budget_ms=5000)
    )
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        first, second = pay(api, 1500).json(), pay(api, 2500).json()
    code, out = _invoke(["reviews", "list", "--merchant", merchant["id"]], fresh_db_url, tmp_path)
    assert code == 0, out
    assert {r["id"] for r in json.loads(out)} == {first["review"], second["review"]}

    code, out = _invoke(["reviews", "approve", first["review"]], fresh_db_url, tmp_path)
    assert code == 0 and json.loads(out)["closed_reason"] == "approved"
    code, out = _invoke(["reviews", "reject", second["review"]], fresh_db_url, tmp_path)
    assert code == 0 and json.loads(out)["closed_reason"] == "refunded_as_fraud"
    code, out = _invoke(["reviews", "approve", first["review"]], fresh_db_url, tmp_path)
    assert code != 0 and "already closed" in out
    code, out = _invoke(["reviews", "list", "--merchant", merchant["id"]], fresh_db_url, tmp_path)
    assert json.loads(out) == []

    with api_client(runtime, merchant["secret_key"]) as api:
        statuses = {pi["id"]: pi["status"] for pi in api.get("/v1/payment_intents").json()["data"]}
    assert statuses == {first["id"]: "succeeded", second["id"]: "canceled"}
    assert_ledger_ok(runtime)
    runtime.db.dispose()


def test_merchant_risk_settings(fresh_db_url: str, tmp_path: Path) -> None:
    runtime = _runtime(
        fresh_db_url, tmp_path, RiskEngine(FixedScorer(), MerchantRules(), budget_ms=5000)
    )
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    code, out = _invoke(
        ["merchants", "risk", merchant["id"], "--policy", "open", "--timezone", "Europe/Paris"],
        fresh_db_url,
        tmp_path,
    )
    assert code == 0, out
    assert json.loads(out) == {
        "merchant": merchant["id"],
        "risk_failure_policy": "open",
        "timezone": "Europe/Paris",
    }
    code, out = _invoke(
        ["merchants", "risk", merchant["id"], "--timezone", "Mars/Olympus"], fresh_db_url, tmp_path
    )
    assert code != 0 and "Unknown time zone" in out
    runtime.db.dispose()
