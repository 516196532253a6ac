"""Identity Part A (issue 5): accounts, password login, lockout, layered limits, timing,
invitations and inactive-account disabling (SECURITY-REQUIREMENTS I1, I2, I5, I7, L1).

argon2 runs with its real parameters (≈0.15 s a hash here): tests create few users.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import extract_parameters
from sqlalchemy import select, update
from tests.conftest import make_runtime

from bastionpay import bootstrap
from bastionpay.audit.events import Origin
from bastionpay.audit.models import AuditStaged
from bastionpay.db.uow import unit_of_work
from bastionpay.identity import accounts, invitations, login
from bastionpay.identity.inactivity import DAY_SECONDS, disable_inactive_users
from bastionpay.identity.models import Invitation, User
from bastionpay.identity.passwords import InvalidCredentials, Passwords, passwords_for
from bastionpay.jobs.worker import run_once
from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.errors import (
    InvalidRequestError,
    PermissionDenied,
    RateLimited,
    ResourceMissing,
    ServiceUnavailable,
)
from bastionpay.runtime import Runtime

PASSWORD = "harbor-lantern-5821-velvet"
OTHER = "copper-thistle-9034-ember"


def _email(tag: str = "user") -> str:
    return f"{tag}.{secrets.token_hex(4)}@example.com"


def _origin() -> Origin:
    # A fresh address per test: the per-IP login limit (30/minute) is shared by the session.
    return Origin(
        ip=f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    )


def _merchant(runtime: Runtime) -> str:
    return str(bootstrap.create_merchant_with_keys(runtime, "Identity test")["id"])


def _create(
    runtime: Runtime,
    *,
    role: str = "developer",
    merchant_id: str | None = None,
    email: str | None = None,
    password: str = PASSWORD,
) -> User:
    with unit_of_work(runtime.db, write=True) as session:
        return accounts.create_user(
            session,
            passwords_for(runtime.settings),
            email=email or _email(role),
            role=role,
            merchant_id=merchant_id,
            password=password,
            now=runtime.clock.now(),
        )


def _row(runtime: Runtime, user_id: str) -> User:
    with unit_of_work(runtime.db, write=False) as session:
        return accounts.get_user(session, user_id)


def _events(runtime: Runtime, action: str, **where: Any) -> list[AuditStaged]:
    with unit_of_work(runtime.db, write=False) as session:
        query = select(AuditStaged).where(AuditStaged.action == action)
        for column, value in where.items():
            query = query.where(getattr(AuditStaged, column) == value)
        return list(session.scalars(query.order_by(AuditStaged.pk)))


def _login_error(runtime: Runtime, email: str, password: str, origin: Origin) -> dict[str, Any]:
    with pytest.raises(InvalidCredentials) as raised:
        login.password_login(runtime, email=email, password=password, origin=origin)
    return raised.value.to_wire() | {"status": raised.value.http_status}


@pytest.fixture
def frozen(db_url: str, tmp_path: Path) -> Iterator[tuple[Runtime, FrozenClock]]:
    clock = FrozenClock(int(time.time()))
    rt = make_runtime(db_url, tmp_path, clock=clock)
    yield rt, clock
    rt.db.dispose()


# --- login and lockout (I2) -------------------------------------------------------------------


def test_lockout_on_the_tenth_consecutive_failure_for_thirty_minutes(
    frozen: tuple[Runtime, FrozenClock],
) -> None:
    runtime, clock = frozen
    user = _create(runtime, merchant_id=_merchant(runtime))
    origin = _origin()
    for attempt in range(1, 10):
        _login_error(runtime, user.email, f"wrong-guess-{attempt}x", origin)
        row = _row(runtime, user.id)
        assert (row.failed_logins, row.locked_until) == (attempt, None)
    assert not _events(runtime, "identity.login.locked", target_id=user.id)
    _login_error(runtime, user.email, "wrong-guess-10x", origin)
    row = _row(runtime, user.id)
    assert row.locked_until == clock.now() + 30 * 60
    # Each failure and the lock committed on their own, although every call raised (L1).
    fails = _events(runtime, "identity.login.fail", target_id=user.id)
    assert len(fails) == 10
    assert [e.details["consecutive_failures"] for e in fails] == list(range(1, 11))
    assert all(e.actor_type == "user" and e.actor_id == user.id for e in fails)
    assert all(e.origin_ip == origin.ip for e in fails)
    (locked,) = _events(runtime, "identity.login.locked", target_id=user.id)
    assert locked.details["locked_until"] == row.locked_until
    # The right password does not open a locked account, and says what a wrong one says.
    wrong = _login_error(runtime, user.email, "wrong-guess-11x", origin)
    assert _login_error(runtime, user.email, PASSWORD, origin) == wrong
    assert [
        e.details["reason"] for e in _events(runtime, "identity.login.fail", target_id=user.id)
    ][-2:] == ["locked", "locked"]
    assert _row(runtime, user.id).locked_until == row.locked_until  # not extended
    clock.advance(30 * 60 - 1)
    _login_error(runtime, user.email, PASSWORD, origin)
    clock.advance(1)
    logged_in = login.password_login(runtime, email=user.email, password=PASSWORD, origin=origin)
    assert logged_in.id == user.id
    row = _row(runtime, user.id)
    assert (row.failed_logins, row.locked_until) == (0, None)
    # The password step alone is not a login: last_login_at waits for the second factor (I7).
    assert row.last_login_at is None


def test_success_resets_the_consecutive_count(runtime: Runtime) -> None:
    user = _create(runtime, merchant_id=_merchant(runtime))
    origin = _origin()
    for _ in range(3):
        _login_error(runtime, user.email, OTHER, origin)
    assert _row(runtime, user.id).failed_logins == 3
    # Email matching is case- and space-insensitive.
    login.password_login(
        runtime, email=f"  {user.email.upper()} ", password=PASSWORD, origin=origin
    )
    row = _row(runtime, user.id)
    assert row.failed_logins == 0
    # The caller audits identity.login.success after MFA; the password step does not.
    assert not _events(runtime, "identity.login.success", target_id=user.id)


def test_same_answer_for_unknown_wrong_disabled_and_locked(runtime: Runtime) -> None:
    merchant = _merchant(runtime)
    active, disabled, locked = (_create(runtime, merchant_id=merchant) for _ in range(3))
    now = runtime.clock.now()
    with unit_of_work(runtime.db, write=True) as session:
        accounts.disable_user(session, disabled.id, now=now, reason="admin")
        session.execute(update(User).where(User.id == locked.id).values(locked_until=now + 600))
    origin = _origin()
    unknown_email = _email("nobody")
    answers = [
        _login_error(runtime, unknown_email, PASSWORD, origin),
        _login_error(runtime, active.email, OTHER, origin),
        _login_error(runtime, disabled.email, PASSWORD, origin),
        _login_error(runtime, locked.email, PASSWORD, origin),
        _login_error(runtime, "not an email at all", PASSWORD, origin),
    ]
    assert all(answer == answers[0] for answer in answers)
    assert answers[0] == {
        "error": {
            "type": "invalid_request_error",
            "message": "Incorrect email or password.",
            "code": "invalid_login",
        },
        "status": 401,
    }
    # Each is audited, with the reason for investigators only; an unknown account is "unknown",
    # and the text typed as the email is not recorded (people type passwords there, L3).
    reasons = {
        e.target_id: e.details["reason"]
        for e in _events(runtime, "identity.login.fail", origin_ip=origin.ip)
    }
    assert reasons == {
        None: "unknown_account",
        active.id: "wrong_password",
        disabled.id: "disabled",
        locked.id: "locked",
    }
    unknown = _events(runtime, "identity.login.fail", origin_ip=origin.ip, actor_id="unknown")
    assert len(unknown) == 2
    assert all(unknown_email not in str(e.details) for e in unknown)


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in ("verify", "burn", "hash"):
        original = getattr(Passwords, name)

        def counted(self: Passwords, *args: Any, _o: Any = original, _n: str = name) -> Any:
            calls.append(_n)
            return _o(self, *args)

        monkeypatch.setattr(Passwords, name, counted)
    return calls


@pytest.mark.parametrize(
    ("setting", "vary"),
    [
        ("rate_limit_login_ip", "email"),
        ("rate_limit_login_account", "ip"),
        ("rate_limit_login_global", "both"),
    ],
)
def test_layered_limits_refuse_before_any_hash(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, vary: str
) -> None:
    rt = make_runtime(db_url, tmp_path, **{setting: "3/minute"})
    calls = _count_hashes(monkeypatch)
    email, ip = _email("limited"), "192.0.2.10"
    try:
        for attempt in range(3):
            if vary in ("email", "both"):
                email = _email(f"limited{attempt}")
            if vary in ("ip", "both"):
                ip = f"192.0.2.{20 + attempt}"
            _login_error(rt, email, PASSWORD, Origin(ip=ip))
        assert calls == ["burn"] * 3
        with pytest.raises(RateLimited) as raised:
            rt_email = _email("limited-next") if vary in ("email", "both") else email
            rt_ip = "192.0.2.99" if vary in ("ip", "both") else ip
            login.password_login(rt, email=rt_email, password=PASSWORD, origin=Origin(ip=rt_ip))
        assert raised.value.http_status == 429
        assert raised.value.message == "Too many login attempts. Try again later."
        assert calls == ["burn"] * 3  # refused before any hash was computed
    finally:
        rt.db.dispose()


def test_login_fails_closed_when_the_limit_store_is_down(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = make_runtime(db_url, tmp_path, redis_url="redis://127.0.0.1:9/0")
    calls = _count_hashes(monkeypatch)
    try:
        with pytest.raises(ServiceUnavailable) as raised:
            login.password_login(rt, email=_email(), password=PASSWORD, origin=_origin())
        assert raised.value.code == "rate_limiter_unavailable"
        assert calls == []
    finally:
        rt.db.dispose()


def test_unknown_account_costs_about_the_same_cpu_as_a_wrong_password(runtime: Runtime) -> None:
    user = _create(runtime, merchant_id=_merchant(runtime))
    origin = _origin()
    _login_error(runtime, _email("warm"), PASSWORD, origin)  # the decoy hash is made once

    def cpu(email: str) -> float:
        start = time.process_time()
        for _ in range(3):
            _login_error(runtime, email, OTHER, origin)
        return time.process_time() - start

    unknown = cpu(_email("ghost"))
    wrong = cpu(user.email)
    # argon2 dominates both paths (one verification each); process time ignores other load.
    assert 0.5 < unknown / wrong < 2.0, (unknown, wrong)


def test_hash_is_upgraded_at_login_when_parameters_get_stronger(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    user = _create(runtime, merchant_id=_merchant(runtime))
    assert extract_parameters(_row(runtime, user.id).password_hash).time_cost == 3
    stronger = make_runtime(db_url, tmp_path, argon2_time_cost=4)
    try:
        origin = _origin()
        login.password_login(stronger, email=user.email, password=PASSWORD, origin=origin)
        upgraded = _row(runtime, user.id).password_hash
        assert extract_parameters(upgraded).time_cost == 4
        # Still the same password, under either configuration; the weaker one does not downgrade.
        login.password_login(runtime, email=user.email, password=PASSWORD, origin=origin)
        assert _row(runtime, user.id).password_hash == upgraded
    finally:
        stronger.db.dispose()


# --- accounts ---------------------------------------------------------------------------------


def test_create_user_checks_role_merchant_email_and_password(runtime: Runtime) -> None:
    merchant = _merchant(runtime)
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"role": "platform_admin", "merchant_id": merchant}, InvalidRequestError, "platform"),
        ({"role": "owner", "merchant_id": None}, InvalidRequestError, "merchant role"),
        ({"role": "superuser", "merchant_id": None}, InvalidRequestError, "Unknown role"),
        ({"role": "owner", "merchant_id": "acct_missing"}, ResourceMissing, "No such merchant"),
        ({"role": "owner", "merchant_id": merchant, "email": "nope"}, InvalidRequestError, "email"),
        (
            {"role": "owner", "merchant_id": merchant, "password": "short1"},
            InvalidRequestError,
            "at least 12",
        ),
    ]
    for options, error, text in cases:
        with pytest.raises(error, match=text):
            _create(runtime, **options)
    user = _create(runtime, role="owner", merchant_id=merchant)
    assert (user.status, user.mfa_enrolled, user.security_generation) == ("active", False, 0)
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    with pytest.raises(InvalidRequestError) as raised:
        _create(runtime, role="analyst", merchant_id=merchant, email=user.email.upper())
    assert raised.value.code == "resource_already_exists"
    platform = _create(runtime, role="security_officer")
    assert platform.merchant_id is None
    with unit_of_work(runtime.db, write=False) as session:
        assert [u.id for u in accounts.list_users(session, merchant_id=merchant)] == [user.id]
        assert accounts.find_user_by_email(session, f" {user.email.upper()}") is not None
        with pytest.raises(ResourceMissing):
            accounts.get_user(session, "usr_missing")


def test_change_password_checks_current_policy_and_history(runtime: Runtime) -> None:
    user = _create(runtime, merchant_id=_merchant(runtime))
    passwords = passwords_for(runtime.settings)
    now = runtime.clock.now()

    def change(current: str, new: str) -> None:
        with unit_of_work(runtime.db, write=True) as session:
            row = accounts.get_user(session, user.id)
            accounts.change_password(session, passwords, row, current=current, new=new, now=now)

    with pytest.raises(InvalidCredentials):
        change(OTHER, "fresh-harvest-7720-dune")
    with pytest.raises(InvalidRequestError) as raised:
        change(PASSWORD, PASSWORD)
    assert raised.value.code == "password_reused"
    change(PASSWORD, OTHER)
    row = _row(runtime, user.id)
    assert row.security_generation == 1  # other sessions end (I4)
    assert len(row.password_history) == 1
    passwords.verify(row.password_hash, OTHER)
    with pytest.raises(InvalidRequestError) as raised:
        change(OTHER, PASSWORD)  # back to the previous one: refused (I1)
    assert raised.value.code == "password_reused"
    (event,) = _events(runtime, "identity.password.change", target_id=user.id)
    assert event.actor_id == user.id and PASSWORD not in str(event.details)


def test_role_change_disable_and_enable_bump_generation(runtime: Runtime) -> None:
    merchant = _merchant(runtime)
    owner = _create(runtime, role="owner", merchant_id=merchant)
    staff = _create(runtime, role="analyst", merchant_id=merchant)
    now = runtime.clock.now()
    with unit_of_work(runtime.db, write=True) as session:
        with pytest.raises(InvalidRequestError) as raised:
            accounts.change_role(session, owner.id, "admin", now=now)
        assert raised.value.code == "last_owner"
        with pytest.raises(InvalidRequestError, match="platform"):
            accounts.change_role(session, staff.id, "platform_admin", now=now)
        assert accounts.change_role(session, staff.id, "admin", now=now).security_generation == 1
        disabled = accounts.disable_user(session, staff.id, now=now, reason="admin")
        assert (disabled.status, disabled.disabled_reason) == ("disabled", "admin")
        assert disabled.security_generation == 2
        with pytest.raises(InvalidRequestError):
            accounts.disable_user(session, staff.id, now=now, reason="Because I said so!")
        session.execute(update(User).where(User.id == staff.id).values(locked_until=now + 99))
        enabled = accounts.enable_user(session, staff.id, now=now)
        assert (enabled.status, enabled.locked_until, enabled.enabled_at) == ("active", None, now)


# --- invitations ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def staff(runtime: Runtime) -> dict[str, Any]:
    """One merchant with an owner, an admin and a developer; another merchant with an admin."""
    merchant, other = _merchant(runtime), _merchant(runtime)
    return {
        "merchant": merchant,
        "other": other,
        "owner": _create(runtime, role="owner", merchant_id=merchant),
        "admin": _create(runtime, role="admin", merchant_id=merchant),
        "developer": _create(runtime, role="developer", merchant_id=merchant),
        "other_admin": _create(runtime, role="admin", merchant_id=other),
    }


def _invite(
    runtime: Runtime, by: str, merchant: str, role: str, **kw: Any
) -> tuple[Invitation, str]:
    with unit_of_work(runtime.db, write=True) as session:
        return invitations.invite(
            session,
            runtime.identity_keys,
            merchant_id=merchant,
            email=kw.get("email") or _email("invitee"),
            role=role,
            invited_by=by,
            now=kw.get("now") or runtime.clock.now(),
            ttl=runtime.settings.invitation_ttl_seconds,
        )


def _accept(runtime: Runtime, token: str, password: str = PASSWORD, now: int | None = None) -> User:
    with unit_of_work(runtime.db, write=True) as session:
        return invitations.accept_invitation(
            session,
            runtime.identity_keys,
            passwords_for(runtime.settings),
            token=token,
            password=password,
            now=now or runtime.clock.now(),
        )


def test_invitation_is_single_use_hashed_and_sets_the_password(
    runtime: Runtime, staff: dict[str, Any]
) -> None:
    invitation, token = _invite(runtime, staff["admin"].id, staff["merchant"], "analyst")
    assert len(token) >= 43  # 256 bits, URL-safe base64
    assert invitation.token_hash == runtime.identity_keys.invitations.hexdigest(token)
    assert token not in invitation.token_hash
    url = invitations.acceptance_url(runtime.settings, token)
    assert url == f"{runtime.settings.public_url}/invitations/accept?token={token}"
    # A weak password is refused and leaves the invitation usable (policy applies, I1).
    with pytest.raises(InvalidRequestError) as raised:
        _accept(runtime, token, password="password1234")
    assert raised.value.code == "password_too_weak"
    user = _accept(runtime, token)
    assert (user.email, user.role, user.merchant_id) == (
        invitation.email,
        "analyst",
        staff["merchant"],
    )
    login.password_login(runtime, email=user.email, password=PASSWORD, origin=_origin())
    with pytest.raises(InvalidRequestError) as raised:
        _accept(runtime, token, password=OTHER)
    assert raised.value.code == "invitation_invalid"
    (created,) = _events(runtime, "identity.invitation.create", target_id=invitation.id)
    assert created.actor_id == staff["admin"].id and created.actor_type == "user"
    assert invitation.email not in str(created.details)  # masked
    assert token not in str(created.details)
    (accepted,) = _events(runtime, "identity.invitation.accept", target_id=invitation.id)
    assert accepted.actor_id == user.id
    assert _events(runtime, "identity.user.create", target_id=user.id)


def test_invitation_expires_and_a_new_one_replaces_the_old(
    runtime: Runtime, staff: dict[str, Any]
) -> None:
    now = runtime.clock.now()
    _, expired = _invite(runtime, staff["owner"].id, staff["merchant"], "developer")
    with pytest.raises(InvalidRequestError, match="not valid"):
        _accept(runtime, expired, now=now + runtime.settings.invitation_ttl_seconds)
    email = _email("twice")
    _, first = _invite(runtime, staff["owner"].id, staff["merchant"], "developer", email=email)
    _, second = _invite(runtime, staff["owner"].id, staff["merchant"], "analyst", email=email)
    for bad in (first, "", "x" * 500, secrets.token_urlsafe(32)):
        with pytest.raises(InvalidRequestError) as raised:
            _accept(runtime, bad)
        assert raised.value.code == "invitation_invalid"
    assert _accept(runtime, second).role == "analyst"


def test_who_may_invite_whom(runtime: Runtime, staff: dict[str, Any]) -> None:
    merchant = staff["merchant"]
    with pytest.raises(PermissionDenied, match="Only an owner"):
        _invite(runtime, staff["admin"].id, merchant, "owner")
    for inviter in (staff["developer"].id, staff["other_admin"].id, "usr_missing"):
        with pytest.raises(PermissionDenied):
            _invite(runtime, inviter, merchant, "analyst")
    with pytest.raises(InvalidRequestError, match="merchant roles only"):
        _invite(runtime, staff["owner"].id, merchant, "platform_admin")
    with pytest.raises(ResourceMissing):
        _invite(runtime, staff["owner"].id, "acct_missing", "analyst")
    invitation, _ = _invite(runtime, staff["owner"].id, merchant, "owner")
    assert invitation.role == "owner"
    # An existing address is refused at acceptance (not at invitation: no cross-tenant oracle).
    _, token = _invite(runtime, staff["owner"].id, merchant, "analyst", email=staff["admin"].email)
    with pytest.raises(InvalidRequestError) as raised:
        _accept(runtime, token)
    assert raised.value.code == "resource_already_exists"


# --- inactive accounts (I7) -------------------------------------------------------------------


def test_worker_disables_accounts_inactive_for_90_days(fresh_db_url: str, tmp_path: Path) -> None:
    rt = make_runtime(fresh_db_url, tmp_path)
    try:
        merchant = _merchant(rt)
        users = {
            name: _create(rt, merchant_id=merchant) for name in ("old", "never", "new", "back")
        }
        platform = _create(rt, role="compliance_auditor")
        now = rt.clock.now()
        stale = now - 90 * DAY_SECONDS - 60
        recent = now - 89 * DAY_SECONDS
        with unit_of_work(rt.db, write=True) as session:
            for name, values in {
                "old": {"created": stale - 999, "last_login_at": stale},
                "never": {"created": stale},
                "new": {"created": stale, "last_login_at": recent},
                "back": {"created": stale, "last_login_at": stale, "enabled_at": recent},
            }.items():
                session.execute(update(User).where(User.id == users[name].id).values(**values))
            session.execute(update(User).where(User.id == platform.id).values(created=stale))
        summary = run_once(rt)
        assert summary["users_disabled_inactive"] == 3
        status = {name: _row(rt, user.id) for name, user in users.items()}
        assert {n: r.status for n, r in status.items()} == {
            "old": "disabled",
            "never": "disabled",
            "new": "active",
            "back": "active",
        }
        assert status["old"].disabled_reason == "inactive"
        assert status["old"].security_generation == 1
        assert _row(rt, platform.id).status == "disabled"
        events = _events(rt, "identity.user.disable")
        assert {e.target_id for e in events} == {users["old"].id, users["never"].id, platform.id}
        assert all(e.actor_id == "worker" and e.details["reason"] == "inactive" for e in events)
        assert disable_inactive_users(rt) == 0  # nothing left to do
        # A disabled account cannot log in, with the usual answer.
        _login_error(rt, users["old"].email, PASSWORD, _origin())
    finally:
        rt.db.dispose()
