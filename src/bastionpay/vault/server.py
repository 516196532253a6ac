"""Run the vault's two HTTPS listeners (uvicorn) on one event loop, plus its background worker.

- *internal* (`internal_port`, default 8444): mutual TLS (`mtls.py`), JSON API for the api (T2);
- *public* (`public_port`, default 8445): TLS (T1), hosted fields for browsers (`public.py`).

Both bind before anything starts (port 0 gives real ports at once) and answer only once both are
listening; the ready file (`--ready-file`) is then written atomically with both ports. Signals are
handled here, for both servers at once (uvicorn's own handler would stop one and re-raise).
Audit: `vault.process.start` and `vault.process.stop` bracket the process (PCI DSS 10.2.1.6).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import uvicorn

from bastionpay.edge.protocol import with_header_timeout
from bastionpay.edge.tls import harden
from bastionpay.observability.logging import get_logger
from bastionpay.vault import auditlog
from bastionpay.vault.auditlog import VaultEvent
from bastionpay.vault.background import VaultWorker
from bastionpay.vault.internal import create_internal_app
from bastionpay.vault.mtls import ClientCheck, internal_server_context, mutual_tls_protocol
from bastionpay.vault.pki import VaultTls
from bastionpay.vault.public import create_public_app
from bastionpay.vault.runtime import VaultRuntime

log = get_logger("bastionpay.vault.server")

START_TIMEOUT: Final = 20.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The vault process stops both listeners together (see `VaultServer.serve`).
        yield


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose protocol
    # says TCP, and without it a response written in two parts waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def _common(runtime: VaultRuntime) -> dict[str, Any]:
    settings = runtime.settings
    return {
        "server_header": False,  # no version banners
        "access_log": False,  # outcomes are in the audit log; never request lines with queries
        "log_config": None,  # keep the redacting handlers (observability.logging, L3)
        "log_level": "warning",
        "lifespan": "off",
        "timeout_graceful_shutdown": 3,
        "timeout_keep_alive": 5,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": settings.max_header_bytes * 4,
    }


def public_config(runtime: VaultRuntime, tls: VaultTls) -> uvicorn.Config:
    config = uvicorn.Config(
        create_public_app(runtime),
        ssl_certfile=str(tls.public_cert_file),
        ssl_keyfile=str(tls.public_key_file),
        http=with_header_timeout(runtime.settings.header_timeout_seconds),
        **_common(runtime),
    )
    config.load()
    if config.ssl is None:  # pragma: no cover - ssl_certfile is always set
        raise RuntimeError("refusing to serve the public listener without TLS")
    harden(config.ssl)  # TLS 1.2+ and AEAD suites only (T1)
    return config


def internal_config(runtime: VaultRuntime, tls: VaultTls) -> uvicorn.Config:
    settings = runtime.settings
    context = internal_server_context(tls.internal_cert_file, tls.internal_key_file, tls.ca_file)
    protocol = mutual_tls_protocol(
        context,
        ClientCheck(settings.allowed_clients),
        runtime.audit_queue,
        handshake_timeout=settings.handshake_timeout_seconds,
        header_timeout=settings.header_timeout_seconds,
    )
    # No `ssl_*` here: TLS is done by the protocol, so refused handshakes can be audited.
    config = uvicorn.Config(create_internal_app(runtime), http=protocol, **_common(runtime))
    config.load()
    return config


def write_ready_file(path: Path, info: dict[str, Any]) -> None:
    """`info` as JSON in `path`, atomically (temporary file in the same directory, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(info, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass
class Listeners:
    internal: socket.socket
    public: socket.socket
    # Read once: uvicorn closes the sockets at shutdown, and the stop event still names the ports.
    internal_port: int = field(init=False)
    public_port: int = field(init=False)

    def __post_init__(self) -> None:
        self.internal_port = int(self.internal.getsockname()[1])
        self.public_port = int(self.public.getsockname()[1])


class VaultServer:
    """Both listeners and the worker; `serve()` in the main thread, or `start()` in a thread."""

    def __init__(self, runtime: VaultRuntime, tls: VaultTls, listeners: Listeners) -> None:
        self.runtime = runtime
        self.tls = tls
        self.listeners = listeners
        self.worker = VaultWorker(runtime)
        settings = runtime.settings
        runtime.public_url.bound(settings.public_host or settings.host, listeners.public_port)
        self._servers = [
            _Server(internal_config(runtime, tls)),
            _Server(public_config(runtime, tls)),
        ]
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    def info(self) -> dict[str, Any]:
        settings = self.runtime.settings
        return {
            "host": settings.host,
            "internal_port": self.listeners.internal_port,
            "public_port": self.listeners.public_port,
            "pid": os.getpid(),
            "ca_file": str(self.tls.ca_file),
            "api_client_cert_file": (
                str(self.tls.api_client_cert_file) if self.tls.api_client_cert_file else None
            ),
        }

    @property
    def started(self) -> bool:
        return all(server.started for server in self._servers)

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)

    async def serve(self, *, ready_file: Path | None = None, handle_signals: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self._request_stop)
        self._audit_process("vault.process.start")
        self.worker.start()
        tasks = [
            asyncio.ensure_future(self._servers[0].serve(sockets=[self.listeners.internal])),
            asyncio.ensure_future(self._servers[1].serve(sockets=[self.listeners.public])),
        ]
        try:
            while not self.started:
                if any(task.done() for task in tasks):
                    break  # a server failed to start; its exception surfaces below
                await asyncio.sleep(0.05)
            if self.started:
                if ready_file is not None:
                    write_ready_file(ready_file, self.info())
                self._started.set()
                log.info("vault_listening", **self.info())
            await asyncio.gather(*tasks)
        finally:
            self._request_stop()
            if ready_file is not None:
                ready_file.unlink(missing_ok=True)
            self._audit_process("vault.process.stop")
            self.worker.stop()

    def _request_stop(self) -> None:
        for server in self._servers:
            server.should_exit = True

    def start(self) -> VaultServer:
        """Serve on a thread of its own (tests, embedding); returns once both listen."""
        self._thread = threading.Thread(target=self._run_thread, name="vault", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            raise TimeoutError("the vault did not start in time")
        return self

    def _run_thread(self) -> None:
        asyncio.run(self.serve())

    def _audit_process(self, action: auditlog.VaultAction) -> None:
        try:
            auditlog.record_now(
                self.runtime.db,
                VaultEvent(
                    actor_type="system",
                    actor_id="vault",
                    action=action,
                    outcome="success",
                    target_type="process",
                    target_id=str(os.getpid()),
                    details={
                        "internal_port": self.listeners.internal_port,
                        "public_port": self.listeners.public_port,
                        "kek_backend": self.runtime.kek.backend,
                    },
                ),
            )
        except Exception as exc:  # noqa: BLE001 - logged loudly (L3); serving continues/ends
            # The type is enough; a traceback may carry data.
            log.error("vault_audit_failed", action=action, error=type(exc).__name__)  # noqa: TRY400
