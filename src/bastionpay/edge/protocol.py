"""HTTP/1.1 with a header deadline: slowloris protection for uvicorn (edge issue, item 5).

uvicorn arms a timer only between requests (keep-alive). A client that opens a connection and then
sends its request line and headers one byte at a time holds the connection — and its memory —
indefinitely. This protocol arms a deadline when a connection opens and again after every answer;
it is disarmed only when a complete request head has arrived. Expiry closes the connection.
The body has its own deadline in the api's body reader (408), and the TLS handshake asyncio's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from bastionpay.observability.metrics import METRICS


class DeadlineH11Protocol(H11Protocol):
    header_timeout_seconds = 10.0  # set per server by `with_header_timeout`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._cycle_seen: object = None

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.header_timeout_seconds, self._expired)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _expired(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            METRICS.edge_rejections.labels("header_timeout").inc()
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._cycle_seen:
            # A complete request head arrived and a request/response cycle began.
            self._cycle_seen = self.cycle
            self._disarm()

    def on_response_complete(self) -> None:
        answered = self.cycle
        super().on_response_complete()  # may start a pipelined request's cycle at once
        if not self.transport.is_closing() and self.cycle is answered:
            # Waiting for the next request head on a kept-alive connection. (Keep-alive's own
            # shorter timer also runs; whichever fires first closes.)
            self._arm()


def with_header_timeout(seconds: float) -> type[DeadlineH11Protocol]:
    """A protocol class bound to one server's setting (uvicorn instantiates the class itself)."""
    return type(
        "BoundDeadlineH11Protocol", (DeadlineH11Protocol,), {"header_timeout_seconds": seconds}
    )
