"""The password step of a login (issue 5, item 2; SECURITY-REQUIREMENTS I1, I2, L1).

Manages its own transactions: a failure is counted and audited in a transaction committed before
the error is raised, so an attacker's attempts are on record even though the request fails.

What an attacker sees is the same whatever the account's state (I2; ASVS 6.3.8):
- the layered limits (global, per IP, per account) are checked first, before any lookup or hash,
  so a refusal says nothing about the account and costs almost nothing (Warehouse's design);
- an unknown email costs one argon2 verification of a decoy hash, like a known one;
- a wrong password, a disabled account and a locked account all cost exactly one verification and
  all answer `InvalidCredentials` ("Incorrect email or password.", code `invalid_login`).

Trade-off, said plainly: a locked-out user is not told they are locked (the page says what a wrong
password says), because "locked" would confirm to an attacker that the account exists and that
the guessing reached it. The lock lasts `lockout_seconds` (30 minutes); the audit log records it
(`identity.login.locked`) and an administrator can lift it with `bastionpay users enable`.

Hashing is CPU-bound (~0.1–0.3 s): call this from a worker thread (`anyio.to_thread.run_sync`),
never on the event loop, so logins cannot stall payments.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.audit import events as audit
from bastionpay.db.uow import unit_of_work
from bastionpay.edge.ratelimit import LOGIN_ACCOUNT, LOGIN_GLOBAL, LOGIN_IP
from bastionpay.identity.accounts import find_user_by_email, user_event
from bastionpay.identity.models import User
from bastionpay.identity.passwords import InvalidCredentials, passwords_for
from bastionpay.runtime import Runtime


def _account_key(runtime: Runtime, email: str) -> str:
    # The per-account counter is keyed by a keyed hash so the shared counter store (Redis) holds
    # no email addresses, nor digests one could test guesses against; unknown and known
    # addresses are limited alike.
    return runtime.identity_keys.login_accounts.hexdigest(email)[:32]


def check_login_limits(runtime: Runtime, *, email: str, ip: str | None) -> None:
    """Global, then per IP, then per account (I2, T4); raises RateLimited (429), or
    ServiceUnavailable (503) when the shared counter store is down (these categories fail
    closed). Every attempt counts, successful or not: the limits bound guessing and CPU."""
    settings = runtime.settings
    limits = runtime.rate_limits
    limits.hit(LOGIN_GLOBAL, settings.rate_limit_login_global, "all")
    limits.hit(LOGIN_IP, settings.rate_limit_login_ip, ip or "unknown")
    limits.hit(LOGIN_ACCOUNT, settings.rate_limit_login_account, _account_key(runtime, email))


def password_login(runtime: Runtime, *, email: str, password: str, origin: audit.Origin) -> User:
    """The user whose password this is, or InvalidCredentials (after counting and auditing).

    On success the failure counter and any expired lock are cleared and the hash is upgraded if
    the argon2 parameters changed; `last_login_at` is set by the web layer once the second factor
    is proven too (a password alone is not a login, I3, I7). The caller audits
    `identity.login.success` once the second factor is proven (I3).
    """
    address = email.strip().lower()
    check_login_limits(runtime, email=address, ip=origin.ip)
    passwords = passwords_for(runtime.settings)
    with unit_of_work(runtime.db, write=False) as session:
        user = find_user_by_email(session, address)
    if user is None:
        passwords.burn(password)
        _audit_failure(runtime, None, origin, reason="unknown_account")
        raise InvalidCredentials
    now = runtime.clock.now()
    try:
        passwords.verify(user.password_hash, password)
        correct = True
    except InvalidCredentials:
        correct = False
    if user.status != "active":
        _audit_failure(runtime, user, origin, reason="disabled")
        raise InvalidCredentials
    if user.locked_until is not None and user.locked_until > now:
        # Not counted: the lock is already on, and counting would let an attacker extend it.
        _audit_failure(runtime, user, origin, reason="locked")
        raise InvalidCredentials
    if not correct:
        _count_failure(runtime, user.id, origin, now=now)
        raise InvalidCredentials
    new_hash = passwords.hash(password) if passwords.needs_rehash(user.password_hash) else None
    with unit_of_work(runtime.db, write=True) as session:
        row = _lock_row(session, user.id)
        # Checked again under the row lock: guesses sent in parallel all read the account before
        # the 10th failure locked it, and one of them may hold the right password (I2: at most
        # 10 attempts). A disabling committed meanwhile wins the same way.
        late = _refusal(row, now)
        if late is None:
            row.failed_logins = 0
            row.locked_until = None
            # Only over the hash just verified: a concurrent password change wins.
            if new_hash is not None and row.password_hash == user.password_hash:
                row.password_hash = new_hash
            return row
    _audit_failure(runtime, user, origin, reason=late)
    raise InvalidCredentials


def _refusal(row: User, now: int) -> str | None:
    if row.status != "active":
        return "disabled"
    if row.locked_until is not None and row.locked_until > now:
        return "locked"
    return None


def _lock_row(session: Session, user_id: str) -> User:
    return session.scalars(select(User).where(User.id == user_id).with_for_update()).one()


def _count_failure(runtime: Runtime, user_id: str, origin: audit.Origin, *, now: int) -> None:
    """One more consecutive failure; the `lockout_threshold`th (10th) locks the account for
    `lockout_seconds` (30 minutes) (I2, PCI DSS 8.3.4). Committed on its own."""
    settings = runtime.settings
    with unit_of_work(runtime.db, write=True) as session:
        row = _lock_row(session, user_id)
        row.failed_logins += 1
        attempts = row.failed_logins
        audit.record(
            session,
            user_event(
                "identity.login.fail",
                row,
                actor_type="user",
                actor_id=row.id,
                outcome="failure",
                origin=origin,
                details={"reason": "wrong_password", "consecutive_failures": attempts},
            ),
        )
        if attempts >= settings.lockout_threshold:
            row.locked_until = now + settings.lockout_seconds
            # The count starts again after the lock: the next threshold buys another lock.
            row.failed_logins = 0
            audit.record(
                session,
                user_event(
                    "identity.login.locked",
                    row,
                    actor_type="user",
                    actor_id=row.id,
                    outcome="denied",
                    origin=origin,
                    details={
                        "consecutive_failures": attempts,
                        "locked_until": row.locked_until,
                    },
                ),
            )


def _audit_failure(
    runtime: Runtime, user: User | None, origin: audit.Origin, *, reason: str
) -> None:
    with unit_of_work(runtime.db, write=True) as session:
        if user is None:
            # Never the email typed: people type passwords into the email field (L3).
            event = audit.AuditEvent(
                actor_type="user",
                actor_id="unknown",
                action="identity.login.fail",
                outcome="failure",
                origin=origin,
                details={"reason": reason},
            )
        else:
            event = user_event(
                "identity.login.fail",
                user,
                actor_type="user",
                actor_id=user.id,
                outcome="failure",
                origin=origin,
                details={"reason": reason},
            )
        audit.record(session, event)
