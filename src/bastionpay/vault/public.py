"""The public listener: hosted fields for browsers (issue 4, item 1; T1, T3, T4).

    GET  /hosted-fields?key=pk_…&origin=https://shop.example   the card-entry page (for an iframe)
    GET  /static/hosted-fields.js | hosted-fields.css           its script and style
    POST /v1/payment_methods  (and /v1/tokens)                  tokenize; publishable key (Bearer)
    OPTIONS the same two paths                                  CORS preflight
    GET  /healthz                                               liveness for the load balancer
    GET|POST /3ds/challenge/{challenge}                         3-D Secure challenge (`challenge`)

Deliberate browser policy:

- **Framing.** The page is meant to be framed by merchants' checkouts, so it carries its own
  `Content-Security-Policy` with `frame-ancestors` listing exactly the origins allowed for the key
  (the global `frame_ancestors` setting plus the origins the api registered with the key), and no
  `X-Frame-Options` (which cannot express a list; browsers honour `frame-ancestors` instead).
  Every other response keeps the api's `frame-ancestors 'none'` and `X-Frame-Options: DENY`.
- **Scripts.** Server-rendered HTML with no inline script or style: `script-src 'self'`,
  `style-src 'self'`, `connect-src 'self'`, `form-action 'none'`, `base-uri 'none'`. Values in the
  page are HTML-escaped (auto-escaping by construction, T3). The inputs have no `name`, so even a
  browser without the script cannot submit card data as a query string.
- **CORS.** Only the tokenization paths answer cross-origin, only POST, only the `authorization`
  and `content-type` request headers, never with credentials (no cookies exist here). A preflight
  passes for an origin allowed globally or registered with any live key (a preflight carries no
  key); the request itself passes only for an origin allowed for *its* key.
- **Limits.** Per client IP before anything is read, per key after authentication, and failed
  authentications per IP (`edge.ratelimit`), against card testing (T4). Bodies ≤ 8 KiB.

Errors are Stripe's error objects; card validation errors are `card_error`s with Stripe's `code`
and `param` (402). Card numbers and CVCs are never logged, echoed or put in an error (C1, C5).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastionpay.edge.filtering import RequestFilter
from bastionpay.edge.headers import API_HEADERS, SecurityHeaders
from bastionpay.edge.networks import client_address, parse_networks
from bastionpay.edge.ratelimit import AUTH_FAILURES, Category
from bastionpay.edge.respond import error_response
from bastionpay.kernel.errors import (
    AuthenticationError,
    BastionPayError,
    InvalidRequestError,
    MethodNotAllowed,
    PermissionDenied,
    UnrecognizedUrl,
    UnsupportedMediaType,
)
from bastionpay.observability.logging import get_logger
from bastionpay.vault import auditlog, tokens
from bastionpay.vault.auditlog import Origin, VaultEvent
from bastionpay.vault.challenge import ChallengePages
from bastionpay.vault.http import (
    FORM_TYPE,
    form_fields,
    internal_error,
    json_response,
    media_type,
    read_body,
    request_id,
)
from bastionpay.vault.runtime import VaultRuntime
from bastionpay.vault.settings import normalise_origin
from bastionpay.vault.tokens import Actor, KeyHolder

log = get_logger("bastionpay.vault.public")

STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_FILES: Final = {
    "hosted-fields.js": "text/javascript; charset=utf-8",
    "hosted-fields.css": "text/css; charset=utf-8",
    "challenge.css": "text/css; charset=utf-8",
}
TOKEN_PATHS: Final = frozenset({"/v1/payment_methods", "/v1/tokens"})
ALLOWED_REQUEST_HEADERS: Final = frozenset({"authorization", "content-type"})
PREFLIGHT_MAX_AGE: Final = "600"
# Stripe.js sends these along with card data; they are accepted and ignored.
IGNORED_FIELDS: Final = frozenset(
    {"payment_user_agent", "time_on_page", "guid", "muid", "sid", "referrer", "pasted_fields"}
)
CARD_FIELDS: Final = {
    "card[number]": "number",
    "card[exp_month]": "exp_month",
    "card[exp_year]": "exp_year",
    "card[cvc]": "cvc",
}

TOKENIZE_IP = Category("vault_tokenize_ip", "local", "Too many requests from this address.")
TOKENIZE_KEY = Category("vault_tokenize_key", "local", "Too many requests for this key.")
PAGE_IP = Category("vault_page_ip", "local", "Too many requests from this address.")

# Responses other than the page: nothing may frame or script them.
PUBLIC_HEADERS: Final = [(k, v) for k, v in API_HEADERS if k != b"x-frame-options"]
_DENY_FRAMING: Final = (b"x-frame-options", b"DENY")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Card details</title>
<link rel="stylesheet" href="/static/hosted-fields.css">
<script src="/static/hosted-fields.js" defer></script>
</head>
<body>
<form id="bp-card-form" data-key="{key}" data-parent-origin="{origin}" novalidate>
<label for="bp-number">Card number</label>
<input id="bp-number" inputmode="numeric" autocomplete="cc-number" maxlength="23" required>
<div class="bp-row">
<div><label for="bp-exp-month">MM</label>
<input id="bp-exp-month" inputmode="numeric" autocomplete="cc-exp-month" maxlength="2"></div>
<div><label for="bp-exp-year">YYYY</label>
<input id="bp-exp-year" inputmode="numeric" autocomplete="cc-exp-year" maxlength="4"></div>
<div><label for="bp-cvc">CVC</label>
<input id="bp-cvc" inputmode="numeric" autocomplete="cc-csc" maxlength="4"></div>
</div>
<p id="bp-error" role="alert" aria-live="polite"></p>
</form>
</body>
</html>
"""
UNAVAILABLE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Card entry unavailable</title>
<link rel="stylesheet" href="/static/hosted-fields.css"></head>
<body><p class="bp-unavailable">Card entry is not available for this page.</p></body></html>
"""


def page_policy(ancestors: list[str]) -> str:
    frame = " ".join(ancestors) if ancestors else "'none'"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        f"img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors {frame}"
    )


class DenyFramingUnlessPage:
    """Adds `X-Frame-Options: DENY` to every response that does not set its own CSP (the page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if all(name.lower() != b"content-security-policy" for name, _ in headers):
                    headers.append(_DENY_FRAMING)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)


class PublicVault:
    """The routes and the CORS gate, over one runtime."""

    def __init__(self, runtime: VaultRuntime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.proxies = parse_networks(self.settings.trusted_proxies)
        self.static = {name: (STATIC_DIR / name).read_bytes() for name in STATIC_FILES}
        self.challenges = ChallengePages(runtime)

    # --- helpers -------------------------------------------------------------------------------

    def client_ip(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        forwarded = request.headers.get("x-forwarded-for")
        return client_address(peer, forwarded, self.proxies) or "unknown"

    async def hit(self, category: Category, limit: str, identifier: str) -> None:
        await run_in_threadpool(self.runtime.rate_limits.hit, category, limit, identifier)

    @staticmethod
    def origin_of(request: Request) -> str | None:
        raw = request.headers.get("origin")
        if raw is None:
            return None
        try:
            return normalise_origin(raw)
        except ValueError:
            return "invalid"

    @staticmethod
    def self_origin(request: Request) -> str | None:
        host = request.headers.get("host")
        try:
            return normalise_origin(f"https://{host}") if host else None
        except ValueError:
            return None

    def origin_allowed_anywhere(self, origin: str) -> bool:
        return origin in self.settings.cors_origins or tokens.origin_registered(
            self.runtime, origin
        )

    # --- the page ------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        await self.hit(PAGE_IP, self.settings.rate_limit_page_ip, self.client_ip(request))
        key = request.query_params.get("key", "")
        wanted = request.query_params.get("origin", "")
        try:
            holder = await run_in_threadpool(tokens.authenticate_publishable_key, self.runtime, key)
            parent = normalise_origin(wanted)
        except (AuthenticationError, ValueError):
            return self._unavailable()
        ancestors = sorted(set(self.settings.frame_ancestors) | holder.origins)
        if parent not in ancestors:
            return self._unavailable()
        body = PAGE.format(key=html.escape(key, quote=True), origin=html.escape(parent, quote=True))
        return Response(
            body,
            media_type="text/html; charset=utf-8",
            headers={
                "content-security-policy": page_policy(ancestors),
                "cross-origin-resource-policy": "cross-origin",
            },
        )

    @staticmethod
    def _unavailable() -> Response:
        return Response(
            UNAVAILABLE_PAGE,
            status_code=400,
            media_type="text/html; charset=utf-8",
            headers={"content-security-policy": page_policy([])},
        )

    # --- 3-D Secure challenge (issue 4, item 7; `challenge.py`) ---------------------------------

    async def challenge_page(self, request: Request) -> Response:
        ip = self.client_ip(request)
        await self.hit(PAGE_IP, self.settings.rate_limit_page_ip, ip)
        return await self.challenges.show(request, ip)

    async def challenge_answer(self, request: Request) -> Response:
        ip = self.client_ip(request)
        await self.hit(PAGE_IP, self.settings.rate_limit_page_ip, ip)
        return await self.challenges.answer(request, ip)

    async def static_file(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        if name not in self.static:
            return error_response(UnrecognizedUrl("GET", request.url.path), request_id())
        return Response(self.static[name], media_type=STATIC_FILES[name])

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"}, request_id())

    # --- tokenization --------------------------------------------------------------------------

    async def tokenize(self, request: Request) -> Response:
        rid = request_id()
        ip = self.client_ip(request)
        origin = self.origin_of(request)
        cors_ok = False
        try:
            await self.hit(TOKENIZE_IP, self.settings.rate_limit_tokenize_ip, ip)
            if origin is not None and origin != self.self_origin(request):
                cors_ok = await run_in_threadpool(self.origin_allowed_anywhere, origin)
            else:
                cors_ok = origin is not None
            if media_type(request) != FORM_TYPE:
                raise UnsupportedMediaType(
                    "Content-Type must be application/x-www-form-urlencoded."
                )
            fields = form_fields(await read_body(request, self.settings.max_public_body_bytes))
            holder = await self._authenticate(request, fields, ip, rid)
            if origin is not None and not self._origin_for_key(origin, holder, request):
                cors_ok = False
                raise PermissionDenied(
                    "This origin may not use this key.", code="origin_not_allowed"
                )
            await self.hit(TOKENIZE_KEY, self.settings.rate_limit_tokenize_key, holder.id)
            card = _card_fields(fields)
            actor = Actor("publishable_key", holder.id, Origin(ip=ip, request_id=rid))
            payload = await run_in_threadpool(
                lambda: tokens.tokenize(self.runtime, holder, actor=actor, **card)
            )
            response = json_response(payload, rid)
        except BastionPayError as exc:
            response = error_response(exc, rid)
        except Exception as exc:  # noqa: BLE001 - logged by type only; the body holds card data
            response = internal_error(exc, rid)
        response.headers["vary"] = "Origin"
        if cors_ok and origin is not None:
            response.headers["access-control-allow-origin"] = origin
        return response

    def _origin_for_key(self, origin: str, holder: KeyHolder, request: Request) -> bool:
        return (
            origin == self.self_origin(request)
            or origin in self.settings.cors_origins
            or origin in holder.origins
        )

    async def _authenticate(
        self, request: Request, fields: dict[str, str], ip: str, rid: str
    ) -> KeyHolder:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        presented = credential.strip() if scheme.lower() == "bearer" else None
        body_key = fields.pop("key", None)  # Stripe.js sends the key as a form field
        presented = presented or body_key
        try:
            return await run_in_threadpool(
                tokens.authenticate_publishable_key, self.runtime, presented
            )
        except AuthenticationError:
            await run_in_threadpool(self._audit_rejected_key, ip, rid, presented)
            await self.hit(AUTH_FAILURES, self.settings.rate_limit_tokenize_ip, ip)
            raise

    def _audit_rejected_key(self, ip: str, rid: str, presented: str | None) -> None:
        auditlog.record_now(
            self.runtime.db,
            VaultEvent(
                actor_type="anonymous",
                actor_id="unknown",
                action="vault.publishable_key.reject",
                outcome="denied",
                target_type="listener",
                target_id="public",
                origin=Origin(ip=ip, request_id=rid),
                # The kind of key only: a secret key sent here by mistake must not be logged.
                details={"presented": (presented or "")[:8] or None},
            ),
        )

    # --- CORS preflight -------------------------------------------------------------------------

    async def preflight(self, scope: Scope) -> Response:
        request = Request(scope)
        await self.hit(PAGE_IP, self.settings.rate_limit_page_ip, self.client_ip(request))
        origin = self.origin_of(request)
        method = request.headers.get("access-control-request-method", "")
        asked = {
            name.strip().lower()
            for name in request.headers.get("access-control-request-headers", "").split(",")
            if name.strip()
        }
        allowed = (
            origin not in (None, "invalid")
            and method == "POST"
            and asked <= ALLOWED_REQUEST_HEADERS
            and await run_in_threadpool(self.origin_allowed_anywhere, str(origin))
        )
        if not allowed or origin is None:
            return Response(status_code=403, headers={"vary": "Origin"})
        return Response(
            status_code=204,
            headers={
                "access-control-allow-origin": origin,
                "access-control-allow-methods": "POST",
                "access-control-allow-headers": "authorization, content-type",
                "access-control-max-age": PREFLIGHT_MAX_AGE,
                "vary": "Origin",
            },
        )


def _card_fields(fields: dict[str, str]) -> dict[str, Any]:
    kind = fields.pop("type", "card")
    if kind != "card":
        raise InvalidRequestError("Only card payment methods are accepted here.", param="type")
    card: dict[str, Any] = dict.fromkeys(CARD_FIELDS.values())
    for name, value in fields.items():
        if name in CARD_FIELDS:
            card[CARD_FIELDS[name]] = value
        elif name not in IGNORED_FIELDS:
            raise InvalidRequestError(
                f"Received unknown parameter: {name[:40]}",
                code="parameter_unknown",
                param=name[:40],
            )
    if card["number"] is None:
        raise InvalidRequestError("Missing required param: card[number].", param="card[number]")
    return card


class CorsGate:
    """Answers OPTIONS itself (the edge's request filter refuses that method everywhere else)."""

    def __init__(self, app: ASGIApp, vault: PublicVault) -> None:
        self.app = app
        self.vault = vault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            if scope.get("path") in TOKEN_PATHS:
                try:
                    response = await self.vault.preflight(scope)
                except BastionPayError as exc:
                    response = error_response(exc, request_id())
            else:
                response = error_response(
                    MethodNotAllowed("OPTIONS", scope.get("path", "")), request_id()
                )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(UnrecognizedUrl(request.method, request.url.path), request_id())


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(MethodNotAllowed(request.method, request.url.path), request_id())


async def _page_errors(request: Request, exc: Exception) -> Response:
    if isinstance(exc, BastionPayError):
        return error_response(exc, request_id())
    return internal_error(exc, request_id())


def create_public_app(runtime: VaultRuntime) -> ASGIApp:
    vault = PublicVault(runtime)
    app = Starlette(
        routes=[
            Route("/hosted-fields", vault.page, methods=["GET"]),
            Route("/3ds/challenge/{challenge}", vault.challenge_page, methods=["GET"]),
            Route("/3ds/challenge/{challenge}", vault.challenge_answer, methods=["POST"]),
            Route("/static/{name}", vault.static_file, methods=["GET"]),
            Route("/healthz", vault.health, methods=["GET"]),
            *(Route(path, vault.tokenize, methods=["POST"]) for path in sorted(TOKEN_PATHS)),
        ],
        exception_handlers={404: _not_found, 405: _not_allowed, BastionPayError: _page_errors},
    )
    settings = runtime.settings
    filtered = RequestFilter(
        app,
        allowed_hosts=settings.allowed_hosts,
        max_headers=settings.max_headers,
        max_header_bytes=settings.max_header_bytes,
    )
    return SecurityHeaders(DenyFramingUnlessPage(CorsGate(filtered, vault)), PUBLIC_HEADERS)
