"""Security headers on every response (edge issue, item 2; T1, T3).

The api serves JSON only, so its Content-Security-Policy allows nothing at all: no scripts, no
framing, no form targets. Pages that need more (the vault's hosted fields) set their own policy,
which this middleware leaves in place — it only adds headers a response does not already carry.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_HEADERS: list[tuple[bytes, bytes]] = [
    # T1: browsers only ever use HTTPS for this host (two years, the HSTS preload minimum).
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (
        b"content-security-policy",
        b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),  # for browsers that predate frame-ancestors
    (b"referrer-policy", b"no-referrer"),
    (
        b"permissions-policy",
        b"camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
    ),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    # Responses carry payment data: never stored by browsers or intermediaries.
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers above and drops any `server` banner."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.app = app
        self.headers = API_HEADERS if headers is None else headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                present = {k.lower() for k, _ in headers}
                headers.extend(h for h in self.headers if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
