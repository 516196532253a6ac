"""Request filtering before routing (edge issue, item 5; T4, OWASP API4).

Cheap checks on what the HTTP parser already produced, answered in the API's error shape and
counted in `bastionpay_edge_rejections` by reason:
- methods: only those the API serves; TRACE, CONNECT, PUT, PATCH… are 405 everywhere;
- headers: at most `max_headers` fields and `max_header_bytes` in total (431). The HTTP parser's
  own, larger bound (h11's incomplete-event size) stops anything bigger before it is buffered;
- Host: must name this service (`allowed_hosts`), against DNS rebinding and Host-header poisoning.
Body size, parameter count and nesting are checked where the body is decoded (api.forms), content
types per route in the dispatcher, and time limits in edge.protocol and the body reader.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from bastionpay.edge.respond import error_response
from bastionpay.kernel.errors import (
    BastionPayError,
    HeadersTooLarge,
    InvalidRequestError,
    MethodNotAllowed,
)
from bastionpay.kernel.ids import new_id
from bastionpay.observability.metrics import METRICS

ALLOWED_METHODS = frozenset({"GET", "HEAD", "POST", "DELETE"})


def host_name(host_header: str) -> str:
    """The name part of a Host header: `[::1]:8443` → `::1`, `api.example:443` → `api.example`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class RequestFilter:
    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str],
        max_headers: int,
        max_header_bytes: int,
    ) -> None:
        self.app = app
        hosts = {h.strip().lower().strip("[]") for h in allowed_hosts if h.strip()}
        self.any_host = "*" in hosts
        self.allowed_hosts = frozenset(hosts - {"*"})
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes

    def _check(self, scope: Scope) -> BastionPayError | None:
        method = scope["method"]
        path = scope.get("path", "")
        if method not in ALLOWED_METHODS:
            return MethodNotAllowed(method[:16], path)
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        if len(headers) > self.max_headers:
            return HeadersTooLarge(
                f"Too many request headers: at most {self.max_headers} are allowed.",
                code="too_many_headers",
            )
        size = sum(len(k) + len(v) + 4 for k, v in headers)
        if size > self.max_header_bytes:
            return HeadersTooLarge(
                f"Request headers too large: at most {self.max_header_bytes} bytes are allowed.",
                code="headers_too_large",
            )
        if not self.any_host:
            hosts = [v for k, v in headers if k == b"host"]
            name = host_name(hosts[0].decode("latin-1")) if len(hosts) == 1 else ""
            if name not in self.allowed_hosts:
                return InvalidRequestError(
                    "The Host header does not name this service.", code="invalid_host"
                )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._check(scope)
            if refusal is not None:
                METRICS.edge_rejections.labels(refusal.code or "method_not_allowed").inc()
                response = error_response(refusal, new_id("req"))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
