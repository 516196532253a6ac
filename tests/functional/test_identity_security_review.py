"""Security review of the identity issue (issue 5): each test is an attack that must fail.

Tests marked `xfail(strict=True)` prove a weakness whose fix lies outside the identity/OAuth
packages (the lead's `identity/views.py`, `api/pipeline.py` …): they pass once it is fixed, and
the strict marker then turns them red so the marker is removed. The others are regression tests
for weaknesses fixed in `identity/` or `oauth/` (SECURITY-REQUIREMENTS I2, I3, I5, I6).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import OperatorSession, operator_session
from tests.functional.test_identity_web import (
    PASSWORD,
    audit_actions,
    get_page,
    location,
    make_user,
    next_code,
    password_step,
)

from bastionpay import bootstrap
from bastionpay.db.uow import unit_of_work
from bastionpay.edge.headers import SecurityHeaders
from bastionpay.identity.models import User
from bastionpay.identity.web import core as web_core
from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.errors import PermissionDenied
from bastionpay.oauth import clients as oauth_clients
from bastionpay.runtime import Runtime

T0 = 1_800_000_000
BASE = "https://localhost"


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture(scope="module")
def rt(
    db_url: str, tmp_path_factory: pytest.TempPathFactory, clock: FrozenClock
) -> Iterator[Runtime]:
    runtime = make_runtime(
        db_url,
        tmp_path_factory.mktemp("identity-review"),
        clock=clock,
        public_url=BASE,
        rate_limit_login_ip="10000/minute",
    )
    yield runtime
    runtime.db.dispose()


@pytest.fixture(scope="module")
def app(rt: Runtime) -> SecurityHeaders:
    from bastionpay.api.app import create_app

    mounted = create_app(rt)
    assert isinstance(mounted, SecurityHeaders)
    return mounted


def _browser(app: SecurityHeaders) -> TestClient:
    return TestClient(app, base_url=BASE, follow_redirects=False)


def _merchant(rt: Runtime, name: str) -> str:
    return str(bootstrap.create_merchant_with_keys(rt, name)["id"])


def _fresh(rt: Runtime, role: str, merchant_id: str) -> OperatorSession:
    """An operator whose session proved a second factor just now (step-up satisfied)."""
    return operator_session(rt, role, merchant_id, mfa_at=rt.clock.now())


# --- I5: no operator hands out more than their role holds ----------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason=(
        "identity/views.py create_key: an unrestricted secret key holds every merchant "
        "permission, so a developer or admin (keys:manage) mints a key with refunds:write / "
        "audit:read their role lacks (I5, PCI 10.3.1)"
    ),
)
@pytest.mark.parametrize("role", ["developer", "admin"])
def test_operator_cannot_mint_a_secret_key_stronger_than_their_role(
    rt: Runtime, role: str
) -> None:
    merchant_id = _merchant(rt, f"Review keys {role}")
    operator = _fresh(rt, role, merchant_id)
    assert "audit:read" not in operator.permissions
    with api_client(rt, None) as client:
        created = client.post("/v1/api_keys", data={"type": "secret"}, headers=operator.headers())
    if created.status_code != 200:
        assert created.status_code == 403
        return
    # The key was issued: it must not read the audit log the role may not read.
    with api_client(rt, created.json()["secret"]) as api:
        assert api.get("/v1/audit_events").status_code == 403


@pytest.mark.xfail(
    strict=True,
    reason=(
        "identity/views.py register_app does not bound the app's scopes by the registering "
        "operator's permissions; client_credentials then yields a token with those scopes "
        "(principals.token_caller allows MERCHANT_PERMISSIONS for app-only tokens) (I5, I6)"
    ),
)
def test_developer_cannot_give_an_app_scopes_beyond_their_role(rt: Runtime) -> None:
    merchant_id = _merchant(rt, "Review apps")
    developer = _fresh(rt, "developer", merchant_id)
    assert not {"audit:read", "refunds:write"} & developer.permissions
    with api_client(rt, None) as client:
        registered = client.post(
            "/v1/apps",
            data={
                "name": "Escalation",
                "redirect_uris[0]": "https://app.example/callback",
                "scopes[0]": "audit:read",
                "scopes[1]": "refunds:write",
            },
            headers=developer.headers(),
        )
        if registered.status_code != 200:
            assert registered.status_code in (400, 403), registered.text
            return
        app = registered.json()
        basic = base64.b64encode(f"{app['id']}:{app['client_secret']}".encode()).decode()
        token = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert token.status_code == 200, token.text
        access = token.json()["access_token"]
        audit = client.get("/v1/audit_events", headers={"Authorization": f"Bearer {access}"})
    assert audit.status_code == 403


def test_register_client_refuses_scopes_beyond_the_registrant(rt: Runtime) -> None:
    """The OAuth side of the rule above: given the registrant's permissions, `register_client`
    refuses scopes outside them (the `/v1/apps` view must pass `call.caller.permissions`)."""
    merchant_id = _merchant(rt, "Review apps service")
    developer = _fresh(rt, "developer", merchant_id)
    with unit_of_work(rt.db, write=True) as s, pytest.raises(PermissionDenied):
        oauth_clients.register_client(
            s,
            rt.identity_keys,
            merchant_id=merchant_id,
            name="Escalation",
            redirect_uris=["https://app.example/callback"],
            public=False,
            scopes=["payments:read", "audit:read"],
            now=rt.clock.now(),
            actor_id=developer.user_id,
            grantor_permissions=developer.permissions,
        )


# --- I3: step-up cannot be side-stepped ----------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason=(
        "identity/views.py: POST /v1/invitations has no step_up; a stolen session without a "
        "fresh second factor invites an attacker-controlled owner/admin, which is a role grant "
        "that step-up protects on POST /v1/users/{id} (I3)"
    ),
)
def test_inviting_staff_needs_step_up(rt: Runtime) -> None:
    merchant_id = _merchant(rt, "Review invitations")
    stale = operator_session(rt, "owner", merchant_id, mfa_at=None)
    with api_client(rt, None) as client:
        answer = client.post(
            "/v1/invitations",
            data={"email": "attacker@evil.example", "role": "owner"},
            headers=stale.headers(),
        )
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "step_up_required"


# --- I2/I3: guessing the second factor locks the account like guessing the password ------------


def _wrong_code(secret: str, now: int) -> str:
    valid = {pyotp.TOTP(secret).at(now + drift) for drift in (-30, 0, 30)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def _user_row(rt: Runtime, user_id: str) -> User:
    with unit_of_work(rt.db, write=False) as s:
        return s.scalars(select(User).where(User.id == user_id)).one()


def _mfa_guesses(client: TestClient, secret: str, now: int, count: int) -> list[int]:
    form = get_page(client, "/login/mfa").form("/login/mfa", factor="totp")
    form["code"] = _wrong_code(secret, now)
    return [client.post("/login/mfa", data=form).status_code for _ in range(count)]


def test_second_factor_guessing_locks_the_account(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attacker who knows the password guesses TOTP codes. The per-user attempt limit
    (5 per 5 minutes) only slows them to ~1,440 guesses a day (~0.4 % a day against ±1 step);
    waiting it out is simulated by lifting it. Logging in again with the password must not
    reset the count: the 10th consecutive failed proof locks the account (I2, PCI DSS 8.3.4)."""
    monkeypatch.setattr(web_core, "MFA_USER_LIMIT", "100000/minute")
    person = make_user(rt)
    assert person.secret is not None
    threshold = rt.settings.lockout_threshold
    first = threshold // 2
    with _browser(app) as client:
        assert password_step(client, person.email) == "/login/mfa"
        assert _mfa_guesses(client, person.secret, clock.now(), first) == [401] * first
    with _browser(app) as client:
        assert password_step(client, person.email) == "/login/mfa"
        form = get_page(client, "/login/mfa").form("/login/mfa", factor="totp")
        form["code"] = _wrong_code(person.secret, clock.now())
        for _ in range(threshold - first):
            assert client.post("/login/mfa", data=form).status_code == 401
        # Locked: the half-finished login is over, and the right code no longer completes it.
        form["code"] = next_code(clock, person.secret)
        answer = client.post("/login/mfa", data=form)
        assert location(answer).startswith("/login") and location(answer) != "/login/mfa"
        assert location(client.get("/account")).startswith("/login")
    row = _user_row(rt, person.id)
    assert row.locked_until is not None and row.locked_until > clock.now()
    assert "identity.login.locked" in audit_actions(rt, person.id)
    # The password alone cannot start a new attempt while the lock lasts.
    with _browser(app) as client:
        form = get_page(client, "/login").form("/login")
        form.update(email=person.email, password=PASSWORD)
        assert client.post("/login", data=form).status_code == 401


def test_a_locked_account_cannot_step_up_even_with_the_right_code(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    """A stolen active session keeps guessing at `/account/step-up`: once the account is locked,
    even the right code proves nothing until the lock ends (I2, I3)."""
    person = make_user(rt)
    assert person.secret is not None
    with _browser(app) as client:
        assert password_step(client, person.email) == "/login/mfa"
        form = get_page(client, "/login/mfa").form("/login/mfa", factor="totp")
        form["code"] = next_code(clock, person.secret)
        assert location(client.post("/login/mfa", data=form)) == "/account"
        with unit_of_work(rt.db, write=True) as s:
            user = s.scalars(select(User).where(User.id == person.id)).one()
            user.locked_until = clock.now() + rt.settings.lockout_seconds
        step_up = get_page(client, "/account/step-up").form("/account/step-up", factor="totp")
        step_up["code"] = next_code(clock, person.secret)
        assert client.post("/account/step-up", data=step_up).status_code == 401
