"""The authorization matrix (SECURITY-REQUIREMENTS I5; issue 5 "Done when").

Every `/v1` route × every role × the caller's own merchant and another merchant:
- a role without the route's permission gets 403 `insufficient_permissions`, and nothing happens;
- a role with it gets past authorization (any answer but 401/403);
- another merchant's object is never served or changed: 404 (or 400 when the parameters are
  refused before the lookup), never 2xx.
Zero unexpected allows. Operators act through their session cookie with a CSRF header on writes;
platform roles name the merchant with `Stripe-Account`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.conftest import api_client
from tests.functional.helpers import OperatorSession, operator_session, pay

from bastionpay import bootstrap
from bastionpay.api.app import ENDPOINTS
from bastionpay.api.routing import Endpoint
from bastionpay.db.uow import unit_of_work
from bastionpay.identity.principals import SESSION_COOKIE
from bastionpay.identity.roles import ALL_ROLES, is_platform_role
from bastionpay.kernel.ids import new_id
from bastionpay.merchants import service as merchants
from bastionpay.merchants.permissions import EVERY_PERMISSION
from bastionpay.oauth import clients as oauth_clients
from bastionpay.runtime import Runtime


@dataclass
class World:
    """One merchant's objects, by the path segment that names them."""

    merchant_id: str
    secret_key: str
    ids: dict[str, str]


def _world(runtime: Runtime, name: str) -> World:
    keys = bootstrap.create_merchant_with_keys(runtime, name)
    ids: dict[str, str] = {}
    with api_client(runtime, keys["secret_key"]) as api:
        customer = api.post("/v1/customers", data={"email": "c@example.test"}).json()
        ids["customers"] = customer["id"]
        paid = pay(api, customer=customer["id"]).json()
        ids["payment_intents"] = paid["id"]
        ids["charges"] = paid["latest_charge"]
        ids["payment_methods"] = paid["payment_method"]
        refund = api.post("/v1/refunds", data={"payment_intent": paid["id"], "amount": "100"})
        ids["refunds"] = refund.json()["id"]
        disputed = pay(api, pm="pm_card_createDispute").json()  # Stripe's dispute test card
        ids["disputes"] = api.get("/v1/disputes", params={"payment_intent": disputed["id"]}).json()[
            "data"
        ][0]["id"]
        txns = api.get("/v1/balance_transactions").json()["data"]
        ids["balance_transactions"] = txns[0]["id"]
        rule = api.post("/v1/radar/rules", data={"rule": "review if :amount_in_usd: > 5000"})
        ids["rules"] = rule.json()["id"]
        value_list = api.post(
            "/v1/radar/value_lists",
            data={"alias": f"vip{secrets.token_hex(3)}", "name": "VIP", "item_type": "email"},
        )
        ids["value_lists"] = value_list.json()["id"]
    ids["reviews"] = new_id("prv")  # no open review without risk scoring: absent for everyone
    with unit_of_work(runtime.db, write=True) as session:
        victim_key = merchants.issue_key(
            session,
            runtime.api_keys,
            merchant_id=keys["id"],
            kind="restricted",
            livemode=False,
            now=runtime.clock.now(),
            permissions=frozenset({"payments:read"}),
        )
        ids["api_keys"] = victim_key.record.id
        app, _secret = oauth_clients.register_client(
            session,
            runtime.identity_keys,
            merchant_id=keys["id"],
            name="Matrix app",
            redirect_uris=["https://app.example.test/callback"],
            public=False,
            scopes=["payments:read"],
            now=runtime.clock.now(),
        )
        ids["apps"] = app.client_id
    ids["users"] = operator_session(runtime, "developer", keys["id"]).user_id
    return World(keys["id"], keys["secret_key"], ids)


_SEGMENT_KIND = {
    "payment_intents": "payment_intents",
    "charges": "charges",
    "refunds": "refunds",
    "payment_methods": "payment_methods",
    "customers": "customers",
    "reviews": "reviews",
    "disputes": "disputes",
    "rules": "rules",
    "value_lists": "value_lists",
    "balance_transactions": "balance_transactions",
    "api_keys": "api_keys",
    "apps": "apps",
    "users": "users",
}


def _path(endpoint: Endpoint, world: World) -> str:
    parts = endpoint.path.split("/")
    out = []
    for index, part in enumerate(parts):
        if part == "{id}":
            kind = _SEGMENT_KIND[parts[index - 1]]
            out.append(world.ids[kind])
        else:
            out.append(part)
    return "/".join(out)


def _operator(runtime: Runtime, role: str, merchant_id: str) -> OperatorSession:
    # A fresh second factor: the matrix is about permissions; step-up has its own tests.
    return operator_session(runtime, role, merchant_id, mfa_at=runtime.clock.now())


def _headers(operator: OperatorSession, merchant_id: str) -> dict[str, str]:
    return operator.headers(merchant_id if is_platform_role(operator.role) else None)


@pytest.fixture(scope="module")
def worlds(runtime: Runtime) -> tuple[World, World]:
    return _world(runtime, "Matrix own"), _world(runtime, "Matrix other")


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[TestClient]:
    with api_client(runtime, None) as anonymous:
        yield anonymous


def _send(client: TestClient, endpoint: Endpoint, path: str, headers: dict[str, str]) -> Any:
    return client.request(endpoint.method, path, headers=headers)


def test_every_route_declares_a_known_permission() -> None:
    # I5: a route with no permission, or one nobody can hold, fails here.
    for endpoint in ENDPOINTS:
        assert endpoint.permission in EVERY_PERMISSION, (endpoint.method, endpoint.path)


@pytest.mark.parametrize("role", ALL_ROLES)
def test_role_against_every_route(
    runtime: Runtime, worlds: tuple[World, World], client: TestClient, role: str
) -> None:
    own, other = worlds
    operator = _operator(runtime, role, own.merchant_id)
    unexpected: list[str] = []
    for endpoint in ENDPOINTS:
        allowed = endpoint.permission in operator.permissions
        answer = _send(client, endpoint, _path(endpoint, own), _headers(operator, own.merchant_id))
        where = f"{role} {endpoint.method} {endpoint.path} → {answer.status_code}"
        if allowed and answer.status_code in (401, 403):
            unexpected.append(f"denied: {where} {answer.text[:200]}")
        if not allowed:
            if answer.status_code != 403:
                unexpected.append(f"ALLOWED: {where}")
            elif answer.json()["error"]["code"] != "insufficient_permissions":
                unexpected.append(f"wrong denial: {where} {answer.text[:200]}")
        if "{id}" in endpoint.path:
            # Another merchant's object, with the caller's own credentials and account.
            foreign = _send(
                client, endpoint, _path(endpoint, other), _headers(operator, own.merchant_id)
            )
            expected = (400, 404) if allowed else (403,)
            if foreign.status_code not in expected:
                unexpected.append(
                    f"FOREIGN OBJECT: {role} {endpoint.method} {endpoint.path} → "
                    f"{foreign.status_code} {foreign.text[:200]}"
                )
    assert unexpected == []


def test_merchant_staff_cannot_reach_another_account(
    runtime: Runtime, worlds: tuple[World, World], client: TestClient
) -> None:
    own, other = worlds
    owner = _operator(runtime, "owner", own.merchant_id)
    headers = _headers(owner, own.merchant_id) | {"Stripe-Account": other.merchant_id}
    answer = client.get("/v1/payment_intents", headers=headers)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "account_invalid"


def test_platform_operator_must_name_an_account(
    runtime: Runtime, worlds: tuple[World, World], client: TestClient
) -> None:
    own, _ = worlds
    analyst = _operator(runtime, "risk_analyst", own.merchant_id)
    headers = {"Cookie": f"{SESSION_COOKIE}={analyst.token}"}
    answer = client.get("/v1/payment_intents", headers=headers)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "account_required"
    unknown = client.get(
        "/v1/payment_intents", headers=headers | {"Stripe-Account": new_id("acct")}
    )
    assert unknown.status_code == 403
    assert unknown.json()["error"]["code"] == "account_invalid"


def test_writes_without_the_csrf_header_are_refused(
    runtime: Runtime, worlds: tuple[World, World], client: TestClient
) -> None:
    own, _ = worlds
    developer = _operator(runtime, "developer", own.merchant_id)
    cookie_only = {"Cookie": f"{SESSION_COOKIE}={developer.token}"}
    refused = client.post("/v1/customers", data={"email": "x@example.test"}, headers=cookie_only)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    wrong = client.post(
        "/v1/customers",
        data={"email": "x@example.test"},
        headers=cookie_only | {"X-CSRF-Token": "0" * 43},
    )
    assert wrong.status_code == 403
    accepted = client.post(
        "/v1/customers",
        data={"email": "x@example.test"},
        headers=_headers(developer, own.merchant_id),
    )
    assert accepted.status_code == 200
    # Reads need no CSRF token: they change nothing.
    assert client.get("/v1/customers", headers=cookie_only).status_code == 200


def test_secret_key_cannot_manage_keys_or_users(
    runtime: Runtime, worlds: tuple[World, World]
) -> None:
    own, _ = worlds
    with api_client(runtime, own.secret_key) as api:
        # I7: a leaked secret key cannot mint more keys or change staff.
        assert api.post("/v1/api_keys", data={"type": "secret"}).status_code == 403
        assert api.get("/v1/users").status_code == 403
