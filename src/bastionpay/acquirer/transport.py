"""How the client's messages travel: one request, one matching reply, a hard deadline.

`TcpTransport` is the real one: blocking sockets from a small pool, safe to share between threads.
A request checks a connection out, uses it alone, and returns it only after a clean exchange; a
connection that timed out, broke or carried anything unexpected is closed, never reused — so a late
answer can never be read as the answer to a later request. Before reuse, an idle connection is
checked for a peer close or stray bytes.

`Transport` is the contract, so the vault's tests can inject a fake (as httpx's MockTransport) and
need no monkeypatching.

Failures are `TransportFailure(kind, sent)`: `unreachable` (no connection, so nothing was sent),
`timeout`, `connection` (dropped) or `malformed` (a frame or message we cannot read). Replies that
decode but do not match (`Expectation.mismatch`) are logged and discarded, and the wait goes on.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Final, Protocol

from bastionpay.acquirer.framing import DEFAULT_MAX_SIZE, FrameDecoder, FramingError
from bastionpay.acquirer.messages import Message, MessageError, decode_message
from bastionpay.observability.logging import get_logger

log = get_logger("bastionpay.acquirer.transport")

IDLE_LIMIT_SECONDS: Final = 30.0  # well under the server's idle timeout
_RECV_SIZE: Final = 4096


class TransportFailure(Exception):
    """No usable answer. `sent` is False only when the request certainly never left."""

    def __init__(self, kind: str, *, sent: bool = True) -> None:
        super().__init__(kind)
        self.kind = kind
        self.sent = sent


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the reply to a request must carry: its response MTI, STAN, transmission time and
    (where the reply has one) RRN (issue 4, item 5: STAN/RRN matching)."""

    mti: str
    stan: str
    transmitted: str
    rrn: str | None = None

    def mismatch(self, reply: Message) -> str | None:
        if reply["t"] != self.mti:
            return "mti"
        if reply["11"] != self.stan:
            return "stan"
        if reply["7"] != self.transmitted:
            return "transmission_time"
        if self.rrn is not None and "37" in reply and reply["37"] != self.rrn:
            return "rrn"
        return None


class Transport(Protocol):
    def exchange(self, payload: bytes, expect: Expectation, timeout: float) -> Message:
        """Send a framed request; the first matching reply within `timeout` seconds."""
        ...

    def close(self) -> None: ...


class _Connection:
    def __init__(self, sock: socket.socket, max_frame_size: int) -> None:
        self.sock = sock
        self.decoder = FrameDecoder(max_size=max_frame_size)
        self.backlog: list[bytes] = []
        self.last_used = time.monotonic()

    def clean(self) -> bool:
        return not self.backlog and self.decoder.pending == 0

    def alive(self) -> bool:
        """No peer close and no stray bytes waiting: safe to send the next request on."""
        if time.monotonic() - self.last_used > IDLE_LIMIT_SECONDS:
            return False
        try:
            self.sock.setblocking(False)
            try:
                self.sock.recv(1, socket.MSG_PEEK)
            finally:
                self.sock.setblocking(True)
        except BlockingIOError:
            return True  # nothing to read: the connection is idle and open
        except OSError:
            return False
        return False  # EOF or unexpected bytes

    def send(self, payload: bytes, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransportFailure("timeout")
        try:
            self.sock.settimeout(remaining)
            self.sock.sendall(payload)
        except TimeoutError:
            raise TransportFailure("timeout") from None
        except OSError:
            raise TransportFailure("connection") from None

    def receive(self, expect: Expectation, deadline: float) -> Message:
        while True:
            while self.backlog:
                try:
                    reply = decode_message(self.backlog.pop(0))
                except MessageError:
                    raise TransportFailure("malformed") from None
                reason = expect.mismatch(reply)
                if reason is None:
                    return reply
                log.warning("acquirer_reply_discarded", reason=reason, stan=expect.stan)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportFailure("timeout")
            try:
                self.sock.settimeout(remaining)
                data = self.sock.recv(_RECV_SIZE)
            except TimeoutError:
                raise TransportFailure("timeout") from None
            except OSError:
                raise TransportFailure("connection") from None
            if not data:
                raise TransportFailure("connection")
            try:
                self.backlog.extend(self.decoder.feed(data))
            except FramingError:
                raise TransportFailure("malformed") from None

    def close(self) -> None:
        self.sock.close()


class TcpTransport:
    """Blocking TCP with at most `pool_size` idle connections; thread-safe."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 5.0,
        pool_size: int = 4,
        max_frame_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        if connect_timeout <= 0 or pool_size < 0:
            raise ValueError("the connect timeout must be positive and the pool size not negative")
        self._address = (host, port)
        self._connect_timeout = connect_timeout
        self._pool_size = pool_size
        self._max_frame_size = max_frame_size
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def exchange(self, payload: bytes, expect: Expectation, timeout: float) -> Message:
        deadline = time.monotonic() + timeout
        connection = self._checkout(deadline)
        clean = False
        try:
            connection.send(payload, deadline)
            reply = connection.receive(expect, deadline)
            clean = connection.clean()
            return reply
        finally:
            if clean:
                self._checkin(connection)
            else:
                connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _checkout(self, deadline: float) -> _Connection:
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if connection.alive():
                    return connection
                connection.close()
        timeout = max(0.001, min(self._connect_timeout, deadline - time.monotonic()))
        try:
            sock = socket.create_connection(self._address, timeout=timeout)
        except OSError:
            raise TransportFailure("unreachable", sent=False) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(sock, self._max_frame_size)

    def _checkin(self, connection: _Connection) -> None:
        connection.last_used = time.monotonic()
        with self._lock:
            if len(self._idle) < self._pool_size:
                self._idle.append(connection)
                return
        connection.close()
