"""Vault key management by operators (SECURITY-REQUIREMENTS C4, I3, I5; issue 4 item 3).

A real vault on 127.0.0.1 (mutual TLS) behind the api: only an operator holding `vault:keys`
(platform role `security_officer`) may see key status, rotate or retire keys, rotating and retiring
need a fresh second factor, and the vault's own audit log names the operator, not the api.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient
from tests.conftest import api_client
from tests.functional.helpers import operator_session
from tests.functional.test_vault_support import (
    VaultEnv,
    api_runtime_for,
    close_api_runtime,
    tokenize,
    vault_env,
)

from bastionpay import bootstrap
from bastionpay.db.uow import unit_of_work
from bastionpay.runtime import Runtime

__all__ = ["vault_env"]


@pytest.fixture(scope="module")
def chain(vault_env: VaultEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    runtime = api_runtime_for(vault_env, tmp_path_factory.mktemp("api-keyops"))
    yield runtime
    close_api_runtime(runtime)


@pytest.fixture(scope="module")
def client(chain: Runtime) -> Iterator[TestClient]:
    with api_client(chain, None) as anonymous:
        yield anonymous


def _vault_actors(env: VaultEnv, action: str) -> list[tuple[str, str]]:
    env.server.worker.flush()
    with env.runtime.db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT actor_type, actor_id FROM audit_entries WHERE action = :a ORDER BY seq"),
            {"a": action},
        ).all()
    return [(row[0], row[1]) for row in rows]


def _api_actions(runtime: Runtime, user_id: str) -> list[str]:
    with unit_of_work(runtime.db, write=False) as session:
        rows = session.execute(
            text("SELECT action FROM audit_staged WHERE actor_id = :u"), {"u": user_id}
        ).all()
    return [row[0] for row in rows]


def test_security_officer_rotates_a_data_key_and_the_vault_names_them(
    chain: Runtime, client: TestClient, vault_env: VaultEnv
) -> None:
    shop: dict[str, Any] = bootstrap.create_merchant_with_keys(chain, "Key ops shop")
    officer = operator_session(chain, "security_officer", None, mfa_at=chain.clock.now())
    status = client.get(f"/v1/vault/keys?merchant={shop['id']}", headers=officer.headers())
    assert status.status_code == 200, status.text
    assert status.json()["object"] == "vault.key_status"
    rotated = client.post(
        "/v1/vault/keys/rotate",
        data={"kind": "dek", "merchant": shop["id"]},
        headers=officer.headers(),
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["object"] == "vault.key_operation"
    # The vault's log names the operator the api vouched for, for status and rotation (C4, L1).
    assert ("operator", officer.user_id) in _vault_actors(vault_env, "vault.keys.rotate_dek")
    assert ("operator", officer.user_id) in _vault_actors(vault_env, "vault.keys.status")
    # And the api's own log has the request (L1).
    assert {"vault.keys.status", "vault.keys.rotate"} <= set(_api_actions(chain, officer.user_id))


def test_retiring_a_key_still_in_use_is_refused_in_the_api_error_shape(
    chain: Runtime, client: TestClient
) -> None:
    officer = operator_session(chain, "security_officer", None, mfa_at=chain.clock.now())
    status = client.get("/v1/vault/keys", headers=officer.headers()).json()
    active = status["kek_active_version"]
    assert isinstance(active, int)
    # The active KEK wraps every live data key: retiring it would destroy them all.
    refused = client.post(
        "/v1/vault/keys/retire", data={"kek_version": str(active)}, headers=officer.headers()
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "key_operation_refused"


def test_key_operations_need_the_permission_and_a_fresh_factor(
    chain: Runtime, client: TestClient
) -> None:
    shop: dict[str, Any] = bootstrap.create_merchant_with_keys(chain, "Key ops denied")
    stale = operator_session(chain, "security_officer", None, mfa_at=chain.clock.now() - 3600)
    refused = client.post("/v1/vault/keys/rotate", data={"kind": "kek"}, headers=stale.headers())
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "step_up_required"
    # Reading the status is not sensitive enough for step-up, but still needs the permission.
    assert client.get("/v1/vault/keys", headers=stale.headers()).status_code == 200
    for role, account in (("owner", shop["id"]), ("platform_admin", shop["id"])):
        operator = operator_session(chain, role, shop["id"], mfa_at=chain.clock.now())
        denied = client.post(
            "/v1/vault/keys/rotate",
            data={"kind": "dek", "merchant": shop["id"]},
            headers=operator.headers(account),
        )
        assert denied.status_code == 403, (role, denied.text)
        assert denied.json()["error"]["code"] == "insufficient_permissions"
    with api_client(chain, shop["secret_key"]) as api:
        # A merchant's secret key never holds vault:keys.
        assert api.post("/v1/vault/keys/rotate", data={"kind": "kek"}).status_code == 403


def test_a_publishable_key_made_over_v1_works_in_the_hosted_fields_until_revoked(
    chain: Runtime, client: TestClient, vault_env: VaultEnv
) -> None:
    """`POST /v1/api_keys type=publishable` registers the key with the vault in the same unit of
    work; `DELETE` revokes it there too (issue 4, item 1; I7)."""
    shop: dict[str, Any] = bootstrap.create_merchant_with_keys(chain, "Key ops publishable")
    owner = operator_session(chain, "owner", shop["id"], mfa_at=chain.clock.now())
    created = client.post("/v1/api_keys", data={"type": "publishable"}, headers=owner.headers())
    assert created.status_code == 200, created.text
    key = created.json()
    assert tokenize(vault_env, key["secret"], "4242424242424242", origin=None).status_code == 200
    revoked = client.delete(f"/v1/api_keys/{key['id']}", headers=owner.headers())
    assert revoked.status_code == 200, revoked.text
    assert tokenize(vault_env, key["secret"], "4242424242424242", origin=None).status_code == 401


def test_operators_do_not_share_idempotency_keys_on_platform_routes(
    chain: Runtime, client: TestClient
) -> None:
    """Platform routes have no merchant account: each operator has their own key space (P1), so
    one officer's Idempotency-Key never replays another officer's answer."""
    shop: dict[str, Any] = bootstrap.create_merchant_with_keys(chain, "Key ops idempotency")
    form = {"kind": "dek", "merchant": shop["id"], "complete": "false"}
    answers = []
    for _ in range(2):
        officer = operator_session(chain, "security_officer", None, mfa_at=chain.clock.now())
        headers = officer.headers() | {"Idempotency-Key": "rotate-shop-dek"}
        first = client.post("/v1/vault/keys/rotate", data=form, headers=headers)
        again = client.post("/v1/vault/keys/rotate", data=form, headers=headers)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert "idempotent-replayed" not in first.headers
        assert again.headers.get("idempotent-replayed") == "true"  # the same officer: a replay
        answers.append(first.json()["result"])
    # Two officers: two rotations, not one answer replayed to the second.
    assert answers[0] != answers[1]
