"""The real listener's time and size limits (edge issue, item 5): slowloris, slow bodies, big heads.

A server runs in a thread on 127.0.0.1 with one-second header and body deadlines; raw TLS sockets
play the slow clients that an HTTP library would never be.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bastionpay import bootstrap
from bastionpay.config import Settings
from bastionpay.edge.tls import client_context
from bastionpay.server import bind, serve_api

DEADLINE_S = 1.0


@dataclass(frozen=True)
class Server:
    port: int
    ca: Path
    secret_key: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("edge-server")
    settings = Settings(
        data_dir=data,
        header_timeout_seconds=DEADLINE_S,
        body_timeout_seconds=DEADLINE_S,
        keepalive_timeout_seconds=30,  # long, so only the header deadline can close idle ones
    )
    runtime = bootstrap.initialise(settings)
    merchant = bootstrap.create_merchant_with_keys(runtime, "edge")
    tls = bootstrap.tls_files(settings)
    assert tls.ca_file is not None
    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    threading.Thread(
        target=serve_api, args=(runtime, sock, tls.cert_file, tls.key_file), daemon=True
    ).start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            url = f"https://127.0.0.1:{port}/livez"
            if httpx.get(url, verify=client_context(tls.ca_file)).is_success:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield Server(port, tls.ca_file, merchant["secret_key"])


def _connect(server: Server) -> ssl.SSLSocket:
    context = client_context(server.ca)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _closed_within(conn: ssl.SSLSocket, seconds: float) -> float:
    """Seconds until the server closes the connection (fails if it stays open longer)."""
    started = time.monotonic()
    conn.settimeout(seconds)
    try:
        while conn.recv(4096):
            pass
    except (ssl.SSLError, ConnectionResetError):
        pass  # closed abruptly: closed all the same
    except TimeoutError:
        pytest.fail(f"connection still open after {seconds} s")
    return time.monotonic() - started


def _read_response(conn: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    conn.settimeout(10)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(4096)
        assert chunk, "connection closed before a response"
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(4096)
        assert chunk
        body += chunk
    return status, headers, body[:length]


def test_an_idle_connection_is_closed_at_the_header_deadline(server: Server) -> None:
    with _connect(server) as conn:
        assert _closed_within(conn, DEADLINE_S + 5) >= DEADLINE_S * 0.8


def test_slowloris_request_heads_are_cut_off(server: Server) -> None:
    # A head trickled byte by byte stays incomplete past the deadline: the server hangs up even
    # though bytes keep arriving (uvicorn alone would wait forever).
    with _connect(server) as conn:
        started = time.monotonic()
        head = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
        closed = False
        for byte in head:
            try:
                conn.sendall(bytes([byte]))
            except (ssl.SSLError, OSError):
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - started > DEADLINE_S + 5:
                break
        if not closed:
            _closed_within(conn, 3)
        assert time.monotonic() - started < DEADLINE_S + 5


def test_kept_alive_connections_serve_several_requests_and_then_time_out(server: Server) -> None:
    with _connect(server) as conn:
        for _ in range(3):
            conn.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _, body = _read_response(conn)
            assert status == 200 and json.loads(body) == {"status": "ok"}
            time.sleep(DEADLINE_S / 2)  # within the deadline each time: still open
        assert _closed_within(conn, DEADLINE_S + 5) <= DEADLINE_S + 5


def test_pipelined_requests_are_answered(server: Server) -> None:
    with _connect(server) as conn:
        conn.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2)
        assert _read_response(conn)[0] == 200
        assert _read_response(conn)[0] == 200


def test_a_slow_body_gets_408_in_the_error_shape(server: Server) -> None:
    with _connect(server) as conn:
        conn.sendall(
            b"POST /v1/customers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {server.secret_key}\r\n".encode()
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\n\r\nemail=a"
        )
        started = time.monotonic()
        status, headers, body = _read_response(conn)
    assert status == 408
    assert time.monotonic() - started >= DEADLINE_S * 0.8
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error"
    assert headers["strict-transport-security"].startswith("max-age=")


def test_heads_between_the_app_limit_and_the_parser_limit_get_431(server: Server) -> None:
    with _connect(server) as conn:
        conn.sendall(
            b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
        )
        status, _, body = _read_response(conn)
    assert status == 431
    assert json.loads(body)["error"]["code"] == "headers_too_large"


def test_heads_beyond_the_parser_limit_are_refused_before_buffering(server: Server) -> None:
    with _connect(server) as conn:
        try:
            conn.sendall(
                b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: " + b"a" * 200_000 + b"\r\n\r\n"
            )
        except (ssl.SSLError, OSError):
            return  # the server already hung up while we were still sending: refused
        status, _, _ = _read_response(conn)
    assert status == 400  # h11's own refusal; nothing of the head reached the app


def test_no_server_banner_and_security_headers_on_the_wire(server: Server) -> None:
    with _connect(server) as conn:
        conn.sendall(b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, _ = _read_response(conn)
    assert status == 404
    assert "server" not in headers
    for name in ("content-security-policy", "permissions-policy", "x-content-type-options"):
        assert name in headers
    assert headers["cache-control"] == "no-store"
