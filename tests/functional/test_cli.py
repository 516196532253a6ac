"""The CLI: merchants create, keys, db upgrade and ledger verify (including tamper detection)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import pay

from bastionpay.cli.main import cli
from bastionpay.db import migrate
from bastionpay.db.engine import Database
from bastionpay.db.uow import unit_of_work
from bastionpay.ledger import service as ledger


def _invoke(args: list[str], db_url: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, args, env={"BASTIONPAY_DATABASE_URL": db_url}, catch_exceptions=False
    )
    return result.exit_code, result.output


def test_merchants_create_prints_json_keys(fresh_db_url: str, tmp_path: Path) -> None:
    code, out = _invoke(
        ["merchants", "create", "--name", "Acme", "--data-dir", str(tmp_path), "--json"],
        fresh_db_url,
    )
    assert code == 0, out
    created = json.loads(out)
    assert created["id"].startswith("acct_")
    assert created["secret_key"].startswith("sk_test_")
    assert created["publishable_key"].startswith("pk_test_")
    code, out = _invoke(
        [
            "keys",
            "create",
            "--merchant",
            created["id"],
            "--kind",
            "restricted",
            "--permission",
            "payments:read",
            "--data-dir",
            str(tmp_path),
        ],
        fresh_db_url,
    )
    assert code == 0, out
    issued = json.loads(out)
    assert issued["key"].startswith("rk_test_")
    code, out = _invoke(
        ["keys", "list", "--merchant", created["id"], "--data-dir", str(tmp_path)], fresh_db_url
    )
    listed = json.loads(out)
    assert len(listed) == 3
    assert all(issued["key"] not in json.dumps(row) for row in listed)
    code, out = _invoke(["keys", "revoke", issued["id"], "--data-dir", str(tmp_path)], fresh_db_url)
    assert code == 0 and "revoked" in out


def test_db_upgrade_is_idempotent(fresh_db_url: str, tmp_path: Path) -> None:
    for _ in range(2):
        code, out = _invoke(["db", "upgrade", "--data-dir", str(tmp_path)], fresh_db_url)
        assert code == 0, out
        assert f"revision {migrate.head_revision(fresh_db_url)}" in out


def _drop_guards(db: Database) -> None:
    """An attacker with DDL rights removes the immutability triggers first."""
    with unit_of_work(db, write=True) as session:
        if db.is_sqlite:
            for table in ("ledger_entries", "ledger_transactions", "balance_transactions"):
                for event in ("update", "delete"):
                    session.execute(text(f"DROP TRIGGER {table}_no_{event}"))
        else:
            session.execute(text("DROP FUNCTION bastionpay_immutable() CASCADE"))


TAMPERING = {
    "transactions_balance": "UPDATE ledger_entries SET amount = amount + 1 WHERE pk = "
    "(SELECT MIN(pk) FROM ledger_entries)",
    "checkpoints_match_entries": "UPDATE ledger_accounts SET checkpoint_balance = "
    "checkpoint_balance - 5 WHERE code = 'fee_revenue'",
    "merchant_balance_matches_balance_transactions": "UPDATE balance_transactions SET net = net "
    "+ 100, amount = amount + 100",
    "receivable_matches_charges": "UPDATE charges SET amount_captured = amount_captured - 1",
    "holds_match_open_authorizations": "UPDATE payment_intents SET amount_capturable = 1, "
    "status = 'requires_capture'",
}


@pytest.mark.parametrize("broken", sorted(TAMPERING))
def test_ledger_verify_names_the_broken_invariant(
    fresh_db_url: str, tmp_path: Path, broken: str
) -> None:
    runtime = make_runtime(fresh_db_url, tmp_path)
    code, out = _invoke(
        ["merchants", "create", "--name", "m", "--data-dir", str(tmp_path), "--json"], fresh_db_url
    )
    merchant = json.loads(out)
    with api_client(runtime, merchant["secret_key"]) as api:
        assert pay(api, 2000).status_code == 200
        intent = pay(api, 1000, capture_method="manual").json()
        api.post(f"/v1/payment_intents/{intent['id']}/capture")
        api.post("/v1/refunds", data={"payment_intent": intent["id"], "amount": "300"})
    with unit_of_work(runtime.db, write=True) as session:
        newest = session.scalar(text("SELECT MAX(pk) FROM ledger_entries"))
        assert ledger.advance_checkpoints(session, through_entry_pk=int(newest)) > 0
    code, out = _invoke(["ledger", "verify", "--data-dir", str(tmp_path)], fresh_db_url)
    assert code == 0, out
    assert "all invariants hold" in out
    _drop_guards(runtime.db)
    with unit_of_work(runtime.db, write=True) as session:
        session.execute(text(TAMPERING[broken]))
    code, out = _invoke(["ledger", "verify", "--data-dir", str(tmp_path)], fresh_db_url)
    assert code == 1
    assert f"invariant broken: {broken}" in out
    runtime.db.dispose()


def test_files_the_platform_writes_are_owner_only(tmp_path: Path) -> None:
    """The SQLite database, its WAL, keys and run files are readable by the owner only."""
    data = tmp_path / "data"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bastionpay",
            "merchants",
            "create",
            "--name",
            "m",
            "--data-dir",
            str(data),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "BASTIONPAY_DATABASE_URL"},
    )
    assert result.returncode == 0, result.stderr
    written = list(data.rglob("*"))
    assert any(p.name == "api.db" for p in written)
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is mode {oct(mode)}"


def test_edge_controls_from_the_cli(fresh_db_url: str, tmp_path: Path) -> None:
    """`keys create --allow-ip`, `keys allow-ips` and `merchants limits` (edge issue; I7, T4)."""
    data = ["--data-dir", str(tmp_path)]
    code, out = _invoke(["merchants", "create", "--name", "Edge", "--json", *data], fresh_db_url)
    merchant = json.loads(out)
    code, out = _invoke(
        ["keys", "create", "--merchant", merchant["id"], "--allow-ip", "10.0.0.0/8", *data],
        fresh_db_url,
    )
    assert code == 0, out
    issued = json.loads(out)
    assert issued["allowed_ips"] == ["10.0.0.0/8"]
    runtime = make_runtime(fresh_db_url, tmp_path)
    with api_client(runtime, issued["key"]) as api:  # this client is 127.0.0.1
        assert api.get("/v1/customers").status_code == 403
    code, out = _invoke(
        ["keys", "allow-ips", issued["id"], "--cidr", "127.0.0.1", *data], fresh_db_url
    )
    assert code == 0, out
    assert json.loads(out)["allowed_ips"] == ["127.0.0.1/32"]
    with api_client(runtime, issued["key"]) as api:
        assert api.get("/v1/customers").status_code == 200
    code, out = _invoke(
        ["keys", "allow-ips", issued["id"], "--cidr", "10.0.0.300", *data], fresh_db_url
    )
    assert code != 0 and "not an IP network" in out
    code, out = _invoke(["keys", "allow-ips", issued["id"], *data], fresh_db_url)
    assert code != 0  # neither --cidr nor --anywhere

    code, out = _invoke(
        ["merchants", "limits", merchant["id"], "--write", "2/minute", *data], fresh_db_url
    )
    assert code == 0, out
    with api_client(runtime, merchant["secret_key"]) as api:
        assert [pay(api).status_code for _ in range(3)] == [200, 200, 429]
    code, out = _invoke(
        ["merchants", "limits", merchant["id"], "--write", "lots", *data], fresh_db_url
    )
    assert code != 0 and "Invalid rate limit" in out
    code, out = _invoke(["merchants", "limits", merchant["id"], "--default", *data], fresh_db_url)
    assert code == 0 and "default" in json.loads(out)["write"]
    code, out = _invoke(["keys", "list", "--merchant", merchant["id"], *data], fresh_db_url)
    assert [k["allowed_ips"] for k in json.loads(out)] == [None, None, ["127.0.0.1/32"]]
    runtime.db.dispose()
