"""TOTP (RFC 6238) as a second factor, with pyotp (I3; PCI DSS 8.4, 8.5.1; ASVS 6.5).

- Seeds are 160 bits (RFC 4226 §4 recommends 160) from pyotp's `random_base32`, which draws from
  `secrets.SystemRandom`; SHA-1, 6 digits, 30 s — the parameters every authenticator app accepts.
- A seed is stored only sealed with `keys.seeds` (AES-GCM, bound to the user id), so a database dump
  yields no seed and a ciphertext moved to another account's row does not open.
- A code is accepted once: the matched time step is stored in `last_step` and any step ≤ it is
  refused (RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt of the same OTP"). The
  update is conditional on `last_step`, so two concurrent requests with one code cannot both pass.
- ±1 step of clock drift is accepted, no more (I3: "±1 step at most").
- An enrolment is unconfirmed, and useless for login, until a valid code proves the app has it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import pyotp
from pyotp.exceptions import OTPVerificationError
from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.orm import Session

from bastionpay.audit.events import SYSTEM_ORIGIN, Origin
from bastionpay.identity.keys import IdentityKeys, SealBroken
from bastionpay.identity.mfa.base import (
    MfaFailed,
    audit,
    confirmed_factor_count,
    ensure_active,
    fail,
    mark_enrolled,
)
from bastionpay.identity.models import TotpCredential, User
from bastionpay.kernel.errors import InvalidRequestError, ResourceMissing
from bastionpay.kernel.ids import new_id

DIGITS = 6
INTERVAL = 30
# RFC 6238 §5.2 allows a small window for drift; I3 caps it at one step either side.
VALID_WINDOW = 1
# An enrolment left unconfirmed this long must be started again (the seed was shown on a screen).
ENROLLMENT_TTL_SECONDS = 15 * 60
_CODE = re.compile(r"[0-9]{6}")


@dataclass(frozen=True)
class TotpEnrollment:
    credential_id: str
    provisioning_uri: str
    # Shown once, to type into an app that cannot scan the QR code; never stored in the clear.
    secret_b32: str

    def __repr__(self) -> str:
        # Keep the seed out of logs and tracebacks that print the object (L3).
        return f"TotpEnrollment(credential_id={self.credential_id!r}, secret_b32='**********')"


def _totp(seed: str) -> pyotp.TOTP:
    return pyotp.TOTP(seed, digits=DIGITS, interval=INTERVAL)


def begin_enrollment(
    session: Session,
    keys: IdentityKeys,
    user: User,
    *,
    now: int,
    issuer: str,
) -> TotpEnrollment:
    """Create an unconfirmed TOTP credential; earlier unconfirmed attempts are discarded.

    Confirming it replaces the user's current app, so callers offer this only at forced enrolment
    (`user.mfa_enrolled` false) or after a fresh step-up — never to a password-only session of an
    enrolled user, or a stolen password would be enough to swap the second factor (I3, no bypass).
    """
    session.execute(
        delete(TotpCredential).where(
            TotpCredential.user_id == user.id, TotpCredential.confirmed.is_(False)
        )
    )
    seed = pyotp.random_base32()  # 32 base32 characters = 160 bits from secrets.SystemRandom
    credential = TotpCredential(
        id=new_id("totp"),
        user_id=user.id,
        secret_ciphertext=keys.seeds.seal(user.id, seed.encode("ascii")),
        confirmed=False,
        last_step=None,
        created=now,
    )
    session.add(credential)
    session.flush()
    uri = _totp(seed).provisioning_uri(name=user.email, issuer_name=issuer)
    return TotpEnrollment(credential_id=credential.id, provisioning_uri=uri, secret_b32=seed)


def confirm_enrollment(
    session: Session,
    keys: IdentityKeys,
    user: User,
    credential_id: str,
    code: str,
    *,
    now: int,
    origin: Origin = SYSTEM_ORIGIN,
) -> None:
    """Prove the app holds the seed; the credential then replaces any earlier confirmed one."""
    credential = session.scalar(
        select(TotpCredential).where(
            TotpCredential.id == credential_id,
            TotpCredential.user_id == user.id,
            TotpCredential.confirmed.is_(False),
        )
    )
    if credential is None:
        raise fail(session, user, "totp", "unknown_enrollment", origin=origin)
    if now - credential.created > ENROLLMENT_TTL_SECONDS:
        raise fail(session, user, "totp", "enrollment_expired", origin=origin)
    _accept(session, keys, user, credential, code, now=now, origin=origin)
    # One authenticator app per account: confirming a new one retires the old seed.
    session.execute(
        delete(TotpCredential).where(
            TotpCredential.user_id == user.id, TotpCredential.id != credential.id
        )
    )
    credential.confirmed = True
    mark_enrolled(user)
    session.flush()
    audit(
        session,
        user,
        "identity.mfa.enroll",
        "success",
        origin=origin,
        factor="totp",
        credential=credential.id,
    )


def verify(
    session: Session,
    keys: IdentityKeys,
    user: User,
    code: str,
    *,
    now: int,
    origin: Origin = SYSTEM_ORIGIN,
) -> None:
    """Check a login or step-up code against the user's confirmed TOTP; raises `MfaFailed`."""
    credential = session.scalar(
        select(TotpCredential).where(
            TotpCredential.user_id == user.id, TotpCredential.confirmed.is_(True)
        )
    )
    if credential is None:
        raise fail(session, user, "totp", "not_enrolled", origin=origin)
    _accept(session, keys, user, credential, code, now=now, origin=origin)
    audit(
        session,
        user,
        "identity.mfa.verify",
        "success",
        origin=origin,
        factor="totp",
        credential=credential.id,
    )


def _accept(
    session: Session,
    keys: IdentityKeys,
    user: User,
    credential: TotpCredential,
    code: str,
    *,
    now: int,
    origin: Origin,
) -> None:
    """Match `code` within ±1 step and burn its step, or raise `MfaFailed` (audited)."""
    ensure_active(session, user, "totp", origin=origin)
    # Apps show "123 456"; people paste with spaces. Anything else that is not 6 digits is wrong.
    presented = "".join(code.split())
    if not _CODE.fullmatch(presented):
        raise fail(session, user, "totp", "malformed", origin=origin)
    try:
        seed = keys.seeds.open(user.id, credential.secret_ciphertext).decode("ascii")
    except SealBroken:
        # Tampered or moved between users: the row is not this user's seed (see identity/keys.py).
        raise fail(session, user, "totp", "seal_broken", origin=origin) from None
    try:
        # pyotp compares in constant time and tells us which step matched, so replay protection
        # is per step (a code from step s-1 accepted now must not be accepted again at s+1).
        step = _totp(seed).verify_and_get_timecode(
            presented, for_time=now, valid_window=VALID_WINDOW
        )
    except OTPVerificationError:
        raise fail(session, user, "totp", "wrong_code", origin=origin) from None
    # Conditional update: the step is burnt only if no code at or after it was accepted, which
    # also settles a race between two requests presenting the same code (I3: a code works once).
    burnt = session.execute(
        update(TotpCredential)
        .where(
            TotpCredential.pk == credential.pk,
            or_(TotpCredential.last_step.is_(None), TotpCredential.last_step < step),
        )
        .values(last_step=step)
        .execution_options(synchronize_session=False)
    )
    if cast("CursorResult[Any]", burnt).rowcount != 1:
        raise fail(session, user, "totp", "replayed", origin=origin)
    credential.last_step = step


def remove_totp(
    session: Session,
    user: User,
    *,
    origin: Origin = SYSTEM_ORIGIN,
) -> None:
    """Remove the user's authenticator app. Refused when it is the only factor left: an enrolled
    account must always have a second factor (I3, no bypass). The caller demands step-up first."""
    credential = session.scalar(
        select(TotpCredential).where(
            TotpCredential.user_id == user.id, TotpCredential.confirmed.is_(True)
        )
    )
    if credential is None:
        raise ResourceMissing("totp_credential", user.id)
    if user.mfa_enrolled and confirmed_factor_count(session, user.id) <= 1:
        raise InvalidRequestError(
            "This is your only second factor. Add a security key before removing it.",
            code="mfa_last_factor",
        )
    session.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id))
    audit(
        session,
        user,
        "identity.mfa.remove",
        "success",
        origin=origin,
        factor="totp",
        credential=credential.id,
    )


__all__ = [
    "MfaFailed",
    "TotpEnrollment",
    "begin_enrollment",
    "confirm_enrollment",
    "remove_totp",
    "verify",
]
