"""`bastionpay vault keys …` against the vault database, SQLite and PostgreSQL (C4, L1).

KEK rotation rewraps every data key; DEK rotation re-encrypts a merchant's records; `keys status`
counts what each version protects after every step; retiring refuses a version still in use or
inside its grace period, and a retired version protects nothing — its key material is gone from
the key file and the database — while every card still decrypts in a fresh process. Every key
operation, refusals included, is in the vault's audit log with the operator's name.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from tests.unit.vault.softhsm import PIN, TOKEN, softhsm

from bastionpay.kernel.clock import SystemClock
from bastionpay.vault import tokens
from bastionpay.vault.cli import vault_group
from bastionpay.vault.interfaces import Purpose
from bastionpay.vault.models import Card
from bastionpay.vault.runtime import VaultRuntime, build_vault_runtime
from bastionpay.vault.settings import VaultSettings
from bastionpay.vault.tokens import Actor, KeyHolder

PG_ADMIN_URL = os.environ.get(
    "BASTIONPAY_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("BASTIONPAY_REQUIRE_SERVICES") == "1"
A, B = "acct_keys_a", "acct_keys_b"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None  # the default: <data_dir>/vault.db
        return
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if REQUIRE_SERVICES:
            pytest.fail(f"PostgreSQL is required but unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    name = f"bp_vault_keys_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(data_dir: Path, database_url: str | None, grace: int) -> dict[str, str]:
    env = {
        "BASTIONPAY_VAULT_DATA_DIR": str(data_dir),
        "BASTIONPAY_VAULT_KEY_GRACE_SECONDS": str(grace),
    }
    if database_url:
        env["BASTIONPAY_VAULT_DATABASE_URL"] = database_url
    return env


def _cli(env: dict[str, str], *args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(vault_group, ["keys", *args], env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
        return json.loads(result.output)
    assert result.exit_code != 0, result.output
    return result.output


def _runtime(data_dir: Path, database_url: str | None) -> VaultRuntime:
    return build_vault_runtime(
        VaultSettings(data_dir=data_dir, database_url=database_url), clock=SystemClock()
    )


def _store_cards(runtime: VaultRuntime) -> None:
    actor = Actor("system", "test")
    holder = KeyHolder("key_a", A, False, frozenset())
    for number in ("4242424242424242", "5555555555554444", "378282246310005"):
        cvc = "7319" if number.startswith("37") else "123"
        tokens.tokenize(
            runtime, holder, number=number, exp_month="12", exp_year="2031", cvc=cvc, actor=actor
        )
    for test_card in ("pm_card_visa", "pm_card_mastercard"):
        tokens.create_test_card(runtime, B, test_card, actor=actor)


def _kek(status: dict[str, Any]) -> dict[int, tuple[int, int]]:
    return {
        entry["version"]: (entry["protects_data_keys"], entry["protects_records"])
        for entry in status["kek_versions"]
    }


def _deks(status: dict[str, Any], merchant: str) -> dict[int, dict[str, Any]]:
    return {
        entry["version"]: entry for entry in status["data_keys"] if entry["merchant_id"] == merchant
    }


def _all_cards_decrypt(data_dir: Path, database_url: str | None) -> list[str]:
    """A new process's view: a fresh runtime opens every stored card number."""
    runtime = _runtime(data_dir, database_url)
    try:
        with runtime.db.engine.connect() as conn:
            cards = conn.execute(select(Card.merchant_id, Card.id, Card.last4)).all()
        opened = []
        for merchant, card_id, last4 in cards:
            record = runtime.records.get(merchant, card_id, Purpose.PAN)
            assert record is not None
            assert runtime.keyring.open_pan(record).last4 == last4
            opened.append(card_id)
        return opened
    finally:
        runtime.close()


def test_rotation_through_the_cli(tmp_path: Path, database_url: str | None) -> None:
    runtime = _runtime(tmp_path, database_url)
    _store_cards(runtime)
    runtime.close()
    env = _env(tmp_path, database_url, grace=300)

    # 2 data keys (one per merchant) under KEK v1, protecting 3 PANs + 3 CVCs + 2 PANs.
    status = _cli(env, "status")
    assert _kek(status) == {1: (2, 8)}
    assert {version: d["protects_records"] for version, d in _deks(status, A).items()} == {1: 6}
    assert _cli(env, "status", "--merchant", B)["data_keys"][0]["protects_records"] == 2

    # KEK rotation: every data key rewrapped under v2; v1 protects nothing but still exists.
    rotated = _cli(env, "rotate", "--kek")
    assert (rotated["kek_version"], rotated["rewrap"]["rewrapped"]) == (2, 2)
    assert rotated["rewrap"]["remaining"] == 0
    assert _kek(_cli(env, "status")) == {1: (0, 0), 2: (2, 8)}
    assert "wait" in _cli(env, "retire", "--kek-version", "1", ok=False)  # grace period
    assert "active" in _cli(env, "retire", "--kek-version", "2", ok=False)

    env = _env(tmp_path, database_url, grace=0)
    assert _cli(env, "retire", "--kek-version", "1") == {"retired_kek_version": 1}
    assert _kek(_cli(env, "status")) == {2: (2, 8)}
    key_file = json.loads((tmp_path / "vault" / "keys" / "kek.json").read_text())
    assert [entry["version"] for entry in key_file["versions"]] == [2]  # v1's key is gone

    # DEK rotation: A's records re-encrypted under v2; v1 then destroyed; B untouched.
    rotated = _cli(env, "rotate", "--dek", "--merchant", A)
    assert rotated["dek_version"] == 2
    assert (rotated["reencrypt"]["moved"], rotated["reencrypt"]["remaining"]) == (6, {})
    deks = _deks(_cli(env, "status", "--merchant", A), A)
    assert (deks[1]["protects_records"], deks[2]["protects_records"]) == (0, 6)
    assert deks[2]["active"] and not deks[1]["active"]
    assert _cli(env, "retire", "--merchant", A)["destroyed_versions"] == [1]
    status = _cli(env, "status")
    retired = _deks(status, A)[1]
    assert retired["destroyed_at"] is not None
    assert (retired["kek_version"], retired["protects_records"]) == (None, 0)
    assert {v: d["protects_records"] for v, d in _deks(status, B).items()} == {1: 2}

    # The retired DEK protects nothing: no key material left, and every card still decrypts.
    runtime = _runtime(tmp_path, database_url)
    try:
        with runtime.db.engine.connect() as conn:
            wrapped = conn.execute(
                text("SELECT wrapped FROM vault_data_keys WHERE merchant_id = :m AND version = 1"),
                {"m": A},
            ).scalar_one()
            events = conn.execute(
                text("SELECT action, outcome, actor_id FROM audit_staged ORDER BY pk")
            ).all()
    finally:
        runtime.close()
    assert wrapped is None
    assert len(_all_cards_decrypt(tmp_path, database_url)) == 5

    actions = [(action, outcome) for action, outcome, _ in events]
    for expected in (
        ("vault.keys.status", "success"),
        ("vault.keys.rotate_kek", "success"),
        ("vault.keys.rewrap", "success"),
        ("vault.keys.retire_kek", "failure"),
        ("vault.keys.retire_kek", "success"),
        ("vault.keys.rotate_dek", "success"),
        ("vault.keys.reencrypt", "success"),
        ("vault.keys.destroy_dek", "success"),
    ):
        assert expected in actions
    operators = {actor for action, _, actor in events if action.startswith("vault.keys.")}
    assert len(operators) == 1 and operators.pop().startswith("os:")


def test_rotate_needs_exactly_one_key_level(tmp_path: Path) -> None:
    env = _env(tmp_path, None, grace=0)
    for args in (("rotate",), ("rotate", "--kek", "--dek"), ("rotate", "--dek")):
        result = CliRunner().invoke(vault_group, ["keys", *args], env=env)
        assert result.exit_code == 2, result.output
    assert not (tmp_path / "vault.db").exists()  # refused before anything was touched


def test_the_pkcs11_backend_is_chosen_by_the_environment(tmp_path: Path) -> None:
    hsm = softhsm()  # skips without SoftHSM2, fails under BASTIONPAY_REQUIRE_SERVICES=1
    env = {
        **_env(tmp_path, None, grace=0),
        "BASTIONPAY_VAULT_KEK_BACKEND": "pkcs11",
        "BASTIONPAY_PKCS11_MODULE": hsm.module,
        "BASTIONPAY_PKCS11_TOKEN_LABEL": TOKEN,
        "BASTIONPAY_PKCS11_PIN": PIN,
        "BASTIONPAY_PKCS11_KEY_LABEL_PREFIX": hsm.prefix(),
    }
    rotated = _cli(env, "rotate", "--kek")
    assert rotated["kek_version"] == 2
    status = _cli(env, "status")
    assert status["kek_backend"] == "pkcs11"
    assert [entry["non_extractable"] for entry in status["kek_versions"]] == [True, True]
    assert not (tmp_path / "vault" / "keys" / "kek.json").exists()  # no key file at all
    assert PIN not in json.dumps(status)
