"""`bastionpay audit …` from the command line: exit codes, exports, pinned keys."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import text
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import pay

from bastionpay.cli.main import cli
from bastionpay.db.uow import unit_of_work


def _invoke(args: list[str], db_url: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, args, env={"BASTIONPAY_DATABASE_URL": db_url}, catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


def test_audit_cli_verify_export_and_tamper(fresh_db_url: str, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    code, out, _ = _invoke(["merchants", "create", "--name", "m", "--json", *data], fresh_db_url)
    merchant = json.loads(out)
    runtime = make_runtime(fresh_db_url, tmp_path)
    with api_client(runtime, merchant["secret_key"]) as api:
        for amount in (1000, 2000, 3000):
            assert pay(api, amount).status_code == 200

    code, out, _ = _invoke(["audit", "checkpoint", *data], fresh_db_url)
    assert code == 0, out
    public_key = _invoke(["audit", "public-key", *data], fresh_db_url)[1].strip()
    assert public_key in out  # printed so it can be pinned

    code, out, err = _invoke(["audit", "verify", *data], fresh_db_url)
    assert code == 0, out + err
    assert "intact" in out

    export = tmp_path / "audit.jsonl"
    code, _, err = _invoke(
        ["audit", "export", "--since", "2020-01-01", "--out", str(export), *data], fresh_db_url
    )
    assert code == 0, err
    lines = export.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "checkpoint" and len(lines) >= 7
    code, out, _ = _invoke(
        ["audit", "verify", "--export", str(export), "--public-key", public_key], fresh_db_url
    )
    assert code == 0 and "verify against the signed checkpoint" in out

    entry = json.loads(lines[2])
    entry["fields"]["outcome"] = "denied"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], lines[1], json.dumps(entry), *lines[3:]]) + "\n")
    code, _, err = _invoke(["audit", "verify", "--export", str(bad)], fresh_db_url)
    assert code == 1 and "line 3" in err

    with unit_of_work(runtime.db, write=True) as session:
        if runtime.db.is_sqlite:
            session.execute(text("DROP TRIGGER audit_entries_no_update"))
        else:
            session.execute(text("DROP TRIGGER audit_entries_immutable ON audit_entries"))
        session.execute(text("UPDATE audit_entries SET action = 'audit.log.read' WHERE seq = 4"))
    code, _, err = _invoke(["audit", "verify", *data], fresh_db_url)
    assert code == 1
    assert "TAMPERED: entry 4" in err
    runtime.db.dispose()


def test_consistency_proofs_show_the_log_only_grew(fresh_db_url: str, tmp_path: Path) -> None:
    """Issue 3, item 2: an older pinned checkpoint is a prefix of a newer one (RFC 9162 §2.1.4)."""
    data = ["--data-dir", str(tmp_path)]
    _, out, _ = _invoke(["merchants", "create", "--name", "m", "--json", *data], fresh_db_url)
    merchant = json.loads(out)
    runtime = make_runtime(fresh_db_url, tmp_path)
    with api_client(runtime, merchant["secret_key"]) as api:
        pay(api, 1000)
        code, out, _ = _invoke(["audit", "checkpoint", *data], fresh_db_url)
        assert code == 0
        old_size = int(out.split("size ")[1].split(",")[0])
        old_root = out.split("root ")[1].split()[0]  # what an auditor pinned back then
        for amount in (2000, 3000):
            pay(api, amount)
    proof_file = tmp_path / "consistency.json"
    code, _, err = _invoke(
        [
            "audit",
            "prove-consistency",
            "--old-size",
            str(old_size),
            "--out",
            str(proof_file),
            *data,
        ],
        fresh_db_url,
    )
    assert code == 0, err
    document = json.loads(proof_file.read_text())
    assert document["checkpoint"]["tree_size"] > old_size and document["proof"]
    code, out, _ = _invoke(
        ["audit", "verify", "--consistency", str(proof_file), "--old-root", old_root], fresh_db_url
    )
    assert code == 0 and "prefix" in out

    # A rewritten history (another old root) or a doctored proof is refused.
    code, _, err = _invoke(
        ["audit", "verify", "--consistency", str(proof_file), "--old-root", "ab" * 32], fresh_db_url
    )
    assert code == 1 and "INVALID" in err
    node = document["proof"][0]
    document["proof"][0] = ("0" if node[0] != "0" else "1") + node[1:]
    proof_file.write_text(json.dumps(document))
    code, _, err = _invoke(
        ["audit", "verify", "--consistency", str(proof_file), "--old-root", old_root], fresh_db_url
    )
    assert code == 1 and "INVALID" in err
    runtime.db.dispose()


def test_audit_archive_from_the_cli(fresh_db_url: str, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    _, out, _ = _invoke(["merchants", "create", "--name", "m", "--json", *data], fresh_db_url)
    runtime = make_runtime(fresh_db_url, tmp_path)
    with api_client(runtime, json.loads(out)["secret_key"]) as api:
        pay(api, 1000)
    code, out, err = _invoke(["audit", "archive", "--older-than-days", "0", *data], fresh_db_url)
    assert code == 0, err
    assert "entries 0.." in out
    segment = next((tmp_path / "audit-archive").glob("audit-segment-*.jsonl"))
    code, out, err = _invoke(["audit", "verify", *data], fresh_db_url)
    assert code == 0, err
    segment.write_text(segment.read_text().replace('"success"', '"failure"', 1))
    code, _, err = _invoke(["audit", "verify", *data], fresh_db_url)
    assert code == 1 and "was modified" in err
    runtime.db.dispose()
