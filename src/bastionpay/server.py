"""Run the api over HTTPS with uvicorn on a socket handed over by the supervisor (or bound here)."""

from __future__ import annotations

import socket
from pathlib import Path

import uvicorn

from bastionpay.api.app import create_app
from bastionpay.edge.protocol import with_header_timeout
from bastionpay.edge.tls import harden
from bastionpay.runtime import Runtime


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose protocol
    # says TCP, and without it a response written in two parts waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_api(runtime: Runtime, sock: socket.socket, cert_file: Path, key_file: Path) -> None:
    settings = runtime.settings
    config = uvicorn.Config(
        create_app(runtime),
        ssl_certfile=str(cert_file),
        ssl_keyfile=str(key_file),
        server_header=False,  # no version banners (edge issue, item 2)
        access_log=False,  # request outcomes are in metrics and the audit log, not access lines
        log_config=None,  # keep our redacting handlers (observability.logging), not uvicorn's
        log_level="warning",
        lifespan="off",
        # Idle TLS keep-alive connections otherwise hold shutdown for the whole grace period.
        timeout_graceful_shutdown=3,
        # The edge's HTTP hygiene (issue 6, item 5; docs/security/edge.md):
        http=with_header_timeout(settings.header_timeout_seconds),  # slowloris
        timeout_keep_alive=int(max(1, settings.keepalive_timeout_seconds)),
        limit_concurrency=settings.max_connections,  # backstop: 503 beyond this many
        # The parser refuses a request head larger than this before buffering more; the app's
        # smaller max_header_bytes answers anything between in the API's error shape (431).
        h11_max_incomplete_event_size=settings.max_header_bytes * 4,
    )
    config.load()
    if config.ssl is None:  # pragma: no cover - ssl_certfile is always set
        raise RuntimeError("refusing to serve without TLS")
    harden(config.ssl)  # TLS 1.2+ and AEAD suites only (T1)
    uvicorn.Server(config).run(sockets=[sock])
