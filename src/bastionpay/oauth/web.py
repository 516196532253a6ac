"""The OAuth 2.0 endpoints (I6): authorize + consent, token, introspect, revoke, JWKS, metadata.

- `GET /oauth/authorize` needs a fully logged-in operator (`identity.web.current_user`); otherwise
  it redirects to `/login?next=<this URL>`. It shows a consent page naming the app and the scopes in
  plain words; the user can grant only scopes their role holds (I5) and only for an app of their
  own merchant. `POST /oauth/authorize` (same query) carries the session's CSRF token (T3) and the
  decision; the grant or the denial goes back to the registered redirect URI.
- `POST /oauth/token`, `/oauth/introspect`, `/oauth/revoke`: form bodies (≤ 16 KiB), parameters
  from the body only (a secret in a query string would land in access logs, L3).
- `GET /oauth/jwks.json` (public keys only) and `GET /.well-known/oauth-authorization-server`
  (RFC 8414).

Database work runs in a worker thread inside one unit of work (never on the event loop).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlsplit

import anyio
import anyio.to_thread
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc6749.util import scope_to_list
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bastionpay.audit.events import Origin
from bastionpay.db.uow import unit_of_work
from bastionpay.edge.networks import client_address, parse_networks
from bastionpay.edge.ratelimit import OAUTH_IP
from bastionpay.edge.respond import error_response
from bastionpay.identity import csrf
from bastionpay.identity.mfa.stepup import require_step_up
from bastionpay.identity.models import User, UserSession
from bastionpay.identity.roles import permissions_for
from bastionpay.identity.sessions import SESSION_COOKIE
from bastionpay.identity.web import current_user as session_user
from bastionpay.identity.web.http import BODY_TIMEOUT_SECONDS, check_same_origin
from bastionpay.kernel.errors import (
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    StepUpRequired,
)
from bastionpay.kernel.ids import new_id
from bastionpay.merchants import permissions as p
from bastionpay.oauth.clients import SCOPES
from bastionpay.oauth.keys import ALGORITHM, signing_keys
from bastionpay.oauth.models import OAuthConsent
from bastionpay.oauth.server import (
    SECRET_AUTH_METHODS,
    AuthorizationCodeGrant,
    Context,
    IncomingRequest,
    OAuthServer,
)
from bastionpay.oauth.tokens import issuer
from bastionpay.runtime import Runtime

CurrentUser = Callable[[Runtime, Request], "tuple[User, UserSession] | None"]

MAX_FORM_BYTES: Final = 16 * 1024
MAX_FIELDS: Final = 32
FORM_TYPE: Final = "application/x-www-form-urlencoded"
# The consent page: no script at all, styles only from this origin, the form posts only here and
# (because browsers apply form-action to the redirect that follows a submission) to the app's
# registered redirect URI; never framed (clickjacking a consent button is a classic, RFC 9700 §4.4).
PAGE_CSP: Final = (
    "default-src 'none'; style-src 'self'; form-action 'self'{extra}; "
    "frame-ancestors 'none'; base-uri 'none'"
)

# Consenting to these mints a credential that changes money or data, or reads the audit log, for
# as long as the refresh family lives (30 days) — and app tokens are never asked for step-up at
# `/v1`. So, like creating an API key, it needs a second factor proven within minutes (I3): a
# stolen session alone must not become a long-lived token through a public client (no secret:
# whoever holds the code and its PKCE verifier gets the tokens).
STEP_UP_SCOPES: Final = frozenset(
    {
        p.PAYMENTS_WRITE,
        p.REFUNDS_WRITE,
        p.CUSTOMERS_WRITE,
        p.AUDIT_READ,
        p.RISK_REVIEW,
        p.RISK_WRITE,
        p.DISPUTES_WRITE,  # accepting a dispute concedes the money
    }
)

SCOPE_WORDS: Final[dict[str, str]] = {
    p.PAYMENTS_READ: "See your payments",
    p.PAYMENTS_WRITE: "Create, confirm and cancel payments",
    p.REFUNDS_WRITE: "Refund payments",
    p.CUSTOMERS_READ: "See your customers",
    p.CUSTOMERS_WRITE: "Create and change customers",
    p.BALANCE_READ: "See your balance and transactions",
    p.AUDIT_READ: "Read your audit log",
    p.RISK_READ: "See fraud reviews, rules and lists",
    p.RISK_REVIEW: "Approve or reject payments held for review",
    p.RISK_WRITE: "Change fraud rules and lists",
    p.DISPUTES_READ: "See disputes (chargebacks) on your payments",
    p.DISPUTES_WRITE: "Answer disputes: submit evidence or accept them",
}

_templates = Environment(
    loader=PackageLoader("bastionpay.oauth", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


class FormError(Exception):
    pass


@dataclass(frozen=True)
class _Page:
    status: int
    html: str
    redirect_origin: str | None = None


def _json_error(error: str, description: str, status: int = 400) -> Response:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


async def _read_form(request: Request) -> list[tuple[str, str]]:
    """A bounded urlencoded body (T4: size and parameter-count limits)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != FORM_TYPE:
        raise FormError("The body must be application/x-www-form-urlencoded.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise FormError("The request body is too large.")
    chunks: list[bytes] = []
    size = 0
    # A body trickled in slowly would hold a connection and a worker (slow POST, T4): bounded in
    # time like the identity pages' forms and the /v1 bodies.
    with anyio.move_on_after(BODY_TIMEOUT_SECONDS) as scope:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_FORM_BYTES:
                raise FormError("The request body is too large.")
            chunks.append(chunk)
    if scope.cancelled_caught:
        raise FormError("The request body did not arrive in time.")
    try:
        return parse_qsl(
            b"".join(chunks).decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise FormError("The request body could not be read.") from None


def _query(request: Request) -> list[tuple[str, str]]:
    raw = request.url.query
    if len(raw) > MAX_FORM_BYTES:
        raise FormError("The query string is too large.")
    try:
        return parse_qsl(raw, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise FormError("The query string could not be read.") from None


def routes(runtime: Runtime, *, current_user: CurrentUser | None = None) -> list[BaseRoute]:
    """The OAuth routes. `current_user` defaults to Part C's `identity.web.current_user`; tests
    may pass another resolver of the logged-in operator (never a bypass: it must return a user
    and a live session)."""
    settings = runtime.settings
    trusted = parse_networks(settings.trusted_proxies)
    resolve_user: CurrentUser = current_user or session_user
    base = issuer(settings)

    def origin_of(request: Request) -> Origin:
        peer = request.client.host if request.client else None
        return Origin(
            ip=client_address(peer, request.headers.get("x-forwarded-for"), trusted),
            user_agent=(request.headers.get("user-agent") or "")[:256] or None,
        )

    def incoming(request: Request, params: list[tuple[str, str]]) -> IncomingRequest:
        # The URI from the configured public origin, not the Host header (which a client chooses).
        query = f"?{request.url.query}" if request.url.query else ""
        return IncomingRequest(
            method=request.method,
            uri=f"{base}{request.url.path}{query}",
            headers=request.headers,
            params=params,
        )

    def limit(origin: Origin) -> None:
        runtime.rate_limits.hit(OAUTH_IP, settings.rate_limit_oauth_ip, origin.ip or "unknown")

    def run(origin: Origin, work: Callable[[OAuthServer], Any]) -> Any:
        with unit_of_work(runtime.db, write=True) as session:
            ctx = Context(runtime=runtime, session=session, now=runtime.clock.now(), origin=origin)
            return work(OAuthServer(ctx))

    def form_endpoint(
        work: Callable[[OAuthServer, IncomingRequest], Response],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                # Before reading anything: a flood costs a counter, not a database hit (T4).
                await anyio.to_thread.run_sync(limit, origin_of(request))
            except (RateLimited, ServiceUnavailable) as exc:
                return error_response(exc, new_id("req"))
            try:
                req = incoming(request, await _read_form(request))
            except FormError as exc:
                return _json_error("invalid_request", str(exc))
            response: Response = await anyio.to_thread.run_sync(
                run, origin_of(request), lambda server: work(server, req)
            )
            return response

        return endpoint

    token = form_endpoint(lambda server, req: server.create_token_response(req))
    introspect = form_endpoint(
        lambda server, req: server.create_endpoint_response("introspection", req)
    )
    revoke = form_endpoint(lambda server, req: server.create_endpoint_response("revocation", req))

    async def jwks(request: Request) -> Response:
        return JSONResponse(signing_keys(settings).jwks(runtime.clock.now()))

    async def metadata(request: Request) -> Response:
        return JSONResponse(server_metadata(runtime))

    async def authorize(request: Request) -> Response:
        try:
            params = _query(request)
            form = await _read_form(request) if request.method == "POST" else []
        except FormError as exc:
            return _page(_error_page(400, str(exc)))
        found = await anyio.to_thread.run_sync(resolve_user, runtime, request)
        if found is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)
        user, user_session = found
        decision: str | None = None
        session_token = request.cookies.get(SESSION_COOKIE, "")
        if request.method == "POST":
            fields = dict(form)
            try:
                # Origin / Sec-Fetch-Site first (defence in depth), then the session's token (T3).
                check_same_origin(request, settings)
                csrf.check(runtime.identity_keys, session_token, fields.get(csrf.CSRF_FIELD))
            except PermissionDenied as exc:
                return _page(_error_page(403, exc.message))
            decision = fields.get("decision")
            if decision not in ("allow", "deny"):
                return _page(_error_page(400, "Choose Allow or Deny."))
        req = incoming(request, params)
        csrf_token = csrf.token_for(runtime.identity_keys, session_token) if session_token else ""
        result: Response | _Page = await anyio.to_thread.run_sync(
            run,
            origin_of(request),
            lambda server: _authorize(
                server,
                req,
                user,
                decision,
                csrf_token,
                request.url.query,
                step_up_fresh=_step_up_fresh(runtime, user_session),
            ),
        )
        return result if isinstance(result, Response) else _page(result)

    return [
        Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
        Route("/oauth/token", token, methods=["POST"]),
        Route("/oauth/introspect", introspect, methods=["POST"]),
        Route("/oauth/revoke", revoke, methods=["POST"]),
        Route("/oauth/jwks.json", jwks, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
    ]


def _step_up_fresh(runtime: Runtime, user_session: UserSession) -> bool:
    try:
        require_step_up(
            user_session,
            now=runtime.clock.now(),
            max_age=runtime.settings.step_up_max_age_seconds,
        )
    except StepUpRequired:
        return False
    return True


def _authorize(
    server: OAuthServer,
    req: IncomingRequest,
    user: User,
    decision: str | None,
    csrf_token: str,
    query: str,
    *,
    step_up_fresh: bool,
) -> Response | _Page:
    ctx = server.ctx
    oauth_request = server.create_oauth2_request(req)
    try:
        grant: AuthorizationCodeGrant = server.get_consent_grant(oauth_request, end_user=user)
    except OAuth2Error as error:
        # Redirected to the app only when the redirect URI was validated against the client;
        # otherwise shown here (never an open redirector, RFC 6749 §4.1.2.1).
        response: Response = server.handle_error_response(oauth_request, error)
        if error.redirect_uri:
            return response
        return _error_page(400, f"This authorization request is not valid ({error.error}).")
    client = grant.client.row
    requested = scope_to_list(oauth_request.scope) or []
    held = permissions_for(user.role)
    grantable = [s for s in requested if s in held]
    withheld = [s for s in requested if s not in held]

    def refuse(reason: str) -> Response:
        ctx.audit(
            "oauth.consent.deny",
            "denied",
            actor_type="user",
            actor_id=user.id,
            merchant_id=client.merchant_id,
            livemode=client.livemode,
            target_type="oauth_client",
            target_id=client.client_id,
            details={"reason": reason, "requested": requested},
        )
        refused: Response = server.create_authorization_response(
            oauth_request, grant_user=None, grant=grant
        )
        return refused

    # An operator consents only for their own merchant's apps; platform operators for none (I5).
    if user.merchant_id is None or user.merchant_id != client.merchant_id:
        return refuse("other_merchant")
    if not grantable:
        return refuse("no_scope_held")
    if decision != "deny" and not step_up_fresh and STEP_UP_SCOPES.intersection(grantable):
        # Prove a factor again, then come back to this very request (I3 step-up).
        ctx.audit(
            "identity.step_up.required",
            "denied",
            actor_type="user",
            actor_id=user.id,
            merchant_id=client.merchant_id,
            livemode=client.livemode,
            target_type="oauth_client",
            target_id=client.client_id,
            details={"scopes": sorted(STEP_UP_SCOPES.intersection(grantable))},
        )
        back = quote("/oauth/authorize?" + query, safe="")
        return RedirectResponse(f"/account/step-up?next={back}", status_code=303)
    if decision is None:
        return _consent_page(
            client.name, grantable, withheld, csrf_token, query, grant.redirect_uri
        )
    if decision == "deny":
        return refuse("user_denied")
    grant.granted_scope = " ".join(grantable)
    _remember_consent(ctx, user, client.client_id, grantable)
    ctx.audit(
        "oauth.consent.grant",
        "success",
        actor_type="user",
        actor_id=user.id,
        merchant_id=client.merchant_id,
        livemode=client.livemode,
        target_type="oauth_client",
        target_id=client.client_id,
        details={"scopes": grantable, "withheld": withheld},
    )
    granted: Response = server.create_authorization_response(
        oauth_request, grant_user=user, grant=grant
    )
    return granted


def _remember_consent(ctx: Context, user: User, client_id: str, scopes: list[str]) -> None:
    row = ctx.session.scalar(
        select(OAuthConsent).where(
            OAuthConsent.user_id == user.id, OAuthConsent.client_id == client_id
        )
    )
    if row is None:
        ctx.session.add(
            OAuthConsent(
                user_id=user.id,
                client_id=client_id,
                scopes=sorted(scopes),
                created=ctx.now,
                updated=ctx.now,
            )
        )
    else:
        row.scopes = sorted(scopes)
        row.updated = ctx.now
        row.revoked_at = None


def _consent_page(
    client_name: str,
    grantable: list[str],
    withheld: list[str],
    csrf_token: str,
    query: str,
    redirect_uri: str | None,
) -> _Page:
    html = _templates.get_template("consent.html").render(
        client_name=client_name,
        scopes=[(s, SCOPE_WORDS.get(s, s)) for s in grantable],
        withheld=[(s, SCOPE_WORDS.get(s, s)) for s in withheld],
        csrf_field=csrf.CSRF_FIELD,
        csrf_token=csrf_token,
        action="/oauth/authorize?" + query,
    )
    origin = None
    if redirect_uri:
        parts = urlsplit(redirect_uri)
        origin = f"{parts.scheme}://{parts.netloc}"
    return _Page(200, html, origin)


def _error_page(status: int, message: str) -> _Page:
    return _Page(status, _templates.get_template("error.html").render(message=message))


def _page(page: _Page) -> Response:
    extra = f" {page.redirect_origin}" if page.redirect_origin else ""
    return HTMLResponse(
        page.html,
        status_code=page.status,
        headers={
            "Content-Security-Policy": PAGE_CSP.format(extra=extra),
            "Cache-Control": "no-store",
        },
    )


def server_metadata(runtime: Runtime) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    base = issuer(runtime.settings)
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/oauth/jwks.json",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "scopes_supported": sorted(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": [*SECRET_AUTH_METHODS, "none"],
        "introspection_endpoint_auth_methods_supported": list(SECRET_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": [*SECRET_AUTH_METHODS, "none"],
        "code_challenge_methods_supported": ["S256"],
        "access_token_signing_alg_values_supported": [ALGORITHM],
    }
