"""The api ASGI application: routes, body limits, error rendering, response headers."""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import anyio
import anyio.to_thread
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastionpay.api.forms import Limits, decode_body, decode_form
from bastionpay.api.pipeline import Incoming, dumps, execute
from bastionpay.api.routing import Endpoint
from bastionpay.audit import views as audit_views
from bastionpay.audit.seal import latest_checkpoint
from bastionpay.customers import views as customer_views
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.errors import (
    AuthenticationError,
    BastionPayError,
    InvalidRequestError,
    MethodNotAllowed,
    RequestTooLarge,
    UnrecognizedUrl,
)
from bastionpay.kernel.ids import new_id
from bastionpay.ledger import views as ledger_views
from bastionpay.observability.logging import bind_request, get_logger
from bastionpay.observability.metrics import METRICS, token_matches
from bastionpay.payments import views as payment_views
from bastionpay.runtime import Runtime

log = logging.getLogger("bastionpay.api")
request_log = get_logger("bastionpay.api")
_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")

ENDPOINTS: list[Endpoint] = [
    *audit_views.ENDPOINTS,
    *payment_views.ENDPOINTS,
    *customer_views.ENDPOINTS,
    *ledger_views.ENDPOINTS,
]

# Headers on every response (SECURITY-REQUIREMENTS T1: HSTS on HTTPS; the edge issue adds CSP and
# the rest). API responses must never be cached by intermediaries.
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
]


def _json(
    status: int,
    body: str,
    request_id: str,
    *,
    replayed: bool = False,
    idempotency_key: str | None = None,
) -> Response:
    headers = {"request-id": request_id}
    if replayed:
        headers["idempotent-replayed"] = "true"
    if idempotency_key is not None:
        headers["idempotency-key"] = idempotency_key[:255]
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(exc: BastionPayError, request_id: str) -> Response:
    wire = exc.to_wire()
    wire["error"]["request_log_url"] = None
    return _json(exc.http_status, dumps(wire), request_id)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(
            f"Request body too large: at most {limit} bytes are allowed.", code="request_too_large"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # do not buffer an unbounded body (OWASP API4)
            raise RequestTooLarge(
                f"Request body too large: at most {limit} bytes are allowed.",
                code="request_too_large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _dispatcher(
    runtime: Runtime, route: str, by_method: dict[str, Endpoint], limiter: anyio.CapacityLimiter
) -> Callable[[Request], Awaitable[Response]]:
    settings = runtime.settings
    limits = Limits(settings.max_body_bytes, settings.max_parameters, settings.max_nesting_depth)

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        response = await handle(request)
        elapsed = time.perf_counter() - started
        method = request.method if request.method in by_method else "other"
        METRICS.requests.labels(route, method, str(response.status_code)).inc()
        METRICS.latency.labels(route, method).observe(elapsed)
        # One structured line per request; the redacting pipeline masks anything a client put in
        # the path or in an echoed error (L3).
        request_log.info(
            "request",
            method=request.method,
            route=route,
            path=request.url.path[:300],
            status=response.status_code,
            duration_ms=round(elapsed * 1000, 2),
        )
        return response

    async def handle(request: Request) -> Response:
        request_id = new_id("req")
        bind_request(request_id)  # every log line of this request carries its id
        idem_key = request.headers.get("idempotency-key")
        try:
            ep = by_method.get("GET" if request.method == "HEAD" else request.method)
            if ep is None:
                raise MethodNotAllowed(request.method, request.url.path)
            for value in request.path_params.values():
                if not _ID.match(str(value)):
                    # Object ids are short and plain; anything else cannot name an object.
                    raise UnrecognizedUrl(request.method, request.url.path)
            if ep.method == "POST":
                raw = await _read_body(request, limits.max_body_bytes)
                params = decode_body(raw, request.headers.get("content-type", ""), limits)
            else:
                query = request.url.query
                if len(query) > limits.max_body_bytes:
                    raise RequestTooLarge("Query string too large.", code="request_too_large")
                params = decode_form(query, limits)
            incoming = Incoming(
                method=ep.method,
                path=request.url.path,
                path_params={k: str(v) for k, v in request.path_params.items()},
                authorization=request.headers.get("authorization"),
                idempotency_key=idem_key,
                params=params,
                request_id=request_id,
                client_ip=request.client.host if request.client else None,
                user_agent=request.headers.get("user-agent"),
            )
            out = await anyio.to_thread.run_sync(execute, runtime, ep, incoming, limiter=limiter)
            return _json(
                out.status,
                out.body,
                request_id,
                replayed=out.replayed,
                idempotency_key=idem_key if ep.method == "POST" else None,
            )
        except BastionPayError as exc:
            request_log.info(
                "request_error",
                type=exc.error_type,
                code=exc.code,
                param=exc.param,
                message=exc.message,
                status=exc.http_status,
            )
            return _error(exc, request_id)
        except ClientDisconnect:
            return Response(status_code=400)
        except Exception:
            # Fail closed (P3) with a generic message; the detail goes to the log, not the client.
            log.exception("unhandled error", extra={"request_id": request_id})
            return _error(BastionPayError("An unexpected error occurred."), request_id)

    return endpoint


def _routes(runtime: Runtime, limiter: anyio.CapacityLimiter) -> list[Route]:
    grouped: dict[str, dict[str, Endpoint]] = defaultdict(dict)
    for ep in ENDPOINTS:
        if ep.method in grouped[ep.path]:
            raise ValueError(f"duplicate route {ep.method} {ep.path}")
        grouped[ep.path][ep.method] = ep
    return [
        Route(path, _dispatcher(runtime, path, methods, limiter), methods=list(methods))
        for path, methods in grouped.items()
    ]


class SecurityHeaders:
    """Pure ASGI middleware: adds SECURITY_HEADERS and drops any `server` banner."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                present = {k.lower() for k, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(runtime: Runtime) -> ASGIApp:
    # Bounds the threads running the /v1 pipeline at once (settings.api_concurrency).
    limiter = anyio.CapacityLimiter(runtime.settings.api_concurrency)

    async def livez(_: Request) -> Response:
        # The no-op endpoint: same listener and middleware, no database (benchmark baseline).
        return Response('{"status":"ok"}', media_type="application/json")

    def _db_ok() -> None:
        with unit_of_work(runtime.db, write=False) as session:
            session.execute(text("SELECT 1"))

    async def healthz(_: Request) -> Response:
        try:
            await run_in_threadpool(_db_ok)
        except Exception:
            log.exception("health check failed")
            return Response(
                '{"status":"unavailable"}', status_code=503, media_type="application/json"
            )
        return Response('{"status":"ok"}', media_type="application/json")

    def _checkpoint_age() -> float:
        with unit_of_work(runtime.db, write=False) as session:
            latest = latest_checkpoint(session)
        return -1.0 if latest is None else max(0.0, time.time() - latest.created_us / 1e6)

    METRICS.watch_checkpoint_age(_checkpoint_age)

    async def metrics(request: Request) -> Response:
        # Behind a token of its own: platform-wide numbers are not for merchants' API keys.
        if not token_matches(request.headers.get("authorization"), runtime.metrics_token.reveal()):
            err = AuthenticationError("Metrics require the metrics bearer token.")
            return _error(err, new_id("req"))
        body, content_type = await run_in_threadpool(METRICS.render)
        return Response(body, media_type=content_type)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        err: InvalidRequestError = (
            MethodNotAllowed(request.method, request.url.path)
            if status == 405
            else UnrecognizedUrl(request.method, request.url.path)
        )
        return _error(err, new_id("req"))

    app = Starlette(
        routes=[
            Route("/livez", livez),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            *_routes(runtime, limiter),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )
    return SecurityHeaders(app)
