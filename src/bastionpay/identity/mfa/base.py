"""What every MFA factor shares: the one failure, the audit record, the enrolment flag (I3, L1).

Kept apart from `__init__` so the factor modules can import it without a cycle; `__init__`
re-exports `MfaFailed`.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastionpay.audit.events import SYSTEM_ORIGIN, Action, AuditEvent, Origin, Outcome, record
from bastionpay.identity.models import TotpCredential, User, WebAuthnCredential
from bastionpay.kernel.errors import AuthenticationError

Factor = Literal["totp", "webauthn", "recovery_code"]

# One message for every failure (I3, ASVS 6.5): a caller must not learn whether the code was
# wrong, replayed, expired, or belonged to a factor the account does not have.
MFA_FAILED_MESSAGE = "The second-factor verification failed. Try again."


class MfaFailed(AuthenticationError):
    """Any second-factor failure. The message never says which check failed."""

    def __init__(self) -> None:
        super().__init__(MFA_FAILED_MESSAGE, code="mfa_failed")


def audit(
    session: Session,
    user: User,
    action: Action,
    outcome: Outcome,
    *,
    origin: Origin = SYSTEM_ORIGIN,
    **details: Any,
) -> None:
    """Record an authentication event for `user` (L1). Callers pass only non-secret details:
    the factor, a credential's id, a failure reason — never a code, seed or signature."""
    record(
        session,
        AuditEvent(
            actor_type="user",
            actor_id=user.id,
            action=action,
            outcome=outcome,
            merchant_id=user.merchant_id,
            target_type="user",
            target_id=user.id,
            origin=origin,
            details=details,
        ),
    )


def fail(
    session: Session,
    user: User,
    factor: Factor,
    reason: str,
    *,
    origin: Origin = SYSTEM_ORIGIN,
) -> MfaFailed:
    """Audit a failed proof and return the error to raise.

    The audit row is staged in the caller's transaction: the caller must let it commit while the
    error propagates (catch `MfaFailed` inside the unit of work, render it, and commit), as
    `identity.login` does for password failures — otherwise the failure is not in the log (L1).
    """
    audit(
        session, user, "identity.mfa.fail", "failure", origin=origin, factor=factor, reason=reason
    )
    return MfaFailed()


def ensure_active(
    session: Session, user: User, factor: Factor, *, origin: Origin = SYSTEM_ORIGIN
) -> None:
    """A disabled account proves nothing, whatever factor it presents (I7, PCI DSS 8.2.6): the
    check is here as well as at login so a session that outlived the disabling cannot step up."""
    if user.status != "active":
        raise fail(session, user, factor, "user_inactive", origin=origin)


def confirmed_factor_count(session: Session, user_id: str) -> int:
    """Factors that can log in on their own: a confirmed TOTP and each WebAuthn credential.
    Recovery codes are a fallback, not a factor a user may be left with alone (I3)."""
    totp = session.scalar(
        select(func.count())
        .select_from(TotpCredential)
        .where(TotpCredential.user_id == user_id, TotpCredential.confirmed.is_(True))
    )
    keys = session.scalar(
        select(func.count())
        .select_from(WebAuthnCredential)
        .where(WebAuthnCredential.user_id == user_id)
    )
    return int(totp or 0) + int(keys or 0)


def mark_enrolled(user: User) -> None:
    # MFA is mandatory (I3): once a factor is confirmed the login flow demands it from then on.
    user.mfa_enrolled = True
