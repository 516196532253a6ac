"""OAuth 2.0 tables (issue 5, item 6; SECURITY-REQUIREMENTS I6, I7).

Nothing here holds a usable secret: client secrets, authorization codes and refresh tokens are
stored only as keyed hashes (`identity_keys.refresh_tokens`, one domain-separation prefix per kind),
so a database dump yields no credential. Access tokens are JWTs the client holds; the table keeps
only their `jti`, so one can be revoked (RFC 7009) before it expires.

A *family* is everything one grant produced: the authorization code, every refresh token rotated
from it and every access token issued along the way. Code reuse (RFC 6749 §4.1.2) and refresh-token
reuse (RFC 9700 §4.14.2) revoke the whole family.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bastionpay.db.base import Base, PkType


class OAuthClient(Base):
    """A third-party application registered by a merchant (confidential or public)."""

    __tablename__ = "oauth_clients"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)  # app_…
    merchant_id: Mapped[str] = mapped_column(String(64), index=True)
    livemode: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(100))
    # Keyed hash of the secret (I7: shown once, never stored); None for a public client.
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # "client_secret_basic" (confidential; client_secret_post also accepted) or "none" (public).
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    # Compared exactly, character for character (RFC 9700 §4.1.3).
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    grant_types: Mapped[list[str]] = mapped_column(JSON)
    created: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class OAuthAuthorizationCode(Base):
    """A single-use authorization code living `oauth_code_seconds` (≤ 60 s by default, I6)."""

    __tablename__ = "oauth_authorization_codes"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    scope: Mapped[str] = mapped_column(String(1024))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    family_id: Mapped[str] = mapped_column(String(64))
    created: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    # Set when redeemed; a second redemption finds it set and revokes the family.
    used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class OAuthRefreshToken(Base):
    """A rotating refresh token: each use marks it used and issues the next in the same family."""

    __tablename__ = "oauth_refresh_tokens"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    # The user's security generation at consent: a role or password change ends the grant.
    user_generation: Mapped[int] = mapped_column(Integer)
    scope: Mapped[str] = mapped_column(String(1024))
    created: Mapped[int] = mapped_column(BigInteger)
    # The family's absolute lifetime (I6): rotation never extends it.
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class OAuthAccessToken(Base):
    """The record of an issued JWT access token, by `jti`: revocation is checked per request."""

    __tablename__ = "oauth_access_tokens"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # None for client-credentials tokens (no grant to revoke as a whole).
    family_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    user_generation: Mapped[int | None] = mapped_column(Integer, nullable=True)
    scope: Mapped[str] = mapped_column(String(1024))
    created: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class OAuthConsent(Base):
    """What a user last granted an application: user × client × scopes (G2-style record)."""

    __tablename__ = "oauth_consents"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created: Mapped[int] = mapped_column(BigInteger)
    updated: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
