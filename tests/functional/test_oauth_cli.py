"""`bastionpay oauth clients create|list|revoke` and client registration rules (I6, I7, L1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from tests.conftest import make_runtime

from bastionpay import bootstrap
from bastionpay.audit.models import AuditStaged
from bastionpay.cli.main import cli
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.errors import InvalidRequestError
from bastionpay.oauth.clients import check_redirect_uri
from bastionpay.oauth.models import OAuthClient
from bastionpay.runtime import Runtime


def run(data_dir: Path, url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["oauth", "clients", *args, "--data-dir", str(data_dir)],
        env={"BASTIONPAY_DATABASE_URL": url},
        catch_exceptions=False,
    )
    return result.exit_code, result.output


@pytest.fixture
def setup(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[Runtime, str, Path]]:
    runtime = make_runtime(fresh_db_url, tmp_path)
    merchant = bootstrap.create_merchant_with_keys(runtime, "CLI merchant")["id"]
    yield runtime, merchant, tmp_path
    runtime.db.dispose()


def test_create_list_revoke(setup: tuple[Runtime, str, Path], fresh_db_url: str) -> None:
    runtime, merchant, data_dir = setup
    code, out = run(
        data_dir,
        fresh_db_url,
        "create",
        "--merchant",
        merchant,
        "--name",
        "Books",
        "--redirect-uri",
        "https://books.example/cb",
        "--scope",
        "payments:read",
        "--scope",
        "customers:read",
    )
    assert code == 0, out
    created: dict[str, Any] = json.loads(out[: out.rindex("}") + 1])
    secret = created["client_secret"]
    assert secret.startswith("bpcs_") and created["public"] is False
    assert created["scopes"] == ["customers:read", "payments:read"]
    with unit_of_work(runtime.db, write=False) as session:
        row = session.scalars(select(OAuthClient)).one()
        # I7: the secret is stored only as a keyed hash.
        assert row.secret_hash and secret not in row.secret_hash
        events = session.scalars(
            select(AuditStaged).where(AuditStaged.action == "oauth.client.create")
        ).all()
        assert [e.target_id for e in events] == [created["id"]]
        assert secret not in json.dumps(events[0].details)

    code, out = run(data_dir, fresh_db_url, "list", "--merchant", merchant)
    assert code == 0 and secret not in out
    assert [c["id"] for c in json.loads(out)["data"]] == [created["id"]]

    code, out = run(data_dir, fresh_db_url, "revoke", created["id"])
    assert code == 0, out
    assert json.loads(out)["revoked"] is not None


def test_public_client_has_no_secret(setup: tuple[Runtime, str, Path], fresh_db_url: str) -> None:
    _runtime, merchant, data_dir = setup
    code, out = run(
        data_dir,
        fresh_db_url,
        "create",
        "--merchant",
        merchant,
        "--name",
        "Native",
        "--redirect-uri",
        "http://127.0.0.1:8765/cb",
        "--public",
        "--scope",
        "payments:read",
    )
    assert code == 0, out
    body = json.loads(out)
    assert body["public"] is True and "client_secret" not in body
    assert body["grant_types"] == ["authorization_code", "refresh_token"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--redirect-uri", "http://books.example/cb", "--scope", "payments:read"], "https"),
        (["--redirect-uri", "https://books.example/cb#x", "--scope", "payments:read"], "fragment"),
        (["--redirect-uri", "https://books.example/cb", "--scope", "keys:manage"], "keys:manage"),
        (["--redirect-uri", "https://books.example/cb", "--scope", "vault:keys"], "vault:keys"),
    ],
)
def test_refused_registrations(
    setup: tuple[Runtime, str, Path], fresh_db_url: str, args: list[str], message: str
) -> None:
    _runtime, merchant, data_dir = setup
    code, out = run(data_dir, fresh_db_url, "create", "--merchant", merchant, "--name", "X", *args)
    assert code == 1 and message in out


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb",
        "https://app.example:8443/cb?x=1",
        "http://127.0.0.1:51000/cb",
        "http://[::1]:51000/cb",
        "http://localhost/cb",
    ],
)
def test_redirect_uris_accepted(uri: str) -> None:
    assert check_redirect_uri(uri) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example/cb",  # plain http off the loopback interface
        "http://127.0.0.1.evil.example/cb",
        "https://app.example/cb#fragment",
        "https://user:pw@app.example/cb",
        "javascript:alert(1)",
        "app.example/cb",
        "https://app.example/c b",
        "",
        "https://app.example/" + "a" * 2048,
    ],
)
def test_redirect_uris_refused(uri: str) -> None:
    with pytest.raises(InvalidRequestError):
        check_redirect_uri(uri)
