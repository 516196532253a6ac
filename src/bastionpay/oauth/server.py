"""Authlib's OAuth 2.0 server behind a small, framework-free adapter (I6; RFC 6749, 7636, 7009,
7662, 9068, 9700).

Authlib has no Starlette server integration, so `OAuthServer` provides what its Flask and Django
integrations provide: `create_oauth2_request` (an `OAuth2Request` over the method, URL, parameters
and headers already read by the async view), `create_json_request`, and `handle_response` (a
Starlette `Response`). One server object is built per request, bound to that request's database
session, clock reading and origin; the view runs it in a worker thread inside one unit of work, so a
grant, its tokens and their audit events commit together (P2, P3).

What we add to Authlib's grants, and why:
- PKCE is mandatory for every client and only `S256` is accepted (I6; RFC 9700 §2.1.1): Authlib's
  `CodeChallenge(required=True)` still lets a confidential client omit it and accepts `plain`.
- Codes and refresh tokens are single use through a conditional UPDATE; a second redemption of a
  code, or a rotated refresh token presented again, revokes the whole family and is audited
  (`oauth.token.reuse_detected`; RFC 6749 §4.1.2, RFC 9700 §4.14.2).
- Access tokens are RFC 9068 JWTs signed by `oauth.tokens.sign` with the runtime's clock.
- Authlib logs issued tokens at DEBUG level; its logger is held at WARNING so no token can reach a
  log line whatever the process's log level (L3).
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    JsonPayload,
    JsonRequest,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import Headers
from starlette.responses import Response

from bastionpay.audit.events import Action, ActorType, AuditEvent, Origin, Outcome, record
from bastionpay.identity.models import User
from bastionpay.kernel.errors import AuthenticationError
from bastionpay.kernel.ids import new_id
from bastionpay.oauth import grants as store
from bastionpay.oauth.clients import CONFIDENTIAL_AUTH, PUBLIC_AUTH, SCOPES, secret_digest
from bastionpay.oauth.keys import ALGORITHM
from bastionpay.oauth.models import (
    OAuthAccessToken,
    OAuthAuthorizationCode,
    OAuthClient,
    OAuthRefreshToken,
)
from bastionpay.oauth.tokens import audience, check_live, decode, issuer, sign
from bastionpay.runtime import Runtime

logging.getLogger("authlib").setLevel(logging.WARNING)

REFRESH_TOKEN_BYTES: Final = 32  # 256 bits
SECRET_AUTH_METHODS: Final = ["client_secret_basic", "client_secret_post"]
ANY_AUTH_METHODS: Final = [*SECRET_AUTH_METHODS, "none"]


@dataclass(frozen=True)
class IncomingRequest:
    """What the async view read from the HTTP request, handed to the worker thread."""

    method: str
    uri: str
    headers: Headers
    params: list[tuple[str, str]]


@dataclass
class Context:
    """One request's view of the world: the server object's dependencies."""

    runtime: Runtime
    session: Session
    now: int
    origin: Origin
    # Set by the token generator for `save_token`: the access token just signed.
    issued: list[dict[str, Any]] = field(default_factory=list)

    def audit(
        self,
        action: Action,
        outcome: Outcome,
        *,
        actor_type: ActorType,
        actor_id: str,
        merchant_id: str | None,
        livemode: bool | None,
        target_type: str | None = None,
        target_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        record(
            self.session,
            AuditEvent(
                actor_type=actor_type,
                actor_id=actor_id,
                action=action,
                outcome=outcome,
                merchant_id=merchant_id,
                livemode=livemode,
                target_type=target_type,
                target_id=target_id,
                origin=self.origin,
                details=details or {},
            ),
        )


# --- the adapter: Authlib's request objects over what the view read -------------------------


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, params: list[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in params:
            self._data.setdefault(key, value)  # the first value; duplicates are refused anyway
            self._datalist[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class AdapterRequest(OAuth2Request):  # type: ignore[misc]
    def __init__(self, incoming: IncomingRequest) -> None:
        super().__init__(method=incoming.method, uri=incoming.uri, headers=incoming.headers)
        self.payload = _Payload(incoming.params)
        self._params = self.payload.data

    @property
    def args(self) -> dict[str, str]:
        return dict(self._params)

    @property
    def form(self) -> dict[str, str]:
        return dict(self._params)


class _JsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: dict[str, str]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, str]:
        return self._data


# --- models Authlib reads ------------------------------------------------------------------


class Client(ClientMixin):  # type: ignore[misc]
    def __init__(self, row: OAuthClient, ctx: Context) -> None:
        self.row = row
        self.ctx = ctx

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:
        # The redirect URI is always required and compared exactly (RFC 9700 §4.1.3).
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        allowed = self.row.scopes
        if not scope:
            return " ".join(allowed)
        kept = [s for s in scope_to_list(scope) if s in allowed]
        return " ".join(kept) if kept else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        digest = self.row.secret_hash
        if digest is None or not client_secret or len(client_secret) > store.MAX_PRESENTED:
            return False
        # Constant-time comparison of keyed hashes (ARCHITECTURE: secrets use compare_digest).
        return hmac.compare_digest(
            secret_digest(self.ctx.runtime.identity_keys, client_secret), digest
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.row.token_endpoint_auth_method == PUBLIC_AUTH:
            return method == "none"
        return self.row.token_endpoint_auth_method == CONFIDENTIAL_AUTH and method in (
            SECRET_AUTH_METHODS
        )

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.row.grant_types


class CodeRecord:
    def __init__(self, row: OAuthAuthorizationCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope


@dataclass
class FoundToken:
    """A token found for introspection or revocation (RFC 7662, RFC 7009)."""

    kind: str  # access_token | refresh_token
    client_id: str
    scope: str
    sub: str
    exp: int
    iat: int
    merchant_id: str
    livemode: bool
    revoked: bool
    expired: bool
    jti: str | None = None
    family_id: str | None = None

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.expired

    def is_revoked(self) -> bool:
        return self.revoked


# --- grants --------------------------------------------------------------------------------


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client, S256 only (I6; RFC 9700 §2.1.1, RFC 7636 §4.2)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    CODE_CHALLENGE_METHODS: ClassVar[dict[str, Callable[[str, str], bool]]] = {
        "S256": lambda verifier, challenge: hmac.compare_digest(
            create_s256_code_challenge(verifier), challenge
        )
    }

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send 'code_challenge' (S256).")
        # An absent method means `plain` (RFC 7636 §4.3): refused like an explicit `plain`.
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only the 'S256' code_challenge_method is supported.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ANY_AUTH_METHODS
    AUTHORIZATION_CODE_LENGTH = 48
    # Set by the consent view: the requested scopes the consenting user's role holds.
    granted_scope: str | None = None

    @property
    def ctx(self) -> Context:
        server: OAuthServer = self.server
        return server.ctx

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        ctx = self.ctx
        if self.granted_scope is None:
            raise RuntimeError("no consented scope for this authorization")  # fail closed (P3)
        user: User = request.user
        data = request.payload.data
        ctx.session.add(
            OAuthAuthorizationCode(
                code_hash=store.code_digest(ctx.runtime.identity_keys, code),
                client_id=request.client.get_client_id(),
                user_id=user.id,
                redirect_uri=request.payload.redirect_uri,
                scope=self.granted_scope,
                code_challenge=data["code_challenge"],
                code_challenge_method=data["code_challenge_method"],
                family_id=new_id("ofam"),
                created=ctx.now,
                expires_at=ctx.now + ctx.runtime.settings.oauth_code_seconds,
            )
        )
        ctx.session.flush()

    def query_authorization_code(self, code: str, client: Client) -> CodeRecord | None:
        ctx = self.ctx
        row = store.find_code(ctx.session, ctx.runtime.identity_keys, code)
        if row is None or row.client_id != client.get_client_id():
            return None
        if row.used_at is not None:
            # RFC 6749 §4.1.2: a code used twice is denied and what it produced is revoked.
            _reuse_detected(ctx, client.row, row.family_id, kind="authorization_code")
            return None
        if row.expires_at <= ctx.now:
            return None
        return CodeRecord(row)

    def validate_token_request(self) -> None:
        super().validate_token_request()  # client, code, redirect URI, then PKCE (hook)
        record_: CodeRecord = self.request.authorization_code
        if not store.claim_code(self.ctx.session, record_.row, now=self.ctx.now):
            _reuse_detected(
                self.ctx, self.client.row, record_.row.family_id, kind="authorization_code"
            )
            raise InvalidGrantError("Invalid 'code' in request.")

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        # Kept, marked used, so a second redemption is recognised as reuse (I6).
        return None

    def authenticate_user(self, authorization_code: CodeRecord) -> User | None:
        return _active_user(self.ctx, authorization_code.row.user_id, self.client.row)


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ANY_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation (I6; RFC 9700 §4.14.2)

    @property
    def ctx(self) -> Context:
        server: OAuthServer = self.server
        return server.ctx

    def authenticate_refresh_token(self, refresh_token: str) -> FoundRefresh | None:
        ctx = self.ctx
        row = store.find_refresh_token(ctx.session, ctx.runtime.identity_keys, refresh_token)
        if row is None:
            return None
        if row.used_at is not None:
            client = ctx.session.scalar(
                select(OAuthClient).where(OAuthClient.client_id == row.client_id)
            )
            _reuse_detected(ctx, client, row.family_id, kind="refresh_token")
            return None
        if row.revoked_at is not None or row.expires_at <= ctx.now:
            return None
        return FoundRefresh(row)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        found: FoundRefresh = self.request.refresh_token
        if not store.claim_refresh_token(self.ctx.session, found.row, now=self.ctx.now):
            _reuse_detected(self.ctx, self.client.row, found.row.family_id, kind="refresh_token")
            raise InvalidGrantError()

    def authenticate_user(self, refresh_token: FoundRefresh) -> User | None:
        user = _active_user(self.ctx, refresh_token.row.user_id, self.client.row)
        if user is None or user.security_generation != refresh_token.row.user_generation:
            return None
        return user

    def revoke_old_credential(self, refresh_token: FoundRefresh) -> None:
        # Already marked used by the claim in validate_token_request (single use).
        return None


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_AUTH_METHODS


class FoundRefresh:
    def __init__(self, row: OAuthRefreshToken) -> None:
        self.row = row

    def check_client(self, client: Client) -> bool:
        return self.row.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.row.scope


def _active_user(ctx: Context, user_id: str, client: OAuthClient) -> User | None:
    user = ctx.session.scalar(select(User).where(User.id == user_id))
    if user is None or user.status != "active" or user.merchant_id != client.merchant_id:
        return None
    return user


def _reuse_detected(ctx: Context, client: OAuthClient | None, family_id: str, *, kind: str) -> None:
    store.revoke_family(ctx.session, family_id, now=ctx.now)
    ctx.audit(
        "oauth.token.reuse_detected",
        "denied",
        actor_type="oauth_client",
        actor_id=client.client_id if client else "unknown",
        merchant_id=client.merchant_id if client else None,
        livemode=client.livemode if client else None,
        target_type="oauth_grant",
        target_id=family_id,
        details={"credential": kind, "family_revoked": True},
    )


# --- tokens --------------------------------------------------------------------------------


class AccessTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    """RFC 9068 access tokens with BastionPay's claims, signed at the runtime clock's time."""

    def __init__(self, ctx: Context) -> None:
        settings = ctx.runtime.settings
        super().__init__(
            issuer=issuer(settings),
            alg=ALGORITHM,
            refresh_token_generator=lambda **_: secrets.token_urlsafe(REFRESH_TOKEN_BYTES),
            expires_generator=lambda client, grant_type: settings.oauth_access_token_seconds,
        )
        self.ctx = ctx

    def access_token_generator(
        self, client: Client, grant_type: str, user: User | None, scope: str
    ) -> str:
        ctx = self.ctx
        settings = ctx.runtime.settings
        claims: dict[str, Any] = {
            "iss": issuer(settings),
            "aud": audience(settings),
            "sub": user.id if user is not None else client.get_client_id(),
            "client_id": client.get_client_id(),
            "scope": scope,
            "jti": new_id("atok"),
            "iat": ctx.now,
            "nbf": ctx.now,
            "exp": ctx.now + settings.oauth_access_token_seconds,
            "merchant": client.row.merchant_id,
            "livemode": client.row.livemode,
        }
        token, rotated = sign(settings, claims, now=ctx.now)
        if rotated:
            ctx.audit(
                "oauth.signing_key.rotate",
                "success",
                actor_type="system",
                actor_id="oauth",
                merchant_id=None,
                livemode=None,
                target_type="oauth_signing_key",
            )
        ctx.issued.append(claims)
        return token


class OAuthServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, ctx: Context) -> None:
        super().__init__(scopes_supported=sorted(SCOPES))
        self.ctx = ctx
        self.register_token_generator("default", AccessTokenGenerator(ctx))
        self.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(ClientCredentialsGrant)
        self.register_endpoint(Introspection(server=self))
        self.register_endpoint(Revocation(server=self))

    # The adapter (what Authlib's Flask/Django integrations provide).
    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return AdapterRequest(request)

    def create_json_request(self, request: IncomingRequest) -> JsonRequest:
        # No endpoint we register reads JSON; provided for completeness of the adapter, over the
        # same parameters the view read (never a body parsed twice).
        json_request = JsonRequest(request.method, request.uri, request.headers)
        json_request.payload = _JsonPayload(dict(request.params))
        return json_request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        content = json.dumps(body) if isinstance(body, dict) else (body or "")
        return Response(content, status_code=status, headers=dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def handle_error_response(self, request: OAuth2Request, error: OAuth2Error) -> Response:
        # Every refusal is an audit event (L1): which client, which grant, which error code —
        # never the presented secret, code or token (L3).
        client_row: OAuthClient | None = request.client.row if request.client else None
        client_id = client_row.client_id if client_row else request.payload.client_id
        self.ctx.audit(
            "oauth.authorization.fail",
            "failure",
            actor_type="oauth_client",
            actor_id=str(client_id or "unknown")[:64],
            merchant_id=client_row.merchant_id if client_row else None,
            livemode=client_row.livemode if client_row else None,
            target_type="oauth_client",
            target_id=client_row.client_id if client_row else None,
            details={
                "error": error.error,
                "grant_type": str(request.payload.grant_type or "")[:40] or None,
                "response_type": str(request.payload.response_type or "")[:40] or None,
            },
        )
        response: Response = super().handle_error_response(request, error)
        return response

    def query_client(self, client_id: Any) -> Client | None:
        if not isinstance(client_id, str) or not client_id or len(client_id) > 64:
            return None
        row = self.ctx.session.scalar(
            select(OAuthClient).where(
                OAuthClient.client_id == client_id, OAuthClient.revoked_at.is_(None)
            )
        )
        return Client(row, self.ctx) if row is not None else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        ctx = self.ctx
        settings = ctx.runtime.settings
        client: Client = request.client
        user: User | None = request.user
        claims = ctx.issued[-1]
        grant_type = request.payload.grant_type
        family_id: str | None = None
        family_expires: int | None = None
        if grant_type == "authorization_code":
            family_id = request.authorization_code.row.family_id
            family_expires = ctx.now + settings.oauth_refresh_token_seconds
        elif grant_type == "refresh_token":
            previous: OAuthRefreshToken = request.refresh_token.row
            family_id, family_expires = previous.family_id, previous.expires_at
        generation = user.security_generation if user is not None else None
        ctx.session.add(
            OAuthAccessToken(
                jti=claims["jti"],
                client_id=client.get_client_id(),
                user_id=user.id if user is not None else None,
                family_id=family_id,
                user_generation=generation,
                scope=claims["scope"],
                created=ctx.now,
                expires_at=claims["exp"],
            )
        )
        refresh = token.get("refresh_token")
        if refresh and user is not None and family_id is not None and family_expires is not None:
            ctx.session.add(
                OAuthRefreshToken(
                    token_hash=store.refresh_digest(ctx.runtime.identity_keys, refresh),
                    family_id=family_id,
                    client_id=client.get_client_id(),
                    user_id=user.id,
                    user_generation=user.security_generation,
                    scope=claims["scope"],
                    created=ctx.now,
                    # Rotation never extends the family's absolute lifetime (I6).
                    expires_at=family_expires,
                )
            )
            # The refresh token may not outlive its family (rotation inherits the end).
            token["refresh_token_expires_in"] = max(family_expires - ctx.now, 0)
        ctx.session.flush()
        ctx.audit(
            "oauth.token.refresh" if grant_type == "refresh_token" else "oauth.token.issue",
            "success",
            actor_type="oauth_client",
            actor_id=client.get_client_id(),
            merchant_id=client.row.merchant_id,
            livemode=client.row.livemode,
            target_type="oauth_access_token",
            target_id=claims["jti"],
            details={
                "grant_type": grant_type,
                "scope": claims["scope"],
                "user": user.id if user is not None else None,
                "family": family_id,
            },
        )


# --- introspection and revocation ----------------------------------------------------------


def find_token(ctx: Context, token: str, hint: str | None) -> FoundToken | None:
    order = (
        ("refresh_token", "access_token")
        if hint == "refresh_token"
        else (
            "access_token",
            "refresh_token",
        )
    )
    for kind in order:
        found = _find_access(ctx, token) if kind == "access_token" else _find_refresh(ctx, token)
        if found is not None:
            return found
    return None


def _find_access(ctx: Context, token: str) -> FoundToken | None:
    if token.count(".") != 2:
        return None
    try:
        claims = decode(ctx.runtime.settings, token, now=ctx.now)
    except AuthenticationError:
        return None  # expired, forged or not ours: inactive (RFC 7662 §2.2)
    revoked = False
    try:
        check_live(ctx.session, claims, now=ctx.now)
    except AuthenticationError:
        revoked = True
    return FoundToken(
        kind="access_token",
        client_id=str(claims["client_id"]),
        scope=str(claims["scope"]),
        sub=str(claims["sub"]),
        exp=int(claims["exp"]),
        iat=int(claims["iat"]),
        merchant_id=str(claims["merchant"]),
        livemode=bool(claims["livemode"]),
        revoked=revoked,
        expired=False,
        jti=str(claims["jti"]),
    )


def _find_refresh(ctx: Context, token: str) -> FoundToken | None:
    row = store.find_refresh_token(ctx.session, ctx.runtime.identity_keys, token)
    if row is None:
        return None
    client = ctx.session.scalar(select(OAuthClient).where(OAuthClient.client_id == row.client_id))
    if client is None:
        return None
    user = _active_user(ctx, row.user_id, client)
    return FoundToken(
        kind="refresh_token",
        client_id=row.client_id,
        scope=row.scope,
        sub=row.user_id,
        exp=row.expires_at,
        iat=row.created,
        merchant_id=client.merchant_id,
        livemode=client.livemode,
        revoked=(
            row.revoked_at is not None
            or row.used_at is not None
            or client.revoked_at is not None
            or user is None
            or user.security_generation != row.user_generation
        ),
        expired=row.expires_at <= ctx.now,
        family_id=row.family_id,
    )


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662 for confidential clients, about their own tokens only."""

    CLIENT_AUTH_METHODS = SECRET_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        server: OAuthServer = self.server
        return find_token(server.ctx, token_string, token_type_hint)

    def check_permission(self, token: FoundToken, client: Client, request: OAuth2Request) -> bool:
        # A client learns nothing about another client's tokens: they introspect as inactive.
        return token.client_id == client.get_client_id()

    def introspect_token(self, token: FoundToken) -> dict[str, Any]:
        server: OAuthServer = self.server
        settings = server.ctx.runtime.settings
        body: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
            "client_id": token.client_id,
            "scope": token.scope,
            "sub": token.sub,
            "iss": issuer(settings),
            "exp": token.exp,
            "iat": token.iat,
            "merchant": token.merchant_id,
            "livemode": token.livemode,
        }
        if token.kind == "access_token":
            body["aud"] = audience(settings)
            body["jti"] = token.jti
        return body


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009: public clients revoke with their client_id, confidential ones authenticate."""

    CLIENT_AUTH_METHODS = ANY_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        server: OAuthServer = self.server
        return find_token(server.ctx, token_string, token_type_hint)

    def revoke_token(self, token: FoundToken, request: OAuth2Request) -> None:
        server: OAuthServer = self.server
        ctx = server.ctx
        if token.kind == "access_token" and token.jti is not None:
            store.revoke_access_token(ctx.session, token.jti, now=ctx.now)
        elif token.family_id is not None:
            # Revoking a refresh token ends the grant: its family's access tokens too (§2.1).
            store.revoke_family(ctx.session, token.family_id, now=ctx.now)
        ctx.audit(
            "oauth.token.revoke",
            "success",
            actor_type="oauth_client",
            actor_id=token.client_id,
            merchant_id=token.merchant_id,
            livemode=token.livemode,
            target_type="oauth_grant" if token.kind == "refresh_token" else "oauth_access_token",
            target_id=token.family_id if token.kind == "refresh_token" else token.jti,
            details={"token_type": token.kind},
        )
