"""identity.sessions and identity.csrf: server-side sessions (I4) and CSRF tokens (T3).

Users are inserted directly (no argon2 here: the session layer never looks at the password).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.conftest import make_runtime

from bastionpay.audit.models import AuditStaged
from bastionpay.db.uow import unit_of_work
from bastionpay.identity import csrf, sessions
from bastionpay.identity.models import User, UserSession
from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.errors import PermissionDenied
from bastionpay.kernel.ids import new_id
from bastionpay.runtime import Runtime

T0 = 1_800_000_000


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture(scope="module")
def rt(
    db_url: str, tmp_path_factory: pytest.TempPathFactory, clock: FrozenClock
) -> Iterator[Runtime]:
    runtime = make_runtime(db_url, tmp_path_factory.mktemp("sessions"), clock=clock)
    yield runtime
    runtime.db.dispose()


def _user(rt: Runtime) -> User:
    user_id = new_id("usr")
    with unit_of_work(rt.db, write=True) as s:
        user = User(
            id=user_id,
            email=f"{user_id.lower()}@example.test",
            merchant_id=None,
            role="platform_admin",
            status="active",
            password_hash="not-a-real-hash",
            password_history=[],
            password_changed_at=T0,
            failed_logins=0,
            mfa_enrolled=True,
            created=T0,
            security_generation=0,
        )
        s.add(user)
    return user


def _start(rt: Runtime, user: User, stage: str = "active") -> sessions.IssuedSession:
    with unit_of_work(rt.db, write=True) as s:
        return sessions.start(
            s,
            rt.identity_keys,
            user,
            stage=stage,
            now=rt.clock.now(),
            settings=rt.settings,
            ip="203.0.113.7",
            user_agent="pytest",
        )


def _load(rt: Runtime, token: str | None) -> tuple[User, UserSession] | None:
    with unit_of_work(rt.db, write=True) as s:
        return sessions.load(s, rt.identity_keys, token, now=rt.clock.now(), settings=rt.settings)


def test_ids_are_256_bit_random_and_only_their_keyed_hash_is_stored(rt: Runtime) -> None:
    """I4: ≥ 128 random bits; I7-style storage: the row holds HMAC(id), never the id."""
    user = _user(rt)
    issued = _start(rt, user)
    other = _start(rt, user)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", issued.token)  # token_urlsafe(32): 256 bits
    assert issued.token != other.token
    with unit_of_work(rt.db, write=False) as s:
        row = s.scalars(select(UserSession).where(UserSession.pk == issued.record.pk)).one()
    assert row.id_hash == rt.identity_keys.sessions.hexdigest(issued.token)
    assert issued.token not in row.id_hash
    assert issued.token not in repr(issued)  # never in a traceback or log line (L3)
    loaded = _load(rt, issued.token)
    assert loaded is not None and loaded[0].id == user.id and loaded[1].pk == issued.record.pk


@pytest.mark.parametrize("token", [None, "", "x" * 43 + "!", "a" * 5000, "not a session"])
def test_unknown_or_malformed_ids_load_nothing(rt: Runtime, token: str | None) -> None:
    assert _load(rt, token) is None


def test_idle_timeout_is_15_minutes_and_is_audited(rt: Runtime, clock: FrozenClock) -> None:
    """I4 / PCI 8.2.8: 15 minutes without use ends the session; use keeps it alive."""
    user = _user(rt)
    issued = _start(rt, user)
    clock.advance(14 * 60)
    assert _load(rt, issued.token) is not None  # touched: last_seen moves
    clock.advance(14 * 60)
    assert _load(rt, issued.token) is not None
    clock.advance(15 * 60)
    assert _load(rt, issued.token) is None
    clock.advance(-15 * 60)  # even back in time: a session found dead stays dead
    assert _load(rt, issued.token) is None
    clock.advance(15 * 60)
    with unit_of_work(rt.db, write=False) as s:
        events = s.scalars(
            select(AuditStaged).where(
                AuditStaged.actor_id == user.id, AuditStaged.action == "identity.session.expire"
            )
        ).all()
    assert [e.details["reason"] for e in events] == ["idle_timeout"]


def test_absolute_lifetime_ends_even_a_busy_session(rt: Runtime, clock: FrozenClock) -> None:
    user = _user(rt)
    issued = _start(rt, user)
    lifetime = rt.settings.session_absolute_seconds
    elapsed = 0
    while elapsed + 10 * 60 < lifetime:
        clock.advance(10 * 60)
        elapsed += 10 * 60
        assert _load(rt, issued.token) is not None
    clock.advance(lifetime - elapsed)
    assert _load(rt, issued.token) is None


def test_password_stage_sessions_are_short_lived(rt: Runtime, clock: FrozenClock) -> None:
    user = _user(rt)
    issued = _start(rt, user, stage="password")
    assert issued.record.expires_at == clock.now() + sessions.PENDING_LIFETIME_SECONDS
    with pytest.raises(ValueError, match="unknown session stage"):
        _start(rt, user, stage="admin")


def test_rotation_issues_a_new_id_and_kills_the_old(rt: Runtime, clock: FrozenClock) -> None:
    """I4: rotated at login (password stage → active) — session fixation is worthless."""
    user = _user(rt)
    pending = _start(rt, user, stage="password")
    with unit_of_work(rt.db, write=True) as s:
        loaded = sessions.load(
            s, rt.identity_keys, pending.token, now=clock.now(), settings=rt.settings
        )
        assert loaded is not None
        active = sessions.rotate(
            s, rt.identity_keys, loaded[1], stage="active", now=clock.now(), settings=rt.settings
        )
        sessions.record_mfa(s, active.record, now=clock.now())
    assert active.token != pending.token
    assert _load(rt, pending.token) is None
    again = _load(rt, active.token)
    assert again is not None
    assert again[1].stage == "active" and again[1].mfa_at == clock.now()
    assert again[1].expires_at == clock.now() + rt.settings.session_absolute_seconds


def test_privilege_change_kills_sessions_unless_rotated(rt: Runtime, clock: FrozenClock) -> None:
    """I4: a generation bump (role change, password change, disable) ends old sessions; the session
    that made the change may rotate onto the new generation."""
    user = _user(rt)
    mine, other = _start(rt, user), _start(rt, user)
    with unit_of_work(rt.db, write=True) as s:
        loaded = sessions.load(
            s, rt.identity_keys, mine.token, now=clock.now(), settings=rt.settings
        )
        assert loaded is not None
        db_user, current = loaded
        db_user.role = "security_officer"
        db_user.security_generation += 1
        s.flush()
        rotated = sessions.rotate(
            s, rt.identity_keys, current, stage="active", now=clock.now(), settings=rt.settings
        )
    assert _load(rt, other.token) is None
    assert _load(rt, mine.token) is None
    kept = _load(rt, rotated.token)
    assert kept is not None and kept[0].role == "security_officer"
    assert kept[1].generation == 1


def test_disabled_user_sessions_die(rt: Runtime) -> None:
    user = _user(rt)
    issued = _start(rt, user)
    with unit_of_work(rt.db, write=True) as s:
        s.scalars(select(User).where(User.id == user.id)).one().status = "disabled"
    assert _load(rt, issued.token) is None


def test_revoke_and_revoke_all(rt: Runtime, clock: FrozenClock) -> None:
    user, bystander = _user(rt), _user(rt)
    a, b, c = _start(rt, user), _start(rt, user), _start(rt, user)
    theirs = _start(rt, bystander)
    with unit_of_work(rt.db, write=True) as s:
        row = sessions.find_owned(s, user.id, a.record.pk)
        assert row is not None
        assert sessions.find_owned(s, bystander.id, a.record.pk) is None
        sessions.revoke(s, row, now=clock.now())
    assert _load(rt, a.token) is None
    with unit_of_work(rt.db, write=False) as s:
        live = sessions.list_live(s, user.id, now=clock.now(), settings=rt.settings)
    assert {r.pk for r in live} == {b.record.pk, c.record.pk}
    with unit_of_work(rt.db, write=True) as s:
        assert sessions.revoke_all(s, user.id, now=clock.now()) == 2
    assert _load(rt, b.token) is None and _load(rt, c.token) is None
    assert _load(rt, theirs.token) is not None


def test_last_seen_is_written_at_most_once_a_minute(rt: Runtime, clock: FrozenClock) -> None:
    user = _user(rt)
    issued = _start(rt, user)
    clock.advance(30)
    loaded = _load(rt, issued.token)
    assert loaded is not None and loaded[1].last_seen == clock.now() - 30
    clock.advance(30)
    loaded = _load(rt, issued.token)
    assert loaded is not None and loaded[1].last_seen == clock.now()


def test_csrf_token_is_bound_to_the_session(rt: Runtime) -> None:
    """T3: synchroniser token = HMAC(csrf key, session id); a wrong or missing one is refused."""
    keys = rt.identity_keys
    token = csrf.token_for(keys, "session-one")
    csrf.check(keys, "session-one", token)
    assert token != csrf.token_for(keys, "session-two")
    assert token != keys.sessions.hexdigest("session-one")  # domain-separated from the id hash
    for presented in (None, "", token[:-1] + ("0" if token[-1] != "0" else "1"), "x" * 1000):
        with pytest.raises(PermissionDenied) as caught:
            csrf.check(keys, "session-one", presented)
        assert caught.value.code == "csrf_failed"
    with pytest.raises(PermissionDenied):
        csrf.check(keys, "session-two", token)


def test_presession_double_submit_is_keyed(rt: Runtime, tmp_path: Path) -> None:
    keys = rt.identity_keys
    nonce = csrf.new_presession_nonce()
    value = csrf.presession_token(keys, nonce)
    csrf.check_presession(keys, nonce, value)
    # A session-bound token for the same string is a different value (domain separation).
    assert value != csrf.token_for(keys, nonce)
    # Another server key (an attacker's own deployment) cannot produce the matching value.
    other = make_runtime("sqlite://", tmp_path).identity_keys
    assert csrf.presession_token(other, nonce) != value
    for bad_nonce, bad_value in (
        (None, value),
        (nonce, None),
        (csrf.new_presession_nonce(), value),
        (nonce, csrf.presession_token(other, nonce)),
        ("n" * 500, value),
    ):
        with pytest.raises(PermissionDenied):
            csrf.check_presession(keys, bad_nonce, bad_value)
