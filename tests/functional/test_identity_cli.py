"""`bastionpay users …` (issue 5, item 1): passwords only from stdin, roles and merchants checked,
clear errors with a non-zero exit, every change audited as the CLI (L1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from click.testing import CliRunner
from sqlalchemy import select
from tests.conftest import make_runtime

from bastionpay.audit.events import Origin
from bastionpay.audit.models import AuditStaged
from bastionpay.cli.main import cli
from bastionpay.db.uow import unit_of_work
from bastionpay.identity import accounts, login
from bastionpay.identity.models import Invitation
from bastionpay.identity.passwords import passwords_for

PASSWORD = "granite-meadow-3390-sable"


class Cli:
    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.db_url = db_url
        self.data_dir = data_dir

    def __call__(self, *args: str, stdin: str | None = None) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli,
            [*args, "--data-dir", str(self.data_dir)],
            input=stdin,
            env={"BASTIONPAY_DATABASE_URL": self.db_url},
            catch_exceptions=False,
        )
        return result.exit_code, result.output

    def json(self, *args: str, stdin: str | None = None) -> Any:
        code, out = self(*args, stdin=stdin)
        assert code == 0, out
        return json.loads(out)


def test_users_commands(fresh_db_url: str, tmp_path: Path) -> None:
    run = Cli(fresh_db_url, tmp_path)
    merchant = run.json("merchants", "create", "--name", "Staffed", "--json")["id"]

    owner = run.json(
        "users", "create", "--email", "Owner@Example.com", "--role", "owner",
        "--merchant", merchant, "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert owner["id"].startswith("usr_")
    assert (owner["email"], owner["role"], owner["merchant"]) == (
        "owner@example.com",
        "owner",
        merchant,
    )
    assert owner["status"] == "active" and owner["mfa_enrolled"] is False
    assert "password" not in json.dumps(owner) and "$argon2" not in json.dumps(owner)
    officer = run.json(
        "users", "create", "--email", "sec@example.com", "--role", "security_officer",
        "--password-stdin", stdin=PASSWORD + "\r\n",
    )  # fmt: skip
    assert officer["merchant"] is None

    runtime = make_runtime(fresh_db_url, tmp_path)
    try:
        # The password piped in (newline stripped) is the one that logs in.
        user = login.password_login(
            runtime, email="owner@example.com", password=PASSWORD, origin=Origin(ip="127.0.0.9")
        )
        assert user.id == owner["id"]

        listed = run.json("users", "list")
        assert {u["id"] for u in listed} == {owner["id"], officer["id"]}
        assert [u["id"] for u in run.json("users", "list", "--merchant", merchant)] == [owner["id"]]

        staff = run.json(
            "users", "create", "--email", "dev@example.com", "--role", "developer",
            "--merchant", merchant, "--password-stdin", stdin=PASSWORD,
        )  # fmt: skip
        changed = run.json("users", "role", staff["id"], "analyst")
        assert changed["role"] == "analyst"
        disabled = run.json("users", "disable", staff["id"])
        assert (disabled["status"], disabled["disabled_reason"]) == ("disabled", "admin")
        assert run.json("users", "enable", staff["id"])["status"] == "active"
        with unit_of_work(runtime.db, write=False) as session:
            assert accounts.get_user(session, staff["id"]).security_generation == 2

        code, out = run("users", "invite", "--merchant", merchant, "--email", "new@example.com",
                        "--role", "admin")  # fmt: skip
        assert code == 0, out
        url = next(word for word in out.split() if word.startswith("https://"))
        token = parse_qs(urlparse(url).query)["token"][0]
        assert urlparse(url).path == "/invitations/accept"
        with unit_of_work(runtime.db, write=False) as session:
            invitation = session.scalars(
                select(Invitation).where(Invitation.email == "new@example.com")
            ).one()
            assert invitation.token_hash == runtime.identity_keys.invitations.hexdigest(token)
            assert invitation.invited_by == "cli"

            events = session.scalars(
                select(AuditStaged).where(AuditStaged.actor_id == "cli").order_by(AuditStaged.pk)
            ).all()
        assert [e.action for e in events if e.action.startswith("identity.")] == [
            "identity.user.create",
            "identity.user.create",
            "identity.user.create",
            "identity.user.role_change",
            "identity.user.disable",
            "identity.user.enable",
            "identity.invitation.create",
        ]
        assert all(e.actor_type == "system" for e in events)
        stored = " ".join(json.dumps(e.details) for e in events)
        assert PASSWORD not in stored and token not in stored
        assert passwords_for(runtime.settings).min_length == 12
    finally:
        runtime.db.dispose()


def test_users_errors_exit_non_zero_with_a_clear_message(fresh_db_url: str, tmp_path: Path) -> None:
    run = Cli(fresh_db_url, tmp_path)
    merchant = run.json("merchants", "create", "--name", "Errors", "--json")["id"]
    cases: list[tuple[list[str], str | None, int, str]] = [
        # Never a password on the command line: not an option at all, and stdin is required.
        (["--email", "a@example.com", "--role", "owner", "--merchant", merchant,
          "--password", PASSWORD], None, 2, "No such option"),
        (["--email", "a@example.com", "--role", "owner", "--merchant", merchant], PASSWORD, 2,
         "--password-stdin"),
        (["--email", "a@example.com", "--role", "platform_admin", "--merchant", merchant,
          "--password-stdin"], PASSWORD, 2, "platform role: it takes no --merchant"),
        (["--email", "a@example.com", "--role", "analyst", "--password-stdin"], PASSWORD, 2,
         "merchant role: --merchant acct_… is required"),
        (["--email", "a@example.com", "--role", "wizard", "--password-stdin"], PASSWORD, 2,
         "'wizard' is not one of"),
        (["--email", "a@example.com", "--role", "owner", "--merchant", merchant,
          "--password-stdin"], "", 2, "no password on standard input"),
        (["--email", "a@example.com", "--role", "owner", "--merchant", merchant,
          "--password-stdin"], "password1234\n", 1, "too common"),
        (["--email", "a@example.com", "--role", "owner", "--merchant", "acct_nope",
          "--password-stdin"], PASSWORD, 1, "No such merchant"),
        (["--email", "not-an-email", "--role", "owner", "--merchant", merchant,
          "--password-stdin"], PASSWORD, 1, "valid email"),
    ]  # fmt: skip
    for args, stdin, exit_code, message in cases:
        code, out = run("users", "create", *args, stdin=stdin)
        assert code == exit_code, (args, out)
        assert message in out, (args, out)
        assert PASSWORD not in out
    assert run.json("users", "list") == []
    for args, message in [
        (["disable", "usr_missing"], "No such user"),
        (["enable", "usr_missing"], "No such user"),
        (["role", "usr_missing", "admin"], "No such user"),
        (["invite", "--merchant", merchant, "--email", "x@example.com", "--role",
          "platform_admin"], "'platform_admin' is not one of"),
        (["invite", "--merchant", "acct_nope", "--email", "x@example.com", "--role", "admin"],
         "No such merchant"),
    ]:  # fmt: skip
        code, out = run("users", *args)
        assert code != 0 and message in out, (args, out)
