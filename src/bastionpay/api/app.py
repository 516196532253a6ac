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
from starlette.types import ASGIApp

from bastionpay.api.forms import Limits, decode_body, decode_form
from bastionpay.api.pipeline import Incoming, execute
from bastionpay.api.routing import Endpoint
from bastionpay.audit import views as audit_views
from bastionpay.audit.seal import latest_checkpoint
from bastionpay.customers import views as customer_views
from bastionpay.db.uow import unit_of_work
from bastionpay.disputes import views as dispute_views
from bastionpay.edge.filtering import RequestFilter
from bastionpay.edge.headers import SecurityHeaders
from bastionpay.edge.networks import client_address, contains, parse_address, parse_networks
from bastionpay.edge.ratelimit import UNAUTHENTICATED
from bastionpay.edge.respond import error_response
from bastionpay.edge.shedding import Admission
from bastionpay.identity import views as identity_views
from bastionpay.identity import web as identity_web
from bastionpay.identity.principals import SESSION_COOKIE
from bastionpay.kernel.errors import (
    AuthenticationError,
    BastionPayError,
    InvalidRequestError,
    MethodNotAllowed,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    ServiceUnavailable,
    UnrecognizedUrl,
)
from bastionpay.kernel.ids import new_id
from bastionpay.ledger import views as ledger_views
from bastionpay.oauth import web as oauth_web
from bastionpay.observability.logging import bind_request, get_logger
from bastionpay.observability.metrics import METRICS, token_matches
from bastionpay.payments import review_views, vault_keys
from bastionpay.payments import views as payment_views
from bastionpay.risk import views as risk_views
from bastionpay.runtime import Runtime

log = logging.getLogger("bastionpay.api")
request_log = get_logger("bastionpay.api")
_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")

ENDPOINTS: list[Endpoint] = [
    *audit_views.ENDPOINTS,
    *payment_views.ENDPOINTS,
    *review_views.ENDPOINTS,
    *dispute_views.ENDPOINTS,
    *risk_views.ENDPOINTS,
    *customer_views.ENDPOINTS,
    *ledger_views.ENDPOINTS,
    *identity_views.ENDPOINTS,
    *vault_keys.ENDPOINTS,
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


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(
            f"Request body too large: at most {limit} bytes are allowed.", code="request_too_large"
        )
    chunks: list[bytes] = []
    size = 0
    # A body trickled in slowly holds a connection and memory (slow-POST): bounded in time too.
    with anyio.move_on_after(timeout) as scope:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # do not buffer an unbounded body (OWASP API4)
                raise RequestTooLarge(
                    f"Request body too large: at most {limit} bytes are allowed.",
                    code="request_too_large",
                )
            chunks.append(chunk)
    if scope.cancelled_caught:
        METRICS.edge_rejections.labels("body_timeout").inc()
        raise RequestTimeout(
            f"The request body did not arrive within {timeout:g} seconds.", code="request_timeout"
        )
    return b"".join(chunks)


class Edge:
    """What every /v1 request passes through before the pipeline: admission and client address."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.admission = Admission(settings.max_in_flight, settings.api_concurrency)
        # The pipeline's own threads; the admission slots keep it from ever waiting here.
        self.threads = anyio.CapacityLimiter(settings.api_concurrency)
        self.trusted_proxies = parse_networks(settings.trusted_proxies)

    def client_ip(self, request: Request) -> str | None:
        peer = request.client.host if request.client else None
        return client_address(peer, request.headers.get("x-forwarded-for"), self.trusted_proxies)


def _dispatcher(
    runtime: Runtime, route: str, by_method: dict[str, Endpoint], edge: Edge
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
                raw = await _read_body(
                    request, limits.max_body_bytes, settings.body_timeout_seconds
                )
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
                client_ip=edge.client_ip(request),
                user_agent=request.headers.get("user-agent"),
                session_token=request.cookies.get(SESSION_COOKIE),
                csrf_token=request.headers.get("x-csrf-token"),
                account=request.headers.get("stripe-account"),
                livemode=request.headers.get("bastionpay-livemode", "").lower() == "true",
            )
            priority = ep.admission_priority
            async with edge.admission.admitted(priority), edge.admission.slot(priority):
                out = await anyio.to_thread.run_sync(
                    execute, runtime, ep, incoming, limiter=edge.threads
                )
            return _json(
                out.status,
                out.body,
                request_id,
                replayed=out.replayed,
                idempotency_key=idem_key if ep.method == "POST" else None,
            )
        except (RateLimited, ServiceUnavailable) as exc:
            # Refusals under load stay cheap: the request line and the metrics record them.
            return error_response(exc, request_id)
        except BastionPayError as exc:
            request_log.info(
                "request_error",
                type=exc.error_type,
                code=exc.code,
                param=exc.param,
                message=exc.message,
                status=exc.http_status,
            )
            return error_response(exc, request_id)
        except ClientDisconnect:
            return Response(status_code=400)
        except Exception:
            # Fail closed (P3) with a generic message; the detail goes to the log, not the client.
            log.exception("unhandled error", extra={"request_id": request_id})
            return error_response(BastionPayError("An unexpected error occurred."), request_id)

    return endpoint


def _routes(runtime: Runtime, edge: Edge) -> list[Route]:
    grouped: dict[str, dict[str, Endpoint]] = defaultdict(dict)
    for ep in ENDPOINTS:
        if ep.method in grouped[ep.path]:
            raise ValueError(f"duplicate route {ep.method} {ep.path}")
        grouped[ep.path][ep.method] = ep
    return [
        Route(path, _dispatcher(runtime, path, methods, edge), methods=list(methods))
        for path, methods in grouped.items()
    ]


def create_app(runtime: Runtime) -> ASGIApp:
    settings = runtime.settings
    edge = Edge(runtime)
    operators = parse_networks(settings.operator_allowed_cidrs)

    def _per_ip(request: Request) -> None:
        # Unauthenticated routes are limited per client address (T4).
        runtime.rate_limits.hit(
            UNAUTHENTICATED, settings.rate_limit_unauthenticated_ip, edge.client_ip(request) or "-"
        )

    async def livez(_: Request) -> Response:
        # The no-op endpoint: same listener and middleware, no database (benchmark baseline).
        return Response('{"status":"ok"}', media_type="application/json")

    def _db_ok() -> None:
        with unit_of_work(runtime.db, write=False) as session:
            session.execute(text("SELECT 1"))

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(_per_ip, request)
        except BastionPayError as exc:
            return error_response(exc, new_id("req"))
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
        request_id = new_id("req")
        # Operator endpoint: only from the operators' networks (I7), rate limited per address,
        # and behind a token of its own (platform-wide numbers are not for merchants' API keys).
        if not contains(operators, parse_address(edge.client_ip(request))):
            METRICS.edge_rejections.labels("operator_ip_not_allowed").inc()
            denied = PermissionDenied(
                "Operator endpoints cannot be reached from your IP address.",
                code="ip_not_allowed",
            )
            return error_response(denied, request_id)
        try:
            await run_in_threadpool(_per_ip, request)
        except BastionPayError as exc:
            return error_response(exc, request_id)
        if not token_matches(request.headers.get("authorization"), runtime.metrics_token.reveal()):
            err = AuthenticationError("Metrics require the metrics bearer token.")
            return error_response(err, request_id)
        body, content_type = await run_in_threadpool(METRICS.render)
        return Response(body, media_type=content_type)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        err: InvalidRequestError = (
            MethodNotAllowed(request.method, request.url.path)
            if status == 405
            else UnrecognizedUrl(request.method, request.url.path)
        )
        return error_response(err, new_id("req"))

    app = Starlette(
        routes=[
            Route("/livez", livez),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            *_routes(runtime, edge),
            # Operators' pages (login, MFA, account) and the OAuth 2.0 server (identity issue).
            *identity_web.routes(runtime),
            *oauth_web.routes(runtime),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )
    # Outermost first: headers on every answer, including the filter's refusals.
    filtered = RequestFilter(
        app,
        allowed_hosts=settings.allowed_hosts,
        max_headers=settings.max_headers,
        max_header_bytes=settings.max_header_bytes,
    )
    return SecurityHeaders(filtered)
