"""3-D Secure end to end in one process: the api (ASGI) → vault (real mTLS) → acquirer (ISO 8583).

Issue 4, item 7 and issue 7, item 5. The api app runs over ASGI with `vault_url` set; the vault
and the acquirer run in this process on 127.0.0.1 (`test_vault_support.start_vault`); the
"browser" is httpx against the vault's public listener. Covered: a card that requires
authentication goes to `requires_action` with Stripe's `next_action.redirect_to_url` and nothing
is authorized; the challenge page's headers; success → redirect → the intent is already
`succeeded` (or `requires_capture`) on retrieve, with the ECI at the vault; failure →
`requires_payment_method` with `payment_intent_authentication_failure`; replay and cross-site
posts refused; confirm-again works; a `request_3ds` rule sends any card through 3-D Secure and is
not asked twice; both audit logs; no card number anywhere in the api database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import String, Text, inspect, select, text
from starlette.testclient import TestClient
from tests.conftest import api_client, make_runtime
from tests.functional.test_vault_support import (
    VaultEnv,
    api_runtime_for,
    close_api_runtime,
    start_vault,
)

from bastionpay import bootstrap
from bastionpay.audit.models import AuditStaged
from bastionpay.db.uow import unit_of_work
from bastionpay.jobs import janitor
from bastionpay.kernel.pan import find_pans
from bastionpay.payments.models import Charge
from bastionpay.risk.models import RiskAssessment
from bastionpay.risk.rule_store import MerchantRules
from bastionpay.risk.service import RiskEngine, Scored
from bastionpay.runtime import Runtime
from bastionpay.vault.models import Authorization

RETURN_URL = "https://shop.example/checkout/done?order=42"


class FixedScorer:
    def score(self, features: dict[str, Any]) -> Scored:
        return Scored(12, ["a fixed score for this test"], "test-fixed")


@pytest.fixture(scope="module")
def vault_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultEnv]:
    yield from start_vault(tmp_path_factory.mktemp("vault-3ds"))


@pytest.fixture(scope="module")
def chain(vault_env: VaultEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    base = api_runtime_for(vault_env, tmp_path_factory.mktemp("api-3ds"))
    # Real rules (the merchant's, from the database) with a fixed score.
    engine = RiskEngine(FixedScorer(), MerchantRules(), budget_ms=5000)
    runtime = Runtime(**{**base.__dict__, "risk": engine})
    yield runtime
    close_api_runtime(runtime)


@pytest.fixture
def shop(chain: Runtime) -> dict[str, Any]:
    return bootstrap.create_merchant_with_keys(chain, "3DS shop")


@pytest.fixture
def api(chain: Runtime, shop: dict[str, Any]) -> Iterator[TestClient]:
    with api_client(chain, shop["secret_key"]) as client:
        yield client


def _browser(env: VaultEnv) -> httpx.Client:
    return httpx.Client(
        base_url=env.public_url, verify=env.ca_context(), timeout=15, follow_redirects=False
    )


def _pay(api: TestClient, pm: str = "pm_card_threeDSecure2Required", **extra: str) -> Any:
    data = {
        "amount": "2000",
        "currency": "usd",
        "payment_method": pm,
        "confirm": "true",
        "return_url": RETURN_URL,
        **extra,
    }
    response = api.post("/v1/payment_intents", data=data)
    assert response.status_code == 200, response.text
    return response.json()


def _challenge_path(intent: dict[str, Any], env: VaultEnv) -> str:
    action = intent["next_action"]
    assert action["type"] == "redirect_to_url"
    assert action["redirect_to_url"]["return_url"] == RETURN_URL
    url = str(action["redirect_to_url"]["url"])
    assert url.startswith(f"{env.public_url}/3ds/challenge/")
    return urlsplit(url).path


def _vault_authorizations(env: VaultEnv, merchant: str) -> list[Authorization]:
    with unit_of_work(env.runtime.db, write=False) as session:
        rows = session.scalars(select(Authorization).where(Authorization.merchant_id == merchant))
        return list(rows)


def _api_audit(runtime: Runtime, intent: str) -> list[tuple[str, str, dict[str, Any]]]:
    with unit_of_work(runtime.db, write=False) as session:
        rows = session.scalars(
            select(AuditStaged)
            .where(AuditStaged.action == "payments.payment_intent.authenticate")
            .where(AuditStaged.target_id == intent)
            .order_by(AuditStaged.pk)
        )
        return [(r.action, r.outcome, dict(r.details)) for r in rows]


def test_success_redirects_and_the_intent_is_already_succeeded(
    vault_env: VaultEnv, chain: Runtime, api: TestClient, shop: dict[str, Any]
) -> None:
    intent = _pay(api)
    assert intent["status"] == "requires_action"
    assert intent["latest_charge"] is None
    path = _challenge_path(intent, vault_env)
    assert _vault_authorizations(vault_env, shop["id"]) == []  # nothing sent before 3DS
    with _browser(vault_env) as browser:
        page = browser.get(path)
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp and "form-action 'self' https://shop.example" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        assert "<script" not in page.text and "style=" not in page.text
        assert "Complete authentication" in page.text and "Fail authentication" in page.text
        assert "3220" in page.text and "20.00 USD" in page.text
        done = browser.post(path, data={"result": "complete"})
        assert done.status_code == 303
        target = urlsplit(done.headers["location"])
        assert (target.scheme, target.netloc, target.path) == (
            "https",
            "shop.example",
            "/checkout/done",
        )
        query = parse_qs(target.query)
        assert query["order"] == ["42"]
        assert query["payment_intent"] == [intent["id"]]
        assert query["payment_intent_client_secret"] == [intent["client_secret"]]
        assert query["redirect_status"] == ["succeeded"]
        replay = browser.post(path, data={"result": "complete"})
        assert replay.status_code == 410
        assert browser.get(path).status_code == 410
    # The merchant retrieves the intent after the redirect: already succeeded (Stripe's way).
    after = api.get(f"/v1/payment_intents/{intent['id']}", params={"expand[]": "latest_charge"})
    assert after.status_code == 200, after.text
    body = after.json()
    assert body["status"] == "succeeded"
    assert body["next_action"] is None
    assert body["amount_received"] == 2000
    assert body["latest_charge"]["outcome"]["type"] == "authorized"
    # Exactly one authorization, carrying the 3-D Secure result (ECI 05) to the acquirer.
    (authorization,) = _vault_authorizations(vault_env, shop["id"])
    assert authorization.reference == body["latest_charge"]["id"]
    assert (authorization.status, authorization.three_d_secure_eci) == ("captured", "05")
    # A second retrieve changes nothing.
    assert api.get(f"/v1/payment_intents/{intent['id']}").json()["status"] == "succeeded"
    steps = [(outcome, d["step"]) for _, outcome, d in _api_audit(chain, intent["id"])]
    assert steps == [("success", "challenge"), ("success", "authenticated")]
    vault_actions = {action for action, _, _ in vault_env.audit_actions()}
    assert {
        "vault.three_d_secure.create",
        "vault.three_d_secure.challenge",
        "vault.three_d_secure.complete",
        "vault.three_d_secure.reject",
    } <= vault_actions


def test_failure_returns_the_intent_to_requires_payment_method(
    vault_env: VaultEnv, chain: Runtime, api: TestClient, shop: dict[str, Any]
) -> None:
    intent = _pay(api, "pm_card_authenticationRequired")
    path = _challenge_path(intent, vault_env)
    with _browser(vault_env) as browser:
        done = browser.post(path, data={"result": "fail"})
    assert done.status_code == 303
    assert parse_qs(urlsplit(done.headers["location"]).query)["redirect_status"] == ["failed"]
    body = api.get(f"/v1/payment_intents/{intent['id']}").json()
    assert body["status"] == "requires_payment_method"
    assert body["payment_method"] is None
    assert body["next_action"] is None
    error = body["last_payment_error"]
    assert (error["type"], error["code"]) == (
        "invalid_request_error",
        "payment_intent_authentication_failure",
    )
    assert error["payment_method"]["id"] == intent["payment_method"]
    assert body["latest_charge"] is None
    assert _vault_authorizations(vault_env, shop["id"]) == []
    with unit_of_work(chain.db, write=False) as session:
        charges = session.scalars(select(Charge).where(Charge.payment_intent_id == intent["id"]))
        assert list(charges) == []
    steps = [(outcome, d["step"]) for _, outcome, d in _api_audit(chain, intent["id"])]
    assert steps == [("success", "challenge"), ("failure", "failed")]
    # The merchant can try again with another card.
    retry = api.post(
        f"/v1/payment_intents/{intent['id']}/confirm", data={"payment_method": "pm_card_visa"}
    )
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "succeeded"


def test_cross_site_posts_are_refused_and_the_challenge_stays_usable(
    vault_env: VaultEnv, api: TestClient
) -> None:
    intent = _pay(api, capture_method="manual")
    path = _challenge_path(intent, vault_env)
    with _browser(vault_env) as browser:
        forged = browser.post(
            path, data={"result": "complete"}, headers={"Origin": "https://evil.example"}
        )
        assert forged.status_code == 403
        fetched = browser.post(
            path, data={"result": "complete"}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert fetched.status_code == 403
        assert browser.post(path, data={"result": "maybe"}).status_code == 400
        assert browser.get("/3ds/challenge/not-a-real-challenge").status_code == 404
        own_origin = {"Origin": vault_env.public_url, "Sec-Fetch-Site": "same-origin"}
        done = browser.post(path, data={"result": "complete"}, headers=own_origin)
        assert done.status_code == 303
    # Confirming again (Stripe's other way back) finishes it too; manual capture holds it.
    again = api.post(f"/v1/payment_intents/{intent['id']}/confirm")
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "requires_capture"
    captured = api.post(f"/v1/payment_intents/{intent['id']}/capture")
    assert captured.json()["status"] == "succeeded"


def test_a_pending_challenge_leaves_the_intent_waiting_and_can_be_abandoned(
    vault_env: VaultEnv, api: TestClient, shop: dict[str, Any]
) -> None:
    intent = _pay(api)
    again = api.get(f"/v1/payment_intents/{intent['id']}").json()
    assert again["status"] == "requires_action"
    assert again["next_action"] == intent["next_action"]
    confirm = api.post(f"/v1/payment_intents/{intent['id']}/confirm")
    assert confirm.json()["status"] == "requires_action"
    # An expired challenge fails the attempt.
    vault_env.clock.advance(vault_env.runtime.settings.three_ds_challenge_ttl_seconds)
    try:
        body = api.get(f"/v1/payment_intents/{intent['id']}").json()
    finally:
        vault_env.clock.advance(-vault_env.runtime.settings.three_ds_challenge_ttl_seconds)
    assert body["status"] == "requires_payment_method"
    assert body["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    assert _vault_authorizations(vault_env, shop["id"]) == []


def test_updating_or_canceling_ends_the_attempt(vault_env: VaultEnv, api: TestClient) -> None:
    intent = _pay(api)
    updated = api.post(f"/v1/payment_intents/{intent['id']}", data={"amount": "2500"})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["status"], updated.json()["next_action"]) == (
        "requires_confirmation",
        None,
    )
    again = api.post(
        f"/v1/payment_intents/{intent['id']}/confirm", data={"return_url": RETURN_URL}
    ).json()
    assert again["status"] == "requires_action"  # a new authentication, for the new amount
    assert again["next_action"] != intent["next_action"]
    canceled = api.post(f"/v1/payment_intents/{intent['id']}/cancel").json()
    assert (canceled["status"], canceled["next_action"]) == ("canceled", None)
    with _browser(vault_env) as browser:
        # The old challenge may still be answered, but nothing will ever use it.
        path = _challenge_path(again, vault_env)
        assert browser.post(path, data={"result": "complete"}).status_code == 303
    assert api.get(f"/v1/payment_intents/{intent['id']}").json()["status"] == "canceled"


def test_a_request_3ds_rule_sends_any_card_through_3ds_once(
    vault_env: VaultEnv, chain: Runtime, api: TestClient
) -> None:
    created = api.post("/v1/radar/rules", data={"rule": "request_3ds if :amount_in_usd: > 100"})
    assert created.status_code == 200, created.text
    intent = _pay(api, "pm_card_visa", amount="15000")
    assert intent["status"] == "requires_action"
    path = _challenge_path(intent, vault_env)
    with _browser(vault_env) as browser:
        assert browser.post(path, data={"result": "complete"}).status_code == 303
    body = api.get(f"/v1/payment_intents/{intent['id']}").json()
    # The rule still matches after 3DS, but request_3ds does not act twice: no loop.
    assert body["status"] == "succeeded", body
    with unit_of_work(chain.db, write=False) as session:
        (assessment,) = session.scalars(
            select(RiskAssessment).where(RiskAssessment.payment_intent_id == intent["id"])
        )
        assert (assessment.action, assessment.outcome) == ("allow", "authorized")
    # Below the rule's amount nothing asks for 3DS.
    assert _pay(api, "pm_card_visa")["status"] == "succeeded"


def test_the_worker_finishes_a_challenge_nobody_retrieved(
    vault_env: VaultEnv, chain: Runtime, api: TestClient
) -> None:
    intent = _pay(api)
    assert janitor.run(chain)["authentications_finished"] == 0  # still waiting: nothing written
    with _browser(vault_env) as browser:
        path = _challenge_path(intent, vault_env)
        assert browser.post(path, data={"result": "complete"}).status_code == 303
    assert janitor.run(chain)["authentications_finished"] == 1
    with unit_of_work(chain.db, write=False) as session:
        status = session.scalar(
            text("SELECT status FROM payment_intents WHERE id = :id"), {"id": intent["id"]}
        )
    assert status == "succeeded"


def test_the_api_database_holds_no_card_number(chain: Runtime, api: TestClient) -> None:
    _pay(api)  # at least one 3DS attempt in the database
    found: list[str] = []
    with chain.db.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            columns = [
                c["name"]
                for c in inspect(conn).get_columns(table)
                if isinstance(c["type"], String | Text) or "JSON" in str(c["type"]).upper()
            ]
            for column in columns:
                for (value,) in conn.execute(text(f'SELECT "{column}" FROM "{table}"')):  # noqa: S608
                    if value is not None and find_pans(str(value)):
                        found.append(f"{table}.{column}")
    assert found == []


def test_the_sandbox_declines_cards_that_need_authentication(tmp_path: Path, db_url: str) -> None:
    runtime = make_runtime(db_url, tmp_path)
    try:
        merchant = bootstrap.create_merchant_with_keys(runtime, "sandbox shop")
        with api_client(runtime, merchant["secret_key"]) as api:
            response = api.post(
                "/v1/payment_intents",
                data={
                    "amount": "2000",
                    "currency": "usd",
                    "payment_method": "pm_card_threeDSecure2Required",
                    "confirm": "true",
                },
            )
    finally:
        runtime.db.dispose()  # its own pool: a leaked PostgreSQL connection fails a later test
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "authentication_required"
