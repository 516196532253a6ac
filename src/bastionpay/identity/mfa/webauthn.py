"""WebAuthn / passkeys as a second factor, with the `webauthn` package (I3; W3C WebAuthn Level 2).

Every ceremony's checks are the library's (`verify_registration_response`,
`verify_authentication_response`): challenge, origin, RP id hash, user presence, signature, and the
signature counter. What this module adds is state:

- Challenges live in `MfaChallenge`, bound to the user and the ceremony kind, expire after
  5 minutes and are single use: claimed by a conditional update *before* the response is checked,
  so a replayed (or raced) response finds its challenge spent (§13.4.3 "challenges MUST be random,
  single use").
- The RP id, its name and the one expected origin come from Settings (`webauthn_rp_id`,
  `webauthn_rp_name`, `public_url`); nothing from the request decides them.
- An assertion must come from a credential registered to *this* user (credential id and, when the
  authenticator sends it, the user handle).
- Signature counters only move forward where the authenticator keeps one (§6.1.1): a count that does
  not increase means a cloned authenticator or a replay, and the login is refused and audited.
- User verification is "preferred" and resident keys are allowed, so platform passkeys and roaming
  security keys both work; the password already proved knowledge, the key proves possession.
- Only public keys are stored; attestation is "none" (we do not restrict authenticator models).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    parse_authentication_credential_json,
    parse_authenticator_data,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from bastionpay.audit.events import SYSTEM_ORIGIN, Origin
from bastionpay.config import Settings
from bastionpay.identity.mfa.base import (
    audit,
    confirmed_factor_count,
    ensure_active,
    fail,
    mark_enrolled,
)
from bastionpay.identity.models import MfaChallenge, User, WebAuthnCredential
from bastionpay.kernel.errors import InvalidRequestError, ResourceMissing
from bastionpay.kernel.ids import new_id

CHALLENGE_TTL_SECONDS = 5 * 60
DEFAULT_NAME = "Security key"
NAME_MAX = 64
# Malformed input surfaces as the library's own exceptions (it wraps CBOR errors) or as the
# ValueError / TypeError / KeyError of base64 and JSON decoding: all one `MfaFailed`, never a 500.
_BAD_INPUT = (WebAuthnException, ValueError, TypeError, KeyError)
_DEFAULT_PORTS = {"https": 443, "http": 80}
REGISTRATION = "registration"
AUTHENTICATION = "authentication"


def expected_origin(settings: Settings) -> str:
    """The one origin the browser must report for `public_url`, serialised as browsers do
    (HTML "ASCII serialization of an origin"): lower-case scheme and host, no path, and no port
    when it is the scheme's default."""
    parts = urlsplit(settings.public_url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    port = parts.port
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def registration_options(
    session: Session, settings: Settings, user: User, *, now: int
) -> tuple[str, str]:
    """Start registering a security key or passkey: `(challenge_id, options JSON)` for
    `navigator.credentials.create()`.

    As with TOTP enrolment, callers offer this only at forced enrolment or after a fresh step-up:
    a password alone must not be able to add a factor to an enrolled account (I3, no bypass).
    """
    existing = _credentials(session, user)
    options = generate_registration_options(
        rp_id=settings.webauthn_rp_id,
        rp_name=settings.webauthn_rp_name,
        # The user handle is the account id: random, stable, not personal data (§14.6.1 asks that
        # it contain no email or name).
        user_id=user.id.encode(),
        user_name=user.email,
        user_display_name=user.email,
        timeout=CHALLENGE_TTL_SECONDS * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        # The same authenticator cannot be registered twice (the browser refuses with these).
        exclude_credentials=[_descriptor(credential) for credential in existing],
    )
    challenge_id = _store_challenge(session, user, REGISTRATION, options.challenge, now=now)
    return challenge_id, options_to_json(options)


def complete_registration(
    session: Session,
    settings: Settings,
    user: User,
    *,
    challenge_id: str,
    credential_json: str,
    name: str,
    now: int,
    origin: Origin = SYSTEM_ORIGIN,
) -> WebAuthnCredential:
    """Verify the attestation and store the credential; the first factor enrols the user."""
    challenge = _claim_challenge(session, user, challenge_id, REGISTRATION, now=now, origin=origin)
    try:
        parsed: RegistrationCredential = parse_registration_credential_json(credential_json)
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=expected_origin(settings),
        )
    except _BAD_INPUT:
        raise fail(session, user, "webauthn", "invalid_attestation", origin=origin) from None
    taken = session.scalar(
        select(WebAuthnCredential.pk).where(
            WebAuthnCredential.credential_id == verified.credential_id
        )
    )
    if taken is not None:
        raise fail(session, user, "webauthn", "credential_exists", origin=origin)
    transports = parsed.response.transports
    credential = WebAuthnCredential(
        id=new_id("wac"),
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=[t.value for t in transports] if transports else None,
        name=(" ".join(name.split()) or DEFAULT_NAME)[:NAME_MAX],
        created=now,
    )
    session.add(credential)
    mark_enrolled(user)
    session.flush()
    audit(
        session,
        user,
        "identity.mfa.enroll",
        "success",
        origin=origin,
        factor="webauthn",
        credential=credential.id,
    )
    return credential


def authentication_options(
    session: Session, settings: Settings, user: User, *, now: int
) -> tuple[str, str]:
    """Start a login or step-up with a security key: `(challenge_id, options JSON)` for
    `navigator.credentials.get()`."""
    options = generate_authentication_options(
        rp_id=settings.webauthn_rp_id,
        timeout=CHALLENGE_TTL_SECONDS * 1000,
        allow_credentials=[_descriptor(c) for c in _credentials(session, user)],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    challenge_id = _store_challenge(session, user, AUTHENTICATION, options.challenge, now=now)
    return challenge_id, options_to_json(options)


def verify_authentication(
    session: Session,
    settings: Settings,
    user: User,
    *,
    challenge_id: str,
    credential_json: str,
    now: int,
    origin: Origin = SYSTEM_ORIGIN,
) -> None:
    """Verify an assertion from one of the user's credentials; raises `MfaFailed` (audited)."""
    challenge = _claim_challenge(
        session, user, challenge_id, AUTHENTICATION, now=now, origin=origin
    )
    try:
        parsed: AuthenticationCredential = parse_authentication_credential_json(credential_json)
    except _BAD_INPUT:
        raise fail(session, user, "webauthn", "malformed", origin=origin) from None
    credential = session.scalar(
        select(WebAuthnCredential).where(
            WebAuthnCredential.credential_id == parsed.raw_id,
            WebAuthnCredential.user_id == user.id,
        )
    )
    if credential is None:
        # Unknown, or another account's key: the second factor must be this user's own.
        raise fail(session, user, "webauthn", "unknown_credential", origin=origin)
    handle = parsed.response.user_handle
    if handle is not None and handle != user.id.encode():
        raise fail(session, user, "webauthn", "user_handle_mismatch", origin=origin)
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=expected_origin(settings),
            credential_public_key=credential.public_key,
            # The library refuses a count that does not increase when either side is non-zero
            # (§6.1.1 signature counter; authenticators that keep no count always send 0).
            credential_current_sign_count=credential.sign_count,
        )
    except _BAD_INPUT:
        reason = _failure_reason(parsed, credential.sign_count)
        raise fail(session, user, "webauthn", reason, origin=origin) from None
    credential.sign_count = verified.new_sign_count
    credential.last_used_at = now
    session.flush()
    audit(
        session,
        user,
        "identity.mfa.verify",
        "success",
        origin=origin,
        factor="webauthn",
        credential=credential.id,
    )


def list_credentials(session: Session, user: User) -> list[WebAuthnCredential]:
    """The user's security keys and passkeys, oldest first (for the account page)."""
    return _credentials(session, user)


def remove_webauthn(
    session: Session,
    user: User,
    credential_id: str,
    *,
    origin: Origin = SYSTEM_ORIGIN,
) -> None:
    """Remove one security key (`wac_…`). Refused when it is the only factor left (I3, no
    bypass). The caller demands step-up first."""
    credential = session.scalar(
        select(WebAuthnCredential).where(
            WebAuthnCredential.id == credential_id, WebAuthnCredential.user_id == user.id
        )
    )
    if credential is None:
        # Another user's key is as missing as a key that never existed (I5 object-level checks).
        raise ResourceMissing("webauthn_credential", credential_id)
    if user.mfa_enrolled and confirmed_factor_count(session, user.id) <= 1:
        raise InvalidRequestError(
            "This is your only second factor. Add another before removing it.",
            code="mfa_last_factor",
        )
    session.delete(credential)
    session.flush()
    audit(
        session,
        user,
        "identity.mfa.remove",
        "success",
        origin=origin,
        factor="webauthn",
        credential=credential_id,
    )


def _credentials(session: Session, user: User) -> list[WebAuthnCredential]:
    return list(
        session.scalars(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user.id)
            .order_by(WebAuthnCredential.pk)
        )
    )


def _descriptor(credential: WebAuthnCredential) -> PublicKeyCredentialDescriptor:
    # Transports were recorded from the browser's own report; unknown values were already dropped
    # by the library's parser at registration.
    transports = [AuthenticatorTransport(t) for t in credential.transports or []]
    return PublicKeyCredentialDescriptor(id=credential.credential_id, transports=transports or None)


def _store_challenge(session: Session, user: User, kind: str, challenge: bytes, *, now: int) -> str:
    # Spent and stale challenges of this user are of no further use; keep the table small.
    session.execute(
        delete(MfaChallenge).where(
            MfaChallenge.user_id == user.id,
            or_(MfaChallenge.used_at.is_not(None), MfaChallenge.expires_at <= now),
        )
    )
    row = MfaChallenge(
        id=new_id("mfac"),
        user_id=user.id,
        kind=kind,
        challenge=challenge,
        expires_at=now + CHALLENGE_TTL_SECONDS,
        used_at=None,
    )
    session.add(row)
    session.flush()
    return row.id


def _claim_challenge(
    session: Session,
    user: User,
    challenge_id: str,
    kind: str,
    *,
    now: int,
    origin: Origin,
) -> bytes:
    """Spend the challenge (single use) and return its bytes, or raise `MfaFailed` (audited)."""
    ensure_active(session, user, "webauthn", origin=origin)
    row = session.scalar(
        select(MfaChallenge).where(
            MfaChallenge.id == challenge_id,
            MfaChallenge.user_id == user.id,
            MfaChallenge.kind == kind,
        )
    )
    if row is None:
        raise fail(session, user, "webauthn", "unknown_challenge", origin=origin)
    # Claimed before anything else is checked, so a failed attempt also spends it; the condition
    # on `used_at` makes two concurrent uses race for one row update, and only one wins.
    claimed = session.execute(
        update(MfaChallenge)
        .where(MfaChallenge.pk == row.pk, MfaChallenge.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if cast("CursorResult[Any]", claimed).rowcount != 1:
        raise fail(session, user, "webauthn", "challenge_replayed", origin=origin)
    if row.expires_at <= now:
        raise fail(session, user, "webauthn", "challenge_expired", origin=origin)
    return row.challenge


def _failure_reason(parsed: AuthenticationCredential, stored_count: int) -> str:
    """Name the failure for the audit log: a counter that went backwards is a clone signal the
    security officer should see as such, not as one more bad signature."""
    try:
        reported = parse_authenticator_data(parsed.response.authenticator_data).sign_count
    except _BAD_INPUT:
        return "invalid_assertion"
    if (reported > 0 or stored_count > 0) and reported <= stored_count:
        return "sign_count_regression"
    return "invalid_assertion"
