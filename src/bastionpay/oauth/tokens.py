"""JWT access tokens (RFC 9068) for third-party apps, and their verification (I6).

A token is a JWS signed with ES256 by joserfc (`kid` in the header, `typ: at+jwt`), carrying `iss`
(Settings.public_url), `aud` (the `/v1` API), `sub` (the consenting user, or the client itself for
client credentials), `client_id`, `scope`, `jti`, `iat`, `nbf`, `exp`, and BastionPay's `merchant`
(acct_…) and `livemode`. Resource servers may verify it offline against `/oauth/jwks.json`; the
`/v1` API also checks, per request, that the token, its client and its user have not been revoked
since (RFC 9700 §4.12 wants revocation to bite before expiry).

Verification raises `AuthenticationError` with one message for every failure: a caller learns
nothing about which check failed (the reason is never the token itself either, L3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.config import Settings
from bastionpay.db.uow import unit_of_work
from bastionpay.identity.models import User
from bastionpay.kernel.errors import AuthenticationError
from bastionpay.oauth.keys import ALGORITHM, LEEWAY_SECONDS, signing_keys
from bastionpay.oauth.models import OAuthAccessToken, OAuthClient
from bastionpay.runtime import Runtime

TOKEN_TYPE: Final = "at+jwt"  # noqa: S105 - not a secret; RFC 9068 §2.1: the header type that tells it from an ID token
# A JWT we issue is well under 1 KiB; anything far larger is not ours and is not parsed.
MAX_TOKEN_LENGTH: Final = 4096
_INVALID: Final = "Invalid access token."


def issuer(settings: Settings) -> str:
    return settings.public_url.rstrip("/")


def audience(settings: Settings) -> str:
    """The resource server the tokens are for: the merchant API."""
    return issuer(settings) + "/v1"


@dataclass(frozen=True)
class TokenPrincipal:
    merchant_id: str
    livemode: bool
    client_id: str
    user_id: str | None
    scopes: frozenset[str]
    token_id: str


def invalid_token() -> AuthenticationError:
    return AuthenticationError(_INVALID, code="invalid_token")


def sign(settings: Settings, claims: dict[str, Any], *, now: int) -> tuple[str, bool]:
    """Sign `claims` with the current key; also says whether that key was just rotated in."""
    key, rotated = signing_keys(settings).current(now)
    header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": key.kid}
    return jwt.encode(header, claims, key.key, algorithms=[ALGORITHM]), rotated


def decode(settings: Settings, token: str, *, now: int) -> dict[str, Any]:
    """The claims of a token we issued that is valid at `now` (signature, typ, iss, aud, exp, nbf);
    raises AuthenticationError. Does not look at revocation: see `check_live`."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token()
    keys = signing_keys(settings).verification_set(now)
    if keys is None:
        raise invalid_token()
    try:
        # The algorithm allow-list (ES256 only) is enforced here: `none`, HS256 with the public key
        # as secret and every other confusion are refused before any signature check (I6).
        decoded = jwt.decode(token, keys, algorithms=[ALGORITHM])
        if decoded.header.get("typ") != TOKEN_TYPE:
            raise invalid_token()
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer(settings)},
            aud={"essential": True, "value": audience(settings)},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
            sub={"essential": True},
            client_id={"essential": True},
            merchant={"essential": True},
            scope={"essential": True},
        )
        registry.validate(decoded.claims)
    except (JoseError, ValueError, TypeError):
        raise invalid_token() from None
    claims = dict(decoded.claims)
    if not isinstance(claims.get("livemode"), bool) or not isinstance(claims.get("scope"), str):
        raise invalid_token()
    return claims


def check_live(session: Session, claims: dict[str, Any], *, now: int) -> OAuthAccessToken:
    """Raise unless the token's record, its client and its user are all still in good standing."""
    record = session.scalar(select(OAuthAccessToken).where(OAuthAccessToken.jti == claims["jti"]))
    if record is None or record.revoked_at is not None or record.expires_at + LEEWAY_SECONDS < now:
        raise invalid_token()
    client = session.scalar(select(OAuthClient).where(OAuthClient.client_id == record.client_id))
    if (
        client is None
        or client.revoked_at is not None
        or client.client_id != claims["client_id"]
        or client.merchant_id != claims["merchant"]
        or client.livemode != claims["livemode"]
    ):
        raise invalid_token()
    if record.user_id is not None:
        user = session.scalar(select(User).where(User.id == record.user_id))
        # A disabled user, or one whose role or password changed since consent, ends the grant.
        if (
            user is None
            or user.status != "active"
            or user.security_generation != record.user_generation
            or user.merchant_id != client.merchant_id
        ):
            raise invalid_token()
    return record


def principal_from(claims: dict[str, Any]) -> TokenPrincipal:
    user_id = claims["sub"] if claims["sub"] != claims["client_id"] else None
    return TokenPrincipal(
        merchant_id=str(claims["merchant"]),
        livemode=bool(claims["livemode"]),
        client_id=str(claims["client_id"]),
        user_id=user_id,
        scopes=frozenset(str(claims["scope"]).split()),
        token_id=str(claims["jti"]),
    )


def verify_access_token(runtime: Runtime, token: str, *, now: int) -> TokenPrincipal:
    """The principal a `/v1` bearer token stands for; raises AuthenticationError (I6)."""
    claims = decode(runtime.settings, token, now=now)
    with unit_of_work(runtime.db, write=False) as session:
        check_live(session, claims, now=now)
    return principal_from(claims)
