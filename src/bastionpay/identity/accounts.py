"""Operator accounts: create, look up, list, disable, enable, change role or password (issue 5).

Services never commit (the caller's unit of work does). Functions that act on behalf of a named
person audit themselves (`change_password`); the administrative ones (`create_user`,
`disable_user`, `enable_user`, `change_role`) leave the audit event to the caller, who knows the
actor — the CLI records them as `system/cli`, the `/v1` pipeline with its `audit_action`. Use
`user_event` to build such an event: it carries ids and roles, never the email or a hash (L1, L3).

Every change to what an account can do — disable, role change, password change — bumps
`security_generation`, which ends every session and refresh token issued before it (I4).
"""

from __future__ import annotations

import re
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastionpay.audit import events as audit
from bastionpay.identity.models import User
from bastionpay.identity.passwords import HISTORY_DEPTH, Passwords, check_policy
from bastionpay.identity.roles import ALL_ROLES, is_platform_role
from bastionpay.kernel.errors import InvalidRequestError, ResourceMissing
from bastionpay.kernel.ids import new_id
from bastionpay.merchants.models import Merchant

MAX_EMAIL_LENGTH: Final = 254  # RFC 5321 section 4.5.3.1.3 (a path of 256 minus the brackets)
# What the CLI offers; callers may record their own short reason (the column is 32 characters).
DISABLE_REASONS: Final = frozenset({"admin", "inactive", "security"})
_REASON: Final = re.compile(r"[a-z][a-z_]{0,31}")


def normalize_email(email: str) -> str:
    """Trimmed and lower-cased; raises InvalidRequestError unless it looks like one address."""
    value = email.strip().lower()
    local, at, domain = value.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain
        or domain.startswith(".")
        or domain.endswith(".")
        or len(value) > MAX_EMAIL_LENGTH
        or any(c.isspace() or not c.isprintable() for c in value)
    ):
        raise InvalidRequestError(
            "Enter a valid email address.", param="email", code="email_invalid"
        )
    return value


def mask_email(email: str) -> str:
    """`a***@example.com`: enough for an operator to recognise, not a directory (L1 details)."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}" if local and domain else "***"


def _check_role(role: str, merchant_id: str | None) -> None:
    if role not in ALL_ROLES:
        raise InvalidRequestError(
            f"Unknown role '{role[:32]}'. Roles: {', '.join(ALL_ROLES)}.", param="role"
        )
    if is_platform_role(role) and merchant_id is not None:
        raise InvalidRequestError(
            f"'{role}' is a platform role: a platform operator belongs to no merchant.",
            param="merchant",
        )
    if not is_platform_role(role) and merchant_id is None:
        raise InvalidRequestError(
            f"'{role}' is a merchant role: name the merchant the user belongs to.",
            param="merchant",
        )


def create_user(
    session: Session,
    passwords: Passwords,
    *,
    email: str,
    role: str,
    merchant_id: str | None,
    password: str,
    now: int,
) -> User:
    """A new active account. MFA is not enrolled: its first login leads to enrollment (I3)."""
    address = normalize_email(email)
    _check_role(role, merchant_id)
    if (
        merchant_id is not None
        and session.scalar(select(Merchant.pk).where(Merchant.id == merchant_id)) is None
    ):
        raise ResourceMissing("merchant", merchant_id, param="merchant")
    if find_user_by_email(session, address) is not None:
        raise InvalidRequestError(
            "An account with this email address already exists.",
            param="email",
            code="resource_already_exists",
        )
    check_policy(
        passwords,
        password,
        email=address,
        current_hash=None,
        history=[],
        min_length=passwords.min_length,
    )
    user = User(
        id=new_id("usr"),
        email=address,
        merchant_id=merchant_id,
        role=role,
        status="active",
        disabled_reason=None,
        password_hash=passwords.hash(password),
        password_history=[],
        password_changed_at=now,
        failed_logins=0,
        locked_until=None,
        mfa_enrolled=False,
        created=now,
        last_login_at=None,
        enabled_at=None,
        security_generation=0,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, user_id: str) -> User:
    user = session.scalar(select(User).where(User.id == user_id))
    if user is None:
        raise ResourceMissing("user", user_id)
    return user


def find_user_by_email(session: Session, email: str) -> User | None:
    """None for an unknown address, and for text that is not an address at all."""
    value = email.strip().lower()
    if not value or len(value) > MAX_EMAIL_LENGTH:
        return None
    return session.scalar(select(User).where(User.email == value))


def list_users(session: Session, *, merchant_id: str | None) -> list[User]:
    """One merchant's staff; `None` lists every account (platform use only: a tenant-scoped
    caller must always pass its merchant, I5)."""
    query = select(User).order_by(User.pk)
    if merchant_id is not None:
        query = query.where(User.merchant_id == merchant_id)
    return list(session.scalars(query))


def disable_user(session: Session, user_id: str, *, now: int, reason: str) -> User:
    """Disable at once: sessions and tokens die with the bumped generation (I4)."""
    if not _REASON.fullmatch(reason):
        raise InvalidRequestError(
            "A reason is a short lower-case word such as 'admin' or 'inactive'.", param="reason"
        )
    user = get_user(session, user_id)
    user.status = "disabled"
    user.disabled_reason = reason
    user.security_generation += 1
    session.flush()
    return user


def enable_user(session: Session, user_id: str, *, now: int) -> User:
    """Re-enable; clears a lockout and restarts the inactivity clock (I7)."""
    user = get_user(session, user_id)
    user.status = "active"
    user.disabled_reason = None
    user.failed_logins = 0
    user.locked_until = None
    user.enabled_at = now
    session.flush()
    return user


def change_role(session: Session, user_id: str, role: str, *, now: int) -> User:
    """A merchant user keeps a merchant role, a platform operator a platform role; a merchant
    keeps at least one active owner. Bumps the generation: privilege change ends sessions (I4)."""
    user = get_user(session, user_id)
    _check_role(role, user.merchant_id)
    if role == user.role:
        return user
    if user.role == "owner" and user.status == "active":
        owners = session.scalar(
            select(func.count())
            .select_from(User)
            .where(
                User.merchant_id == user.merchant_id,
                User.role == "owner",
                User.status == "active",
            )
        )
        if (owners or 0) <= 1:
            raise InvalidRequestError(
                "This is the merchant's only active owner; make another user owner first.",
                param="role",
                code="last_owner",
            )
    user.role = role
    user.security_generation += 1
    session.flush()
    return user


def change_password(
    session: Session,
    passwords: Passwords,
    user: User,
    *,
    current: str,
    new: str,
    now: int,
) -> None:
    """The user's own change: the current password first (raises InvalidCredentials), then the
    policy including reuse (I1). Audited as the user; other sessions end (generation bumped).

    A wrong current password raises before anything is written, so the caller's unit of work
    records nothing: the web layer counts and audits such failures as it does for login.
    """
    passwords.verify(user.password_hash, current)
    check_policy(
        passwords,
        new,
        email=user.email,
        current_hash=user.password_hash,
        history=list(user.password_history),
        min_length=passwords.min_length,
    )
    user.password_history = [user.password_hash, *user.password_history][:HISTORY_DEPTH]
    user.password_hash = passwords.hash(new)
    user.password_changed_at = now
    user.security_generation += 1
    session.flush()
    audit.record(
        session,
        user_event("identity.password.change", user, actor_type="user", actor_id=user.id),
    )


def user_event(
    action: audit.Action,
    user: User,
    *,
    actor_type: audit.ActorType,
    actor_id: str,
    outcome: audit.Outcome = "success",
    origin: audit.Origin = audit.SYSTEM_ORIGIN,
    details: dict[str, Any] | None = None,
) -> audit.AuditEvent:
    """An audit event about `user`: ids, role, status; never the email in clear or a hash."""
    return audit.AuditEvent(
        actor_type=actor_type,
        actor_id=actor_id,
        action=action,
        outcome=outcome,
        merchant_id=user.merchant_id,
        target_type="user",
        target_id=user.id,
        origin=origin,
        details={
            "role": user.role,
            "status": user.status,
            "generation": user.security_generation,
            **(details or {}),
        },
    )
