"""Run the real edge (nginx + ModSecurity v3 + OWASP CRS from deploy/nginx) in front of a platform.

Used by tests/e2e/test_waf.py (SECURITY-REQUIREMENTS T3, PCI DSS 6.4.2). Not a test module itself.
The edge is rendered with deploy/nginx/render.py exactly as documented for production, into a
private prefix directory, and started as a foreground nginx in its own process group on
127.0.0.1 only; `Edge.stop` (and `Edge.kill` as a last resort) always reap it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastionpay.crypto.devpki import issue_leaf

REPO = Path(__file__).resolve().parents[2]
RENDER = REPO / "deploy" / "nginx" / "render.py"
MODSECURITY_MODULE = Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
CRS_RULES_DIR = Path("/usr/share/modsecurity-crs/rules")

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
LOG_WAIT_S = 5.0


def missing_components() -> str | None:
    """Why the edge cannot run here (None when nginx, the module and the CRS are all present)."""
    missing = []
    if shutil.which("nginx") is None:
        missing.append("nginx (Debian package nginx)")
    if not MODSECURITY_MODULE.is_file():
        missing.append(f"{MODSECURITY_MODULE} (libnginx-mod-http-modsecurity)")
    if not (CRS_RULES_DIR / "REQUEST-901-INITIALIZATION.conf").is_file():
        missing.append(f"the OWASP CRS in {CRS_RULES_DIR} (modsecurity-crs)")
    if not missing:
        return None
    return "the WAF edge needs " + ", ".join(missing)


def issue_edge_certificate(platform_tls_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1/localhost from the platform's development CA.

    The edge gets its own key pair rather than a copy of the api's: in production they are
    different hosts with different certificates, and the test should not hide a mix-up.
    """
    ca_cert = x509.load_pem_x509_certificate((platform_tls_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key(
        (platform_tls_dir / "ca.key").read_bytes(), password=None
    )
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the development CA key is expected to be an EC key")
    cert_pem, key_pem = issue_leaf(ca_cert, ca_key, common_name="bastionpay-edge", server=True)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = out_dir / "edge.pem", out_dir / "edge.key"
    cert.write_bytes(cert_pem)
    key.touch(mode=0o600)
    key.write_bytes(key_pem)
    return cert, key


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render(
    prefix: Path,
    *,
    port: int,
    upstream: str,
    cert: Path,
    key: Path,
    upstream_ca: Path,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """deploy/nginx/render.py as an operator runs it (a separate stdlib-only process)."""
    return subprocess.run(
        [
            sys.executable,
            str(RENDER),
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            upstream,
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--upstream-ca",
            str(upstream_ca),
            "--prefix",
            str(prefix),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of a log file (a line still being written is not returned).

    ModSecurity copies request bytes into its JSON audit log without validating UTF-8, so the
    file is decoded with replacement characters rather than trusted to be UTF-8.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for line in data.split(b"\n")[:-1]:
        if line.strip():
            entries.append(json.loads(line.decode("utf-8", errors="replace")))
    return entries


@dataclass
class Edge:
    prefix: Path
    port: int
    ca_file: str
    proc: subprocess.Popen[bytes]
    _stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def audit_log(self) -> Path:
        return self.prefix / "logs" / "modsec_audit.json"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def diagnostics(self) -> str:
        parts = []
        for path in (self.prefix / "logs" / "nginx.out", self.error_log):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    # -- logs ------------------------------------------------------------------------------

    def audit_entries(self) -> list[dict[str, Any]]:
        return [entry["transaction"] for entry in read_json_lines(self.audit_log)]

    def audit_entry(self, request_id: str, timeout: float = LOG_WAIT_S) -> dict[str, Any]:
        """The audit record of one transaction (its id is nginx's $request_id); waits for it."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.audit_entries():
                if entry.get("unique_id") == request_id:
                    return entry
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no audit-log entry for transaction {request_id} within {timeout} s\n"
                    f"{self.diagnostics()}"
                )
            time.sleep(0.05)

    def access_entry(self, request_id: str, timeout: float = LOG_WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for entry in read_json_lines(self.access_log):
                if entry.get("request_id") == request_id:
                    return entry
            if time.monotonic() > deadline:
                raise AssertionError(f"no access-log line for request {request_id}")
            time.sleep(0.05)

    # -- lifecycle ---------------------------------------------------------------------------

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"nginx exited with code {self.proc.returncode}\n{self.diagnostics()}"
            )

    def stop(self) -> None:
        """Graceful stop (SIGQUIT: finish in-flight requests), then SIGKILL to the group."""
        if self._stopped:
            return
        self._stopped = True
        pgid = self.proc.pid
        for sig, wait_s in ((signal.SIGQUIT, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait_s)
        # Workers are in the same process group; none may outlive the master.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _wait_listening(edge: Edge) -> None:
    """Until nginx answers HTTP over TLS at all (any status: the upstream may be down)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no attempt"
    with httpx.Client(verify=edge.tls_context(), timeout=5.0) as http:
        while time.monotonic() < deadline:
            edge.check_alive()
            try:
                http.get(f"{edge.url}/livez")
            except httpx.HTTPError as exc:
                last = repr(exc)
            else:
                return
            time.sleep(0.1)
    raise AssertionError(f"the edge never answered over TLS ({last})\n{edge.diagnostics()}")


def start_edge(
    prefix: Path,
    *,
    upstream: str,
    cert: Path,
    key: Path,
    upstream_ca: Path,
    client_ca_file: str,
    extra: tuple[str, ...] = (),
) -> Edge:
    """Render into `prefix` and start nginx on a free loopback port (retried if it was taken)."""
    nginx = shutil.which("nginx")
    if nginx is None:
        raise AssertionError("nginx is not on PATH")
    for _attempt in range(3):
        port = free_port()
        rendered = render(
            prefix, port=port, upstream=upstream, cert=cert, key=key, upstream_ca=upstream_ca,
            extra=extra,
        )  # fmt: skip
        if rendered.returncode != 0:
            raise AssertionError(f"render.py failed ({rendered.returncode}): {rendered.stderr}")
        out = prefix / "logs" / "nginx.out"
        with out.open("ab") as sink:
            proc = subprocess.Popen(
                [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaps the workers too
            )
        edge = Edge(prefix=prefix, port=port, ca_file=client_ca_file, proc=proc)
        try:
            _wait_listening(edge)
        except AssertionError:
            edge.stop()
            if "Address already in use" in edge.diagnostics():
                continue  # another process took the port between free_port() and bind()
            raise
        return edge
    raise AssertionError("could not find a free loopback port for nginx in 3 attempts")


@contextlib.contextmanager
def running_edge(prefix: Path, **kwargs: Any) -> Iterator[Edge]:
    edge = start_edge(prefix, **kwargs)
    try:
        yield edge
    finally:
        edge.stop()
