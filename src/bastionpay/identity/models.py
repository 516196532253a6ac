"""Operator accounts and what authenticates them (issue 5; SECURITY-REQUIREMENTS I1–I4, I7).

Nothing here holds a secret in the clear: passwords are argon2id hashes, session ids and recovery
codes and invitation tokens are stored as keyed hashes, TOTP seeds are AES-GCM ciphertexts under the
identity key, WebAuthn keeps only public keys.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from bastionpay.db.base import Base, PkType


class User(Base):
    """A person who logs in: a merchant's staff (`merchant_id` set) or a platform operator."""

    __tablename__ = "users"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # usr_…
    # Lower-cased and trimmed; one account per address across the platform.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    merchant_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    role: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # active | disabled
    disabled_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    # The last 4 hashes (I1: not one of the last 4), newest first, not including the current one.
    password_history: Mapped[list[str]] = mapped_column(JSON)
    password_changed_at: Mapped[int] = mapped_column(BigInteger)
    # Lockout (I2): consecutive failures and the end of the current lock, if any.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # MFA is mandatory (I3): until a factor is enrolled the first login leads to enrollment.
    mfa_enrolled: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[int] = mapped_column(BigInteger)
    last_login_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # When an administrator last re-enabled the account: restarts the inactivity clock (I7), or an
    # account disabled for inactivity would be disabled again by the next worker run.
    enabled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Bumped on role change, password change, disable: sessions and refresh tokens issued under an
    # older generation are dead (I4 "rotated at privilege change", logout everywhere).
    security_generation: Mapped[int] = mapped_column(Integer, default=0)


class UserSession(Base):
    """A server-side session (I4). The cookie carries the id; the row carries only its hash."""

    __tablename__ = "user_sessions"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    # "password": the password is proven but MFA is not yet; "active": fully authenticated.
    stage: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    created: Mapped[int] = mapped_column(BigInteger)
    last_seen: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)  # absolute lifetime
    # When a second factor was last proven (step-up: ≤ 5 minutes old for sensitive actions).
    mfa_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The CSRF token is derived from the session id with a keyed hash; nothing more to store.
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class TotpCredential(Base):
    __tablename__ = "totp_credentials"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # totp_…
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    # The last time step accepted: a code is accepted once (I3, replay).
    last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created: Mapped[int] = mapped_column(BigInteger)


class WebAuthnCredential(Base):
    __tablename__ = "webauthn_credentials"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # wac_…
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE key
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    name: Mapped[str] = mapped_column(String(64))
    created: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class MfaChallenge(Base):
    """A pending WebAuthn ceremony: its challenge is single-use and short-lived."""

    __tablename__ = "mfa_challenges"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # mfac_…
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # registration | authentication
    challenge: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Invitation(Base):
    """A merchant owner's (or admin's) invitation for a new staff member."""

    __tablename__ = "invitations"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # inv_…
    merchant_id: Mapped[str] = mapped_column(String(64), index=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[str] = mapped_column(String(64))
    created: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    accepted_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
