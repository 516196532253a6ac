"""Third-party apps end to end (SECURITY-REQUIREMENTS I5, I6, I7): a merchant owner registers an
app over `/v1/apps` (step-up), the app gets a token with Authlib's client, `/v1` honours exactly its
scopes, revoking the app ends it, and the token endpoint is rate limited per address."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from authlib.integrations.httpx_client import OAuth2Client
from starlette.testclient import TestClient
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import operator_session

from bastionpay import bootstrap
from bastionpay.api.app import create_app
from bastionpay.runtime import Runtime

BASE = "https://localhost"


@pytest.fixture
def rt(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(db_url, tmp_path, public_url=BASE, rate_limit_oauth_ip="5/minute")
    yield runtime
    runtime.db.dispose()


def _oauth(rt: Runtime, client_id: str, secret: str, scope: str) -> OAuth2Client:
    transport: Any = TestClient(create_app(rt), base_url=BASE)._transport
    return OAuth2Client(
        client_id=client_id,
        client_secret=secret,
        scope=scope,
        token_endpoint_auth_method="client_secret_basic",
        transport=transport,
    )


def test_owner_registers_an_app_whose_token_has_exactly_its_scopes(rt: Runtime) -> None:
    shop = bootstrap.create_merchant_with_keys(rt, "App shop")
    stale = operator_session(rt, "owner", shop["id"], mfa_at=None)
    owner = operator_session(rt, "owner", shop["id"], mfa_at=rt.clock.now())
    form = {
        "name": "Bookkeeping",
        "redirect_uris[0]": "https://books.example.test/cb",
        "scopes[0]": "payments:read",
    }
    with api_client(rt, None) as client:
        # Registering returns a secret: a sensitive action (I3).
        refused = client.post("/v1/apps", data=form, headers=stale.headers())
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "step_up_required"
        created = client.post("/v1/apps", data=form, headers=owner.headers())
        assert created.status_code == 200, created.text
        app = created.json()
        assert app["client_secret"].startswith("bpcs_")
        listed = client.get("/v1/apps", headers=owner.headers()).json()["data"]
        assert [a["id"] for a in listed] == [app["id"]]
        assert all("client_secret" not in a for a in listed)  # shown once (I7)

    token = _oauth(rt, app["id"], app["client_secret"], "payments:read").fetch_token(
        f"{BASE}/oauth/token", grant_type="client_credentials"
    )["access_token"]
    with api_client(rt, token) as as_app:
        assert as_app.get("/v1/payment_intents").status_code == 200
        # Out of scope: 403, and nothing created.
        denied = as_app.post("/v1/customers", data={"email": "x@example.test"})
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "insufficient_permissions"
        # Apps never manage keys, staff or other apps (I7).
        assert as_app.post("/v1/api_keys", data={"type": "secret"}).status_code == 403

    with api_client(rt, None) as client:
        revoked = client.delete(f"/v1/apps/{app['id']}", headers=owner.headers())
        assert revoked.status_code == 200, revoked.text
    with api_client(rt, token) as as_app:
        assert as_app.get("/v1/payment_intents").status_code == 401


def test_another_merchants_app_is_not_found(rt: Runtime) -> None:
    mine = bootstrap.create_merchant_with_keys(rt, "Mine")
    theirs = bootstrap.create_merchant_with_keys(rt, "Theirs")
    their_owner = operator_session(rt, "owner", theirs["id"], mfa_at=rt.clock.now())
    my_owner = operator_session(rt, "owner", mine["id"], mfa_at=rt.clock.now())
    with api_client(rt, None) as client:
        app = client.post(
            "/v1/apps",
            data={
                "name": "Theirs",
                "redirect_uris[0]": "https://t.example.test/cb",
                "scopes[0]": "payments:read",
            },
            headers=their_owner.headers(),
        ).json()
        gone = client.delete(f"/v1/apps/{app['id']}", headers=my_owner.headers())
        assert gone.status_code == 404


def test_token_endpoint_is_rate_limited_per_address(rt: Runtime) -> None:
    with TestClient(create_app(rt), base_url=BASE) as client:
        answers = [
            client.post("/oauth/token", data={"grant_type": "client_credentials"}).status_code
            for _ in range(6)
        ]
    # Five refusals for bad credentials (401/400), then the limit (T4): 429 with Retry-After.
    assert all(code in (400, 401) for code in answers[:5]), answers
    assert answers[5] == 429
