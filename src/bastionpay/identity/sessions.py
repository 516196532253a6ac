"""Server-side sessions for people (SECURITY-REQUIREMENTS I4; PCI DSS 8.2.8; ASVS V7).

- The browser holds a 256-bit random id (`secrets.token_urlsafe(32)`) in the `__Host-bp_session`
  cookie; the database holds only its keyed hash (`identity_keys.sessions`), so a dump of
  `user_sessions` yields no usable session (I4, I7).
- Two stages: "password" (the password is proven, MFA is not yet: only the MFA pages accept it)
  and "active" (fully authenticated). Going from one to the other issues a new id (`rotate`), so an
  id seen before MFA — planted by an attacker (session fixation) or observed — is worthless after.
- A session dies after 15 minutes without use (idle timeout, PCI 8.2.8), at its absolute lifetime
  (`session_absolute_seconds`, counted from MFA success), when revoked (logout, logout everywhere,
  revoked from the account page), when its user is disabled, and when the user's
  `security_generation` moved on (role change, password change, disable: "rotated at privilege
  change" — the old id cannot carry the new privileges; the caller may `rotate` onto the new one).
- `last_seen` is written at most once a minute: one write per page view would serialise every
  request of an operator on the database for no security gain (the idle timeout is 15 minutes).

Functions take the caller's SQLAlchemy session and never commit (the caller's unit of work does).
`load` may write (touch, expiry), so it needs a write unit of work.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bastionpay.audit.events import AuditEvent, Origin, record
from bastionpay.config import Settings
from bastionpay.identity.keys import IdentityKeys
from bastionpay.identity.models import User, UserSession

SESSION_COOKIE: Final = "__Host-bp_session"  # Secure; HttpOnly; SameSite=Strict; Path=/
STAGE_PASSWORD: Final = "password"  # noqa: S105  (a stage name, not a password)
STAGE_ACTIVE: Final = "active"
# 32 random bytes: 256 bits, twice I4's 128-bit floor.
TOKEN_BYTES: Final = 32
# A password-stage session exists only to finish MFA (or enroll the first factor): it lives at most
# this long whatever the absolute lifetime, so a half-finished login does not linger.
PENDING_LIFETIME_SECONDS: Final = 15 * 60
TOUCH_INTERVAL_SECONDS: Final = 60
_USER_AGENT_MAX: Final = 256
_IP_MAX: Final = 64
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet; anything else is not ours and
# is refused before it is hashed.
_TOKEN_SHAPE: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class IssuedSession:
    """A session just created: `token` goes into the cookie once and is never stored."""

    token: str
    record: UserSession

    def __repr__(self) -> str:  # the token is a secret: never in a log line or a traceback (L3)
        return f"IssuedSession(record_pk={self.record.pk!r}, stage={self.record.stage!r})"


def _check_stage(stage: str) -> None:
    if stage not in (STAGE_PASSWORD, STAGE_ACTIVE):
        raise ValueError(f"unknown session stage {stage!r}")


def _expiry(stage: str, now: int, settings: Settings) -> int:
    if stage == STAGE_PASSWORD:
        return now + min(PENDING_LIFETIME_SECONDS, settings.session_absolute_seconds)
    return now + settings.session_absolute_seconds


def _insert(
    session: Session,
    keys: IdentityKeys,
    *,
    user_id: str,
    generation: int,
    stage: str,
    now: int,
    expires_at: int,
    ip: str | None,
    user_agent: str | None,
    mfa_at: int | None = None,
) -> IssuedSession:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = UserSession(
        id_hash=keys.sessions.hexdigest(token),
        user_id=user_id,
        stage=stage,
        generation=generation,
        created=now,
        last_seen=now,
        expires_at=expires_at,
        mfa_at=mfa_at,
        ip=ip[:_IP_MAX] if ip else None,
        user_agent=user_agent[:_USER_AGENT_MAX] if user_agent else None,
    )
    session.add(row)
    session.flush()
    return IssuedSession(token=token, record=row)


def start(
    session: Session,
    keys: IdentityKeys,
    user: User,
    *,
    stage: str,
    now: int,
    settings: Settings,
    ip: str | None,
    user_agent: str | None,
) -> IssuedSession:
    """A new session for `user` (after the password: stage "password")."""
    _check_stage(stage)
    return _insert(
        session,
        keys,
        user_id=user.id,
        generation=user.security_generation,
        stage=stage,
        now=now,
        expires_at=_expiry(stage, now, settings),
        ip=ip,
        user_agent=user_agent,
    )


def _find(session: Session, keys: IdentityKeys, token: str | None) -> UserSession | None:
    if token is None or not _TOKEN_SHAPE.match(token):
        return None
    return session.scalars(
        select(UserSession).where(UserSession.id_hash == keys.sessions.hexdigest(token))
    ).one_or_none()


def _dead_reason(
    row: UserSession, user: User | None, *, now: int, settings: Settings
) -> str | None:
    if user is None or user.status != "active":
        return "user_disabled"
    if row.generation != user.security_generation:
        return "privilege_change"
    if now >= row.expires_at:
        return "absolute_timeout"
    if now - row.last_seen >= settings.session_idle_seconds:
        return "idle_timeout"
    return None


def load(
    session: Session,
    keys: IdentityKeys,
    token: str | None,
    *,
    now: int,
    settings: Settings,
) -> tuple[User, UserSession] | None:
    """The live session `token` names and its user, or None (unknown, revoked, idle, expired,
    generation changed, user disabled). A session found dead is revoked and its expiry audited
    (L1), so it is reported once and never comes back."""
    row = _find(session, keys, token)
    if row is None or row.revoked_at is not None:
        return None
    user = session.scalars(select(User).where(User.id == row.user_id)).one_or_none()
    reason = _dead_reason(row, user, now=now, settings=settings)
    if reason is not None:
        row.revoked_at = now
        record(
            session,
            AuditEvent(
                actor_type="user",
                actor_id=row.user_id,
                action="identity.session.expire",
                outcome="success",
                merchant_id=user.merchant_id if user else None,
                target_type="user_session",
                target_id=str(row.pk),
                origin=Origin(ip=row.ip, user_agent=row.user_agent),
                details={"reason": reason, "stage": row.stage},
            ),
        )
        return None
    if user is None:  # unreachable: _dead_reason reports a missing user; narrows the type
        return None
    if now - row.last_seen >= TOUCH_INTERVAL_SECONDS:
        row.last_seen = now
    return user, row


def rotate(
    session: Session,
    keys: IdentityKeys,
    current: UserSession,
    *,
    stage: str,
    now: int,
    settings: Settings,
) -> IssuedSession:
    """Replace `current` by a session with a new id (I4: at login and at privilege change).

    The new session takes the user's current generation, so a caller that has just changed the
    user's privileges in this transaction keeps its own session alive under a new id while every
    other session of the user dies. Moving to "active" starts the absolute lifetime afresh (it is
    counted from MFA success); otherwise the old deadline is kept.
    """
    _check_stage(stage)
    user = session.scalars(select(User).where(User.id == current.user_id)).one()
    current.revoked_at = now
    if stage == STAGE_ACTIVE and current.stage != STAGE_ACTIVE:
        expires_at = _expiry(stage, now, settings)
    else:
        expires_at = min(current.expires_at, _expiry(stage, now, settings))
    return _insert(
        session,
        keys,
        user_id=user.id,
        generation=user.security_generation,
        stage=stage,
        now=now,
        expires_at=expires_at,
        ip=current.ip,
        user_agent=current.user_agent,
        mfa_at=current.mfa_at,
    )


def record_mfa(session: Session, current: UserSession, *, now: int) -> None:
    """A second factor was just proven in this session (step-up freshness, I3)."""
    current.mfa_at = now
    session.flush()


def revoke(session: Session, current: UserSession, *, now: int) -> None:
    if current.revoked_at is None:
        current.revoked_at = now
    session.flush()


def revoke_all(session: Session, user_id: str, *, now: int) -> int:
    """Logout everywhere: every live session of the user ends now; returns how many."""
    result = session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0) or 0)


def list_live(session: Session, user_id: str, *, now: int, settings: Settings) -> list[UserSession]:
    """The user's sessions that are still usable, newest first (the account page's list)."""
    rows = session.scalars(
        select(UserSession)
        .where(
            UserSession.user_id == user_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > now,
            UserSession.last_seen > now - settings.session_idle_seconds,
        )
        .order_by(UserSession.created.desc(), UserSession.pk.desc())
        .limit(100)
    ).all()
    return list(rows)


def find_owned(session: Session, user_id: str, pk: int) -> UserSession | None:
    """One of the user's own sessions by its row number (another user's is simply not found)."""
    return session.scalars(
        select(UserSession).where(UserSession.pk == pk, UserSession.user_id == user_id)
    ).one_or_none()
