"""Security review of the identity issue (issue 5): each test is an attack that must fail.

Each was first written as a failing test proving the weakness, then kept as the regression test
of its fix (SECURITY-REQUIREMENTS I2, I3, I5, I6, I7): secret keys only for those who hold every
merchant permission, apps bounded by their registrant, step-up for invitations and write-scope
consent, no secret kept in the idempotency store, lockout on second-factor guessing, invitations
that die with their inviter's authority, logins in flight when an account locks.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from urllib.parse import urlencode

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
from bastionpay.api.app import create_app
from bastionpay.audit.events import Origin
from bastionpay.db.uow import unit_of_work
from bastionpay.edge.headers import SecurityHeaders
from bastionpay.idempotency.models import IdempotencyRecord
from bastionpay.identity import accounts, invitations, login
from bastionpay.identity.models import User
from bastionpay.identity.passwords import InvalidCredentials, passwords_for
from bastionpay.identity.sessions import SESSION_COOKIE
from bastionpay.identity.web import core as web_core
from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.errors import InvalidRequestError, PermissionDenied
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


@pytest.mark.parametrize("role", ["developer", "admin"])
def test_operator_cannot_mint_a_secret_key_stronger_than_their_role(rt: Runtime, role: str) -> None:
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


# --- I7: a secret shown once is stored nowhere in clear ------------------------------------------


def test_a_new_secret_key_is_not_kept_in_clear_by_idempotency(rt: Runtime) -> None:
    merchant_id = _merchant(rt, "Review idempotency")
    owner = _fresh(rt, "owner", merchant_id)
    with api_client(rt, None) as client:
        created = client.post(
            "/v1/api_keys",
            data={"type": "secret"},
            headers={**owner.headers(), "Idempotency-Key": "review-key-1"},
        )
    assert created.status_code == 200, created.text
    secret = created.json()["secret"]
    with unit_of_work(rt.db, write=False) as s:
        bodies = s.scalars(
            select(IdempotencyRecord.response_body).where(
                IdempotencyRecord.merchant_id == merchant_id
            )
        ).all()
    assert bodies, "the request was recorded for replay"
    assert not any(secret in (body or "") for body in bodies)


# --- I5: an invitation is only as good as its inviter --------------------------------------------


@pytest.mark.parametrize("change", ["disabled", "demoted"])
def test_an_invitation_dies_with_its_inviters_authority(rt: Runtime, change: str) -> None:
    """An admin invites an address they control, then is fired (disabled) or demoted: the
    7-day link must not keep their power alive as a fresh admin account (I5, I7)."""
    merchant_id = _merchant(rt, f"Review invitation {change}")
    owner = operator_session(rt, "owner", merchant_id)
    admin = operator_session(rt, "admin", merchant_id)
    now = rt.clock.now()
    with unit_of_work(rt.db, write=True) as s:
        _invitation, token = invitations.invite(
            s,
            rt.identity_keys,
            merchant_id=merchant_id,
            email=f"backdoor-{change}@evil.example",
            role="admin",
            invited_by=admin.user_id,
            now=now,
            ttl=rt.settings.invitation_ttl_seconds,
        )
    with unit_of_work(rt.db, write=True) as s:
        if change == "disabled":
            accounts.disable_user(s, admin.user_id, now=now, reason="security")
        else:
            accounts.change_role(s, admin.user_id, "analyst", now=now)
    with unit_of_work(rt.db, write=True) as s, pytest.raises(InvalidRequestError) as refused:
        invitations.accept_invitation(
            s,
            rt.identity_keys,
            passwords_for(rt.settings),
            token=token,
            password="a long passphrase 2026 ok",
            now=now + 60,
        )
    assert refused.value.code == "invitation_invalid"
    assert owner.user_id  # the merchant keeps its owner; only the fired admin's link dies


# --- I3/I6: consenting to an app is minting a credential ------------------------------------------


def _authorize_url(client_id: str, scope: str) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "https://app.example/callback",
            "scope": scope,
            "state": "s1",
            "code_challenge": challenge.decode().rstrip("="),
            "code_challenge_method": "S256",
        }
    )
    return f"/oauth/authorize?{query}"


def _public_app(rt: Runtime, merchant_id: str, scopes: list[str]) -> str:
    with unit_of_work(rt.db, write=True) as s:
        client, _secret = oauth_clients.register_client(
            s,
            rt.identity_keys,
            merchant_id=merchant_id,
            name="Native app",
            redirect_uris=["https://app.example/callback"],
            public=True,
            scopes=scopes,
            now=rt.clock.now(),
        )
        return client.client_id


def test_consenting_to_write_scopes_needs_step_up(rt: Runtime, app: SecurityHeaders) -> None:
    """A stolen session (no fresh second factor) must not turn itself into a 30-day refresh-token
    family with refunds:write through a public client (no secret: whoever holds the code and
    its PKCE verifier gets the tokens) — tokens that are never asked for step-up (I3, I6)."""
    merchant_id = _merchant(rt, "Review consent")
    client_id = _public_app(rt, merchant_id, ["payments:read", "refunds:write"])
    stale = operator_session(rt, "owner", merchant_id, mfa_at=None)
    url = _authorize_url(client_id, "payments:read refunds:write")
    with _browser(app) as browser:
        browser.cookies.set(SESSION_COOKIE, stale.token)
        page = browser.get(url)
        assert page.status_code == 303, page.text[:300]
        assert location(page).startswith("/account/step-up?next=%2Foauth%2Fauthorize")
        # Posting the decision directly (the CSRF token is derivable by the session holder's
        # own page) gets no code either.
        posted = browser.post(url, data={"csrf_token": stale.csrf_token, "decision": "allow"})
        assert posted.status_code == 303
        assert "code=" not in posted.headers["location"]
    # With a fresh proof the consent page is shown as before.
    fresh = _fresh(rt, "owner", merchant_id)
    with _browser(app) as browser:
        browser.cookies.set(SESSION_COOKIE, fresh.token)
        assert browser.get(url).status_code == 200
        granted = browser.post(url, data={"csrf_token": fresh.csrf_token, "decision": "allow"})
        assert granted.status_code == 302 and "code=" in granted.headers["location"]


# --- I2: the lock holds against requests already in flight -------------------------------------


@pytest.mark.parametrize("change", ["locked", "disabled"])
def test_a_login_in_flight_when_the_account_is_locked_fails(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Guesses sent in parallel all read the account before the 10th failure locks it, then spend
    ~0.2 s in argon2: the one holding the right password must not get in once the lock (or a
    disabling) has been committed meanwhile (I2: lockout after at most 10 attempts)."""
    merchant_id = _merchant(rt, f"Review race {change}")
    with unit_of_work(rt.db, write=True) as s:
        user = accounts.create_user(
            s,
            passwords_for(rt.settings),
            email=f"race-{change}-{secrets.token_hex(4)}@example.test",
            role="developer",
            merchant_id=merchant_id,
            password=PASSWORD,
            now=rt.clock.now(),
        )
        user_id, email = user.id, user.email
    shared = passwords_for(rt.settings)
    original = shared.verify

    def verify_while_a_parallel_guess_locks(stored_hash: str, password: str) -> None:
        original(stored_hash, password)
        with unit_of_work(rt.db, write=True) as s:
            row = s.scalars(select(User).where(User.id == user_id)).one()
            if change == "locked":
                row.locked_until = rt.clock.now() + rt.settings.lockout_seconds
            else:
                row.status = "disabled"

    monkeypatch.setattr(shared, "verify", verify_while_a_parallel_guess_locks)
    origin = Origin(ip=f"10.9.{secrets.randbelow(250)}.{secrets.randbelow(250)}")
    with pytest.raises(InvalidCredentials):
        login.password_login(rt, email=email, password=PASSWORD, origin=origin)
    row = _user_row(rt, user_id)
    if change == "locked":
        assert row.locked_until is not None  # the lock is not lifted by the late success
