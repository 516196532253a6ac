"""Multi-factor authentication (issue 5, item 3; SECURITY-REQUIREMENTS I3; docs/identity.md).

Factors: TOTP (`totp`), WebAuthn security keys and passkeys (`webauthn`), single-use recovery codes
(`recovery`); `stepup.require_step_up` guards sensitive actions. Every proof, success or failure,
is an audit event (L1); every failure is the same `MfaFailed` (one message, no oracle).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastionpay.identity.mfa.base import MFA_FAILED_MESSAGE, MfaFailed
from bastionpay.identity.mfa.recovery import remaining
from bastionpay.identity.mfa.totp import remove_totp
from bastionpay.identity.mfa.webauthn import remove_webauthn
from bastionpay.identity.models import TotpCredential, User, WebAuthnCredential


@dataclass(frozen=True)
class Factors:
    totp: bool  # a confirmed authenticator app
    webauthn: int  # registered security keys and passkeys
    recovery_left: int  # unused recovery codes


def factors(session: Session, user: User) -> Factors:
    """What the user can prove a second factor with (the login and account pages show these)."""
    totp = session.scalar(
        select(TotpCredential.pk).where(
            TotpCredential.user_id == user.id, TotpCredential.confirmed.is_(True)
        )
    )
    keys = session.scalar(
        select(func.count())
        .select_from(WebAuthnCredential)
        .where(WebAuthnCredential.user_id == user.id)
    )
    return Factors(
        totp=totp is not None,
        webauthn=int(keys or 0),
        recovery_left=remaining(session, user),
    )


__all__ = [
    "MFA_FAILED_MESSAGE",
    "Factors",
    "MfaFailed",
    "factors",
    "remove_totp",
    "remove_webauthn",
]
