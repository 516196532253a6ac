"""API keys (I7), permissions (I5) and tenant/mode isolation."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import select, text
from starlette.testclient import TestClient
from tests.conftest import api_client
from tests.functional.helpers import pay

from bastionpay import bootstrap
from bastionpay.db.uow import unit_of_work
from bastionpay.merchants import service as merchants
from bastionpay.merchants.models import ApiKey
from bastionpay.runtime import Runtime


def _issue(
    runtime: Runtime,
    merchant_id: str,
    kind: str,
    *,
    live: bool = False,
    permissions: frozenset[str] | None = None,
) -> tuple[str, str]:
    with unit_of_work(runtime.db, write=True) as session:
        issued = merchants.issue_key(
            session,
            runtime.api_keys,
            merchant_id=merchant_id,
            kind=kind,
            livemode=live,
            now=runtime.clock.now(),
            permissions=permissions,
        )
        return issued.record.id, issued.plaintext


def test_missing_bad_and_revoked_keys_are_401(runtime: Runtime, merchant: dict[str, Any]) -> None:
    with api_client(runtime, None) as anonymous:
        missing = anonymous.get("/v1/balance")
        assert missing.status_code == 401
        bad = anonymous.get("/v1/balance", headers={"Authorization": "Bearer sk_test_nope1234"})
        assert bad.status_code == 401
        assert "nope1234" not in bad.text[:-20] or "****" in bad.text
        key_id, key = _issue(runtime, merchant["id"], "secret")
        basic = base64.b64encode(f"{key}:".encode()).decode()
        assert (
            anonymous.get("/v1/balance", headers={"Authorization": f"Basic {basic}"}).status_code
            == 200
        )
        with unit_of_work(runtime.db, write=True) as session:
            merchants.revoke_key(session, key_id, runtime.clock.now())
        revoked = anonymous.get("/v1/balance", headers={"Authorization": f"Bearer {key}"})
        assert revoked.status_code == 401
        assert revoked.json()["error"]["message"] == bad.json()["error"]["message"].replace(
            "sk_test_************1234", f"sk_test_************{key[-4:]}"
        )


def test_keys_are_stored_only_as_keyed_hashes(runtime: Runtime, merchant: dict[str, Any]) -> None:
    with unit_of_work(runtime.db, write=False) as session:
        rows = session.scalars(select(ApiKey).where(ApiKey.merchant_id == merchant["id"])).all()
        dump = " ".join(
            str(v) for row in session.execute(text("SELECT * FROM api_keys")).all() for v in row
        )
    assert len(rows) == 2
    assert merchant["secret_key"] not in dump
    assert merchant["secret_key"][8:] not in dump
    assert all(len(row.key_hash) == 64 for row in rows)
    assert {row.redacted[-4:] for row in rows} == {
        merchant["secret_key"][-4:],
        merchant["publishable_key"][-4:],
    }


def test_last_used_is_recorded(runtime: Runtime, api: TestClient, merchant: dict[str, Any]) -> None:
    api.get("/v1/balance")
    with unit_of_work(runtime.db, write=False) as session:
        used = session.scalar(
            select(ApiKey.last_used_at).where(
                ApiKey.merchant_id == merchant["id"], ApiKey.kind == "secret"
            )
        )
    assert used is not None


def test_publishable_key_cannot_use_the_secret_api(
    runtime: Runtime, merchant: dict[str, Any]
) -> None:
    with api_client(runtime, merchant["publishable_key"]) as api:
        response = pay(api)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "secret_key_required"


def test_restricted_key_gets_only_its_permissions(
    runtime: Runtime, merchant: dict[str, Any]
) -> None:
    _, key = _issue(runtime, merchant["id"], "restricted", permissions=frozenset({"payments:read"}))
    assert key.startswith("rk_test_")
    with api_client(runtime, key) as api:
        assert api.get("/v1/payment_intents").status_code == 200
        denied = pay(api)
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "insufficient_permissions"
        assert api.get("/v1/customers").status_code == 403


def test_one_merchant_never_sees_another_merchants_objects(
    runtime: Runtime, api: TestClient
) -> None:
    intent = pay(api).json()
    customer = api.post("/v1/customers", data={"email": "a@example.com"}).json()
    other = bootstrap.create_merchant_with_keys(runtime, "other")
    with api_client(runtime, other["secret_key"]) as theirs:
        for path in (
            f"/v1/payment_intents/{intent['id']}",
            f"/v1/charges/{intent['latest_charge']}",
            f"/v1/customers/{customer['id']}",
            f"/v1/payment_methods/{intent['payment_method']}",
        ):
            response = theirs.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "resource_missing"
        assert theirs.post(f"/v1/payment_intents/{intent['id']}/cancel").status_code == 404
        assert theirs.post("/v1/refunds", data={"payment_intent": intent["id"]}).status_code == 404
        assert theirs.get("/v1/payment_intents").json()["data"] == []
        cursor = theirs.get("/v1/payment_intents", params={"starting_after": intent["id"]})
        assert cursor.status_code == 404


def test_test_and_live_mode_are_separate_worlds(
    runtime: Runtime, api: TestClient, merchant: dict[str, Any]
) -> None:
    intent = pay(api).json()
    _, live_key = _issue(runtime, merchant["id"], "secret", live=True)
    assert live_key.startswith("sk_live_")
    with api_client(runtime, live_key) as live:
        assert live.get(f"/v1/payment_intents/{intent['id']}").status_code == 404
        assert live.get("/v1/payment_intents").json()["data"] == []
        magic = pay(live)
        assert magic.status_code == 400
        assert magic.json()["error"]["code"] == "resource_missing"
        balance = live.get("/v1/balance").json()
        assert balance["livemode"] is True
        assert balance["pending"][0]["amount"] == 0


def test_restricted_key_cannot_read_customers_through_expand(
    runtime: Runtime, api: TestClient, merchant: dict[str, Any]
) -> None:
    """Security review M1: expanding an object needs that object's own permission."""
    customer = api.post("/v1/customers", data={"email": "pii@example.com"}).json()
    intent = pay(api, customer=customer["id"]).json()
    _, key = _issue(runtime, merchant["id"], "restricted", permissions=frozenset({"payments:read"}))
    with api_client(runtime, key) as restricted:
        assert restricted.get(f"/v1/payment_intents/{intent['id']}").status_code == 200
        for expand in ("customer", "payment_method"):
            response = restricted.get(
                f"/v1/payment_intents/{intent['id']}", params={"expand[]": expand}
            )
            assert response.status_code == 403, expand
            assert "pii@example.com" not in response.text
        listed = restricted.get("/v1/payment_intents", params={"expand[]": "data.customer"})
        assert listed.status_code == 403
        ok = restricted.get(
            f"/v1/payment_intents/{intent['id']}", params={"expand[]": "latest_charge"}
        )
        assert ok.status_code == 200
        assert ok.json()["latest_charge"]["id"] == intent["latest_charge"]
