"""The real HTTPS listener (SECURITY-REQUIREMENTS T1): TLS 1.2/1.3 only, AEAD suites, HSTS."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastionpay import bootstrap
from bastionpay.config import Settings
from bastionpay.edge.tls import client_context
from bastionpay.server import bind, serve_api


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    data = tmp_path_factory.mktemp("tls")
    settings = Settings(data_dir=data)
    runtime = bootstrap.initialise(settings)
    tls = bootstrap.tls_files(settings)
    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    thread = threading.Thread(
        target=serve_api, args=(runtime, sock, tls.cert_file, tls.key_file), daemon=True
    )
    thread.start()
    assert tls.ca_file is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(
                f"https://127.0.0.1:{port}/livez", verify=client_context(tls.ca_file)
            ).is_success:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield "127.0.0.1", port, tls.ca_file
    # The daemon thread ends with the test process; the socket closes with it.


def _handshake(
    host: str, port: int, ca: Path, *, version: ssl.TLSVersion, ciphers: str | None = None
) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # we want the legacy client on purpose
        context.minimum_version = version
        context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        # Let this client really offer TLS 1.0/1.1, so a refusal can only come from the server.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    if ciphers:
        context.set_ciphers(ciphers)
    raw = socket.create_connection((host, port), timeout=5)
    return context.wrap_socket(raw, server_hostname=host)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_modern_tls_versions_are_accepted_with_aead_suites(
    server: tuple[str, int, Path], version: ssl.TLSVersion
) -> None:
    with _handshake(*server, version=version) as tls:
        name, negotiated, _bits = tls.cipher() or ("", "", 0)
        assert (
            negotiated
            == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        )
        assert "GCM" in name or "CHACHA20" in name
        if version is ssl.TLSVersion.TLSv1_2:
            assert name.startswith("ECDHE")  # forward secrecy


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_legacy_tls_versions_are_refused(
    server: tuple[str, int, Path], version: ssl.TLSVersion
) -> None:
    with pytest.raises(ssl.SSLError) as info:
        _handshake(*server, version=version).close()
    # Refused by the server (alert or closed connection), not by this client's own policy.
    assert "NO_PROTOCOLS_AVAILABLE" not in str(info.value).upper(), info.value
    assert "UNSUPPORTED_PROTOCOL" not in str(info.value).upper(), info.value


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_control_the_legacy_client_does_speak_legacy_tls(
    server: tuple[str, int, Path], version: ssl.TLSVersion
) -> None:
    """Positive control: against a permissive server the same client completes the handshake,
    so the refusal above is the api's doing."""
    _, _, ca = server
    tls_dir = ca.parent
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(str(tls_dir / "api.pem"), str(tls_dir / "api.key"))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept_one() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    with _handshake("127.0.0.1", port, ca, version=version) as tls:
        assert tls.version() in ("TLSv1", "TLSv1.1")
    thread.join(timeout=5)
    listener.close()


def test_cbc_suites_are_refused_on_tls_1_2(server: tuple[str, int, Path]) -> None:
    with pytest.raises(ssl.SSLError):
        _handshake(
            *server,
            version=ssl.TLSVersion.TLSv1_2,
            ciphers="ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA",
        ).close()


def test_plain_http_is_not_served(server: tuple[str, int, Path]) -> None:
    host, port, _ = server
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{host}:{port}/healthz", timeout=3)


def test_responses_carry_hsts_and_no_server_banner(server: tuple[str, int, Path]) -> None:
    host, port, ca = server
    response = httpx.get(f"https://{host}:{port}/healthz", verify=client_context(ca))
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "server" not in response.headers
