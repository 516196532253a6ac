"""Scan the real api TLS listener the way an external TLS scanner does (SECURITY-REQUIREMENTS T1,
PCI DSS 4.2.1, ASVS 12.1.1): TLS 1.2 and 1.3 only, forward-secret AEAD suites only, no fallback,
a certificate that validates against the platform's CA.

Why not sslyze: its releases cap `cryptography` below what this project runs (sslyze 6.3.1 needs
cryptography<47, 6.1-6.3.0 <45, 6.0.0 <43, 5.2.0 <42) and installing it would downgrade it, so the
scanner is built here from two independent parts instead:

* Debian's `openssl s_client` (OpenSSL 3), which offers every cipher suite OpenSSL knows
  (`openssl ciphers -V ALL:COMPLEMENTOFALL`, at security level 0, PSK and SRP suites included) one
  at a time for each protocol version, the per-suite method sslyze uses;
* ClientHello records built by hand over a raw socket, for what OpenSSL 3's client can no longer
  send: SSL 2.0 and SSL 3.0 hellos, a DEFLATE compression offer, the Heartbleed request
  (CVE-2014-0160), the early ChangeCipherSpec (CVE-2014-0224) and TLS_FALLBACK_SCSV (RFC 7507).

A deliberately weak control server (TLS 1.0+, `ALL:COMPLEMENTOFALL:@SECLEVEL=0`, an RSA key, client
renegotiation allowed) is scanned with the same code and must show up as weak, so a clean result on
the api is the api's doing and not a scanner that cannot see. A one-off cross-check with sslyze
6.3.1 (in a separate virtualenv) reported the same accepted suites.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import queue
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from bastionpay import bootstrap
from bastionpay.config import Settings
from bastionpay.edge.tls import client_context
from bastionpay.server import bind

HOST = "127.0.0.1"
IO_TIMEOUT = 15.0  # generous: a shared 2-core machine can stall a handshake for seconds
PROCESS_TIMEOUT = 60.0
STARTUP_TIMEOUT = 60.0
SCAN_WORKERS = 4

# Protocol versions as OpenSSL names them, and the s_client switch that pins each one.
Protocol = Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
S_CLIENT_FLAG: dict[Protocol, str] = {
    "TLSv1": "-tls1",
    "TLSv1.1": "-tls1_1",
    "TLSv1.2": "-tls1_2",
    "TLSv1.3": "-tls1_3",
}
TLS13_SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)
# Lets s_client put PSK and SRP suites on the wire too; the server has no PSK or SRP configured.
PSK_AND_SRP_ARGS = ("-psk", "0102030405060708", "-srpuser", "scan", "-srppass", "pass:scan-only")

# The api process: bootstrap (dev PKI, database) and serve on the socket inherited as fd argv[2].
SERVE_API = """
import socket, sys
from pathlib import Path
from bastionpay import bootstrap
from bastionpay.config import Settings
from bastionpay.server import serve_api
settings = Settings(data_dir=Path(sys.argv[1]))
runtime = bootstrap.initialise(settings)
tls = bootstrap.tls_files(settings)
serve_api(runtime, socket.socket(fileno=int(sys.argv[2])), tls.cert_file, tls.key_file)
"""


# --------------------------------------------------------------------------- servers under scan


@dataclass(frozen=True)
class Api:
    port: int
    ca_file: Path
    cert_file: Path


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The real api listener (uvicorn + `edge.tls.harden`) in its own process, so that it can be
    stopped at the end of the module (an in-process uvicorn thread cannot be)."""
    data = tmp_path_factory.mktemp("tls-scan")
    settings = Settings(data_dir=data)
    bootstrap.initialise(settings)  # dev CA + api certificate + schema, before the server starts
    tls = bootstrap.tls_files(settings)
    assert tls.ca_file is not None
    sock = bind(HOST, 0)
    port = int(sock.getsockname()[1])
    log_path = data / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE_API, str(data), str(sock.fileno())],
            pass_fds=(sock.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sock.close()  # the child holds the listening socket now
    try:
        _wait_until_serving(proc, port, tls.ca_file, log_path)
        yield Api(port=port, ca_file=tls.ca_file, cert_file=tls.cert_file)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _wait_until_serving(proc: subprocess.Popen[bytes], port: int, ca: Path, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"api exited with {proc.returncode}: {log.read_text(errors='replace')}")
        try:
            response = httpx.get(
                f"https://{HOST}:{port}/livez", verify=client_context(ca), timeout=IO_TIMEOUT
            )
            if response.is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"api not serving after {STARTUP_TIMEOUT}s: {log.read_text(errors='replace')}")


@dataclass(frozen=True)
class Weak:
    port: int
    cert_file: Path


@pytest.fixture(scope="module")
def weak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weak]:
    """Positive control: a deliberately weak TLS server on another ephemeral port.

    TLS 1.0 and up, every suite OpenSSL has at security level 0 (static-RSA key exchange, CBC,
    SHA-1 MACs, anonymous and NULL suites), an RSA key, and client-initiated renegotiation allowed
    (SSL_OP_ALLOW_CLIENT_RENEGOTIATION; OpenSSL 3 refuses it by default). The local OpenSSL 3.0
    cannot do SSL 2.0/3.0 at all, so those have no control beyond the raw-hello code path itself.
    """
    directory = tmp_path_factory.mktemp("tls-weak")
    cert_file, key_file = _self_signed_rsa(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # weak on purpose
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    context.options |= ssl.Options(1 << 8)  # SSL_OP_ALLOW_CLIENT_RENEGOTIATION (OpenSSL 3.0)
    context.load_cert_chain(str(cert_file), str(key_file))
    listener = socket.create_server((HOST, 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    workers: list[threading.Thread] = []

    def serve(conn: socket.socket) -> None:
        conn.settimeout(IO_TIMEOUT)
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                while tls.recv(4096):  # keep reading: that is where renegotiation happens
                    pass
        except (ssl.SSLError, OSError):
            conn.close()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=serve, args=(conn,), daemon=True)
            worker.start()
            workers.append(worker)

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield Weak(port=int(listener.getsockname()[1]), cert_file=cert_file)
    finally:
        stop.set()
        acceptor.join(timeout=10)
        listener.close()
        for worker in workers:
            worker.join(timeout=IO_TIMEOUT)


def _self_signed_rsa(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak-tls-control")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "weak.pem", directory / "weak.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


# --------------------------------------------------------------------------- s_client scanner


@dataclass(frozen=True)
class Suite:
    """One cipher suite as `openssl ciphers -V` describes it."""

    code: int
    name: str
    since: str  # the oldest protocol OpenSSL offers it on: SSLv3, TLSv1, TLSv1.2 or TLSv1.3
    kx: str  # ECDH, DH, RSA, PSK, ... ("any" for TLS 1.3, where key exchange is always (EC)DHE)
    au: str  # ECDSA, RSA, None (anonymous), ...
    enc: str  # AESGCM(128), CHACHA20/POLY1305(256), AES(128) (= CBC), None, ...
    mac: str  # AEAD, SHA1, SHA256, SHA384, MD5

    @property
    def is_aead(self) -> bool:
        return self.mac == "AEAD" and (
            self.enc.startswith("AESGCM(") or self.enc == "CHACHA20/POLY1305(256)"
        )

    @property
    def is_rsa_key_exchange(self) -> bool:
        return self.kx in {"RSA", "RSAPSK"}


@functools.cache
def _all_suites() -> tuple[Suite, ...]:
    """Every suite the local OpenSSL has, at security level 0, TLS 1.3 ones included."""
    listing = _run(
        [
            "openssl",
            "ciphers",
            "-V",
            "-ciphersuites",
            ":".join(TLS13_SUITES),
            "ALL:COMPLEMENTOFALL:@SECLEVEL=0",
        ]
    ).stdout
    suites = []
    for line in listing.splitlines():
        code, _dash, name, since, *rest = line.split()
        attrs = dict(item.split("=", 1) for item in rest)
        high, low = (int(part, 16) for part in code.split(","))
        suites.append(
            Suite(
                code=high << 8 | low,
                name=name,
                since=since,
                kx=attrs["Kx"],
                au=attrs["Au"],
                enc=attrs["Enc"],
                mac=attrs["Mac"],
            )
        )
    return tuple(suites)


def _candidates(suites: Sequence[Suite], protocol: Protocol) -> list[Suite]:
    if protocol == "TLSv1.3":
        return [s for s in suites if s.since == "TLSv1.3"]
    if protocol == "TLSv1.2":
        return [s for s in suites if s.since != "TLSv1.3"]
    return [s for s in suites if s.since in {"SSLv3", "TLSv1"}]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,  # s_client closes the connection at end of input
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


def s_client(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """One `openssl s_client` handshake against 127.0.0.1:port, stdout and stderr merged."""
    result = _run(["openssl", "s_client", "-connect", f"{HOST}:{port}", *args])
    output = result.stdout + result.stderr
    assert "CONNECTED(" in output, f"no TCP connection to {HOST}:{port}: {output}"
    return subprocess.CompletedProcess(result.args, result.returncode, output, "")


# "New, X, Cipher is Y": Y is the negotiated suite, but X is the protocol the *suite* dates from;
# the negotiated protocol is in the SSL-Session block, which s_client prints for TLS 1.2 and older
# (for TLS 1.3 suites, X is TLSv1.3, and they exist on no other version).
NEGOTIATED = re.compile(r"^New, (\S+), Cipher is (\S+)$", re.MULTILINE)
SESSION_PROTOCOL = re.compile(r"^\s+Protocol\s+: (\S+)$", re.MULTILINE)
WRITTEN = re.compile(r"handshake has read \d+ bytes and written (\d+) bytes")


def handshake(result: subprocess.CompletedProcess[str]) -> tuple[str, str] | None:
    """(protocol, cipher) if the handshake completed, else None."""
    match = NEGOTIATED.search(result.stdout)
    if match is None or match[2] == "(NONE)":
        return None
    session = SESSION_PROTOCOL.search(result.stdout)
    return (session[1] if session else match[1]), match[2]


@dataclass
class ProtocolScan:
    accepted: list[Suite] = field(default_factory=list)
    refused: list[Suite] = field(default_factory=list)
    not_offered: list[Suite] = field(default_factory=list)  # the client could not send it


Scan = dict[Protocol, ProtocolScan]
Outcome = Literal["accepted", "refused", "not_offered"]


def _try_suite(port: int, protocol: Protocol, suite: Suite) -> tuple[Outcome, Suite]:
    if protocol == "TLSv1.3":
        result = s_client(port, "-tls1_3", "-ciphersuites", suite.name)
    else:
        flag = S_CLIENT_FLAG[protocol]
        result = s_client(port, flag, "-cipher", f"{suite.name}:@SECLEVEL=0", *PSK_AND_SRP_ARGS)
    negotiated = handshake(result)
    if negotiated is not None:
        assert negotiated == (protocol, suite.name), result.stdout
        return "accepted", suite
    written = WRITTEN.search(result.stdout)
    # A ClientHello is well over 40 bytes; a 7-byte write is the client's own "no ciphers" alert.
    if "no ciphers available" in result.stdout or written is None or int(written[1]) < 40:
        return "not_offered", suite
    return "refused", suite


def scan(port: int) -> Scan:
    """Offer every suite OpenSSL knows, one per handshake, on each of TLS 1.0 to 1.3."""
    suites = _all_suites()
    jobs = [(p, s) for p in S_CLIENT_FLAG for s in _candidates(suites, p)]
    results: Scan = {p: ProtocolScan() for p in S_CLIENT_FLAG}
    with ThreadPoolExecutor(max_workers=SCAN_WORKERS) as pool:
        outcomes = pool.map(lambda job: (job[0], *_try_suite(port, *job)), jobs)
        for protocol, outcome, suite in outcomes:
            getattr(results[protocol], outcome).append(suite)
    return results


@pytest.fixture(scope="module")
def api_scan(api: Api) -> Scan:
    return scan(api.port)


@pytest.fixture(scope="module")
def weak_scan(weak: Weak) -> Scan:
    return scan(weak.port)


# --------------------------------------------------------------------------- raw hello probes

HANDSHAKE, ALERT, CHANGE_CIPHER_SPEC, HEARTBEAT = 22, 21, 20, 24
CLIENT_HELLO, SERVER_HELLO, SERVER_HELLO_DONE = 1, 2, 14
SSL3, TLS10, TLS12 = 0x0300, 0x0301, 0x0303
EXT_HEARTBEAT, EXT_EMS, EXT_RENEGOTIATION_INFO = 0x000F, 0x0017, 0xFF01
ALERT_UNEXPECTED_MESSAGE, ALERT_INAPPROPRIATE_FALLBACK = 10, 86
TLS_FALLBACK_SCSV = 0x5600
SIGNATURE_ALGORITHMS = (0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601)
SIGNATURE_ALGORITHMS_SHA1 = (0x0203, 0x0201)  # offered too, so a weak server is not turned away
GROUPS = (0x001D, 0x0017, 0x0018)  # x25519, secp256r1, secp384r1


def _vec(width: int, body: bytes) -> bytes:
    return len(body).to_bytes(width, "big") + body


def _codes(values: Iterable[int]) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


def client_hello(
    version: int,
    suites: Iterable[int],
    *,
    compression: bytes = b"\x00",
    heartbeat: bool = False,
) -> bytes:
    """A ClientHello record (TLS 1.2 and older framing; no supported_versions, so no TLS 1.3)."""
    extensions = (
        _codes([0x000A])
        + _vec(2, _vec(2, _codes(GROUPS)))
        + _codes([0x000B])
        + _vec(2, _vec(1, b"\x00"))
        + _codes([0x000D])
        + _vec(2, _vec(2, _codes(SIGNATURE_ALGORITHMS + SIGNATURE_ALGORITHMS_SHA1)))
        + _codes([EXT_RENEGOTIATION_INFO])
        + _vec(2, _vec(1, b""))  # RFC 5746, empty on the initial handshake
        + _codes([EXT_EMS])
        + _vec(2, b"")  # RFC 7627
    )
    if heartbeat:
        extensions += _codes([EXT_HEARTBEAT]) + _vec(2, b"\x01")  # peer_allowed_to_send
    body = (
        version.to_bytes(2, "big")
        + os.urandom(32)
        + _vec(1, b"")
        + _vec(2, _codes(suites))
        + _vec(1, compression)
        + _vec(2, extensions)
    )
    message = bytes([CLIENT_HELLO]) + _vec(3, body)
    return record(HANDSHAKE, min(version, TLS10), message)


def record(content_type: int, version: int, payload: bytes) -> bytes:
    return bytes([content_type]) + version.to_bytes(2, "big") + _vec(2, payload)


@dataclass(frozen=True)
class ServerHello:
    version: int
    cipher: int
    compression: int
    extensions: dict[int, bytes]


def parse_server_hello(body: bytes) -> ServerHello:
    version = int.from_bytes(body[0:2], "big")
    pos = 2 + 32
    pos += 1 + body[pos]  # session id
    cipher = int.from_bytes(body[pos : pos + 2], "big")
    compression = body[pos + 2]
    pos += 3
    extensions: dict[int, bytes] = {}
    if pos < len(body):
        end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
        while pos < end:
            kind = int.from_bytes(body[pos : pos + 2], "big")
            size = int.from_bytes(body[pos + 2 : pos + 4], "big")
            extensions[kind] = body[pos + 4 : pos + 4 + size]
            pos += 4 + size
    return ServerHello(version, cipher, compression, extensions)


@dataclass
class Flight:
    """What came back: records by content type, handshake messages, and how it ended."""

    content_types: list[int] = field(default_factory=list)
    handshake: list[tuple[int, bytes]] = field(default_factory=list)
    alert: tuple[int, int] | None = None  # (level, description)
    ended: Literal["", "closed", "silent"] = ""

    @property
    def server_hello(self) -> ServerHello | None:
        for kind, body in self.handshake:
            if kind == SERVER_HELLO:
                return parse_server_hello(body)
        return None


class RawTLS:
    """A TCP connection on which records are written by hand (T1 probes OpenSSL 3 cannot send)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        self._handshake_bytes = b""

    def __enter__(self) -> RawTLS:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exact(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def read(self, *, until: int | None = None, timeout: float = IO_TIMEOUT) -> Flight:
        """Read records until handshake message `until`, an alert, EOF, or `timeout` of silence."""
        flight = Flight()
        self.sock.settimeout(timeout)
        while True:
            try:
                header = self._exact(5)
                payload = self._exact(int.from_bytes(header[3:5], "big")) if header else None
            except TimeoutError:
                flight.ended = "silent"
                return flight
            except ConnectionError:
                header = payload = None
            if header is None or payload is None:
                flight.ended = "closed"
                return flight
            flight.content_types.append(header[0])
            if header[0] == ALERT:
                flight.alert = (payload[0], payload[1])
                return flight
            if header[0] == HANDSHAKE:
                self._handshake_bytes += payload
                while len(self._handshake_bytes) >= 4:
                    size = int.from_bytes(self._handshake_bytes[1:4], "big")
                    if len(self._handshake_bytes) < 4 + size:
                        break
                    kind, body = self._handshake_bytes[0], self._handshake_bytes[4 : 4 + size]
                    self._handshake_bytes = self._handshake_bytes[4 + size :]
                    flight.handshake.append((kind, body))
                if until is not None and any(kind == until for kind, _ in flight.handshake):
                    return flight


def legacy_codes() -> list[int]:
    return [s.code for s in _all_suites() if s.since in {"SSLv3", "TLSv1"}]


def tls12_codes() -> list[int]:
    return [s.code for s in _all_suites() if s.since != "TLSv1.3"]


def raw_hello(
    port: int, version: int, suites: Iterable[int], compression: bytes = b"\x00"
) -> Flight:
    """Send one hand-built ClientHello and read the server's first flight."""
    with RawTLS(port) as conn:
        conn.send(client_hello(version, suites, compression=compression))
        return conn.read(until=SERVER_HELLO_DONE)


# --------------------------------------------------------------------------- the api: protocols


def test_the_scan_put_every_suite_on_the_wire(api_scan: Scan) -> None:
    """Anti-vacuity: a suite the client could not even offer proves nothing about the server."""
    for protocol, result in api_scan.items():
        assert result.not_offered == [], (protocol, [s.name for s in result.not_offered])
        assert result.accepted or result.refused, protocol
    assert len(api_scan["TLSv1.2"].refused) > 100  # OpenSSL 3.0 knows ~150 TLS 1.2 suites


@pytest.mark.parametrize("protocol", ["TLSv1", "TLSv1.1"])
def test_tls_1_0_and_1_1_accept_no_suite(api_scan: Scan, protocol: Protocol) -> None:
    # T1 / PCI DSS 4.2.1: no early TLS.
    result = api_scan[protocol]
    assert result.accepted == [], [s.name for s in result.accepted]
    assert len(result.refused) > 50


@pytest.mark.parametrize(
    ("version", "label"), [(SSL3, "SSL 3.0"), (TLS10, "TLS 1.0")], ids=["ssl3", "tls1"]
)
def test_raw_ssl3_and_tls10_hellos_get_no_server_hello(api: Api, version: int, label: str) -> None:
    # T1 / PCI DSS 4.2.1. OpenSSL 3's client cannot send SSL 3.0 at all, so the hello is hand-built
    # offering every SSL 3.0/TLS 1.0-era suite; a server that speaks the version answers with a
    # ServerHello (the TLS 1.0 variant is accepted by the weak control below).
    flight = raw_hello(api.port, version, legacy_codes())
    assert flight.server_hello is None, (label, flight)
    assert flight.ended == "closed" or flight.alert is not None, (label, flight)


def test_raw_ssl2_hello_gets_no_server_hello(api: Api) -> None:
    # T1 / PCI DSS 4.2.1: an SSL 2.0 CLIENT-HELLO (2-byte header with the high bit set) offering the
    # seven SSL 2.0 cipher kinds. An SSL 2.0 server would answer SERVER-HELLO (message type 4).
    specs = bytes.fromhex("010080 020080 030080 040080 050080 060040 0700c0")
    challenge = os.urandom(16)
    body = b"\x01\x00\x02" + len(specs).to_bytes(2, "big") + b"\x00\x00"  # no session id
    body += len(challenge).to_bytes(2, "big") + specs + challenge
    with RawTLS(api.port) as conn:
        conn.send((0x8000 | len(body)).to_bytes(2, "big") + body)
        conn.sock.settimeout(IO_TIMEOUT)
        reply = b""
        try:
            while len(reply) < 3 and (chunk := conn.sock.recv(3 - len(reply))):
                reply += chunk
        except (TimeoutError, ConnectionError):
            pass
    assert not (len(reply) >= 3 and reply[0] & 0x80 and reply[2] == 4), reply.hex()
    assert not reply.startswith(b"\x16"), reply.hex()  # nor a TLS handshake in answer


def test_tls_1_2_accepts_only_ecdhe_aead_suites(api_scan: Scan) -> None:
    # T1 / PCI DSS 4.2.1, edge.tls.TLS12_CIPHERS: forward secrecy (ECDHE) with AES-GCM or
    # ChaCha20-Poly1305 only. No CBC, no static-RSA key exchange, no SHA-1/MD5 MAC, no NULL
    # encryption, no anonymous suites (export suites no longer exist in OpenSSL 3 at all).
    accepted = api_scan["TLSv1.2"].accepted
    assert accepted, "TLS 1.2 must stay available"
    for suite in accepted:
        assert suite.kx == "ECDH", suite
        assert suite.au in {"ECDSA", "RSA"}, suite  # authenticated, never anonymous
        assert suite.is_aead, suite
        assert suite.mac == "AEAD", suite
        assert suite.enc != "None", suite


def test_tls_1_3_is_supported_with_aead_suites(api_scan: Scan) -> None:
    # T1: TLS 1.3 offered; its suites are all AEAD with (EC)DHE. The short-tag CCM_8 is not among
    # what the api accepts.
    accepted = {s.name for s in api_scan["TLSv1.3"].accepted}
    assert accepted
    assert accepted <= set(TLS13_SUITES[:3]), accepted  # the GCM and ChaCha20-Poly1305 suites


def test_no_rsa_key_exchange_on_any_version_so_no_robot_oracle(api: Api, api_scan: Scan) -> None:
    # ROBOT (Bleichenbacher's oracle, CVE-2017-13099 and kin) needs a static-RSA (kRSA) suite to
    # exist; with none accepted on any version there is nothing to query. The leaf key is EC too.
    for protocol, result in api_scan.items():
        assert not [s.name for s in result.accepted if s.is_rsa_key_exchange], protocol
    leaf = x509.load_pem_x509_certificate(api.cert_file.read_bytes())
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)


# --------------------------------------------------------------------------- the api: extensions


def test_compression_is_never_negotiated(api: Api) -> None:
    # CRIME (CVE-2012-4929): offer DEFLATE first; the server must choose null compression.
    flight = raw_hello(api.port, TLS12, tls12_codes(), compression=b"\x01\x00")
    hello = flight.server_hello
    assert hello is not None, flight
    assert hello.compression == 0
    assert "Compression: NONE" in s_client(api.port, "-tls1_2").stdout


def test_secure_renegotiation_and_extended_master_secret_are_supported(api: Api) -> None:
    # RFC 5746 (CVE-2009-3555 fix) and RFC 7627 (triple handshake), on the TLS 1.2 ServerHello.
    hello = raw_hello(api.port, TLS12, tls12_codes()).server_hello
    assert hello is not None
    assert hello.version == TLS12
    assert hello.extensions.get(EXT_RENEGOTIATION_INFO) == b"\x00"
    assert EXT_EMS in hello.extensions
    assert "Secure Renegotiation IS supported" in s_client(api.port, "-tls1_2").stdout


def renegotiate(port: int) -> list[str]:
    """Complete a TLS 1.2 handshake with s_client, then ask it to renegotiate ("R" on stdin)."""
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-tls1_2", "-msg"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(stream: Iterable[str]) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, args=(proc.stdout,), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        proc.stdin.write("R\n")  # read by s_client once the first handshake is done
        proc.stdin.flush()
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if "RENEGOTIATING" not in seen:
                continue
            if "Alert" in line or ":error:" in line:
                break  # refused (or failed): no_renegotiation, handshake_failure, ...
            if sum("], Finished" in s for s in seen) >= 4:
                break  # both Finished messages of the second handshake went by
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=IO_TIMEOUT)
        proc.stdout.close()
    return seen


def test_client_initiated_renegotiation_is_refused(api: Api) -> None:
    # Client-initiated renegotiation DoS: the api answers "R" with no_renegotiation (edge.tls sets
    # OP_NO_RENEGOTIATION) and never sends a second ServerHello.
    seen = renegotiate(api.port)
    assert "RENEGOTIATING" in seen, seen
    after = seen[seen.index("RENEGOTIATING") :]
    assert any("no_renegotiation" in line for line in after), after
    assert not any("ServerHello" in line for line in after), after


def test_not_vulnerable_to_heartbleed(api: Api) -> None:
    # CVE-2014-0160: offer the heartbeat extension, then send a HeartbeatRequest that claims a
    # 16 KiB payload but carries none. A vulnerable server answers with a Heartbeat record full of
    # its memory; this one must not negotiate heartbeats nor answer one.
    with RawTLS(api.port) as conn:
        conn.send(client_hello(TLS12, tls12_codes(), heartbeat=True))
        flight = conn.read(until=SERVER_HELLO_DONE)
        hello = flight.server_hello
        assert hello is not None, flight
        assert EXT_HEARTBEAT not in hello.extensions
        conn.send(record(HEARTBEAT, TLS12, b"\x01\x40\x00"))
        after = conn.read(timeout=5)
    assert HEARTBEAT not in after.content_types, after
    assert after.alert is not None or after.ended == "closed", after


def test_not_vulnerable_to_openssl_ccs_injection(api: Api) -> None:
    # CVE-2014-0224: a ChangeCipherSpec before any key exchange. A vulnerable server accepts it
    # silently (and would go on with a null master secret); a fixed one rejects it at once with
    # unexpected_message, or drops the connection.
    with RawTLS(api.port) as conn:
        conn.send(client_hello(TLS12, tls12_codes()))
        assert conn.read(until=SERVER_HELLO_DONE).server_hello is not None
        conn.send(record(CHANGE_CIPHER_SPEC, TLS12, b"\x01"))
        after = conn.read(timeout=IO_TIMEOUT)
    assert after.ended != "silent", after
    if after.alert is not None:
        assert after.alert == (2, ALERT_UNEXPECTED_MESSAGE), after
    else:
        assert after.ended == "closed", after


def test_no_downgrade_fallback_scsv(api: Api) -> None:
    # T1 "no fallback" (RFC 7507): a TLS 1.2 hello that says it is a fallback from a higher version
    # is refused by a TLS 1.3 server; the same hello without the SCSV is accepted (control).
    assert raw_hello(api.port, TLS12, tls12_codes()).server_hello is not None
    flight = raw_hello(api.port, TLS12, [*tls12_codes(), TLS_FALLBACK_SCSV])
    assert flight.server_hello is None, flight
    if flight.alert is not None:
        assert flight.alert == (2, ALERT_INAPPROPRIATE_FALLBACK), flight
    else:
        assert flight.ended == "closed", flight


# --------------------------------------------------------------------------- the api: certificate


def test_certificate_chain_validates_against_the_dev_ca(api: Api, weak: Weak) -> None:
    # T1 "trusted certificates": the chain verifies against the platform CA as the only trust
    # anchor, for the IP and for the host name, with strict checking (-verify_return_error).
    for name_check in (("-verify_ip", HOST), ("-verify_hostname", "localhost")):
        result = s_client(
            api.port, "-CAfile", str(api.ca_file), "-verify_return_error", *name_check
        )
        assert result.returncode == 0, result.stdout
        assert "Verify return code: 0 (ok)" in result.stdout
    # Controls: the same check fails for a wrong name and for a trust store without our CA.
    wrong_name = s_client(
        api.port,
        "-CAfile",
        str(api.ca_file),
        "-verify_return_error",
        "-verify_hostname",
        "not-bastionpay.example",
    )
    assert wrong_name.returncode != 0
    assert "hostname mismatch" in wrong_name.stdout
    wrong_ca = s_client(api.port, "-CAfile", str(weak.cert_file), "-verify_return_error")
    assert wrong_ca.returncode != 0
    assert "unable to get local issuer certificate" in wrong_ca.stdout


def test_served_leaf_names_localhost_and_is_issued_by_the_dev_ca(api: Api) -> None:
    result = s_client(api.port, "-showcerts", "-CAfile", str(api.ca_file))
    pems = re.findall(
        r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", result.stdout, re.DOTALL
    )
    assert len(pems) == 1, "the leaf alone is sent; the dev CA is the trust anchor"
    leaf = x509.load_pem_x509_certificate(pems[0].encode())
    ca = x509.load_pem_x509_certificate(api.ca_file.read_bytes())
    leaf.verify_directly_issued_by(ca)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address(HOST) in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.key_size >= 256  # 128-bit strength (ASVS 11.2.3)
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    assert leaf.not_valid_before_utc <= dt.datetime.now(dt.UTC) < leaf.not_valid_after_utc


# --------------------------------------------------------------------------- openssl s_client


@pytest.mark.parametrize(
    "args",
    [
        ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"),
        ("-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"),
        ("-tls1_2", "-cipher", "AES128-SHA"),
    ],
    ids=["tls1_1", "tls1", "tls1_2-AES128-SHA"],
)
def test_openssl_s_client_handshake_is_refused(api: Api, weak: Weak, args: tuple[str, ...]) -> None:
    # T1 / PCI DSS 4.2.1, checked by a second, independent client. The legacy runs lower the
    # client's security level so that the client itself is willing; the control proves it.
    refused = s_client(api.port, *args)
    assert refused.returncode != 0, refused.stdout
    assert handshake(refused) is None, refused.stdout
    control = s_client(weak.port, *args)
    assert handshake(control) is not None, control.stdout


# --------------------------------------------------------------------------- positive controls


def test_control_scanner_sees_the_weak_server_as_weak(weak_scan: Scan) -> None:
    """Proves the scanner can detect what the api tests assert is absent: TLS 1.0/1.1, CBC,
    static-RSA key exchange (ROBOT's precondition), SHA-1 MACs, anonymous and NULL suites."""
    for protocol in ("TLSv1", "TLSv1.1"):
        assert weak_scan[protocol].accepted, protocol
    tls12 = weak_scan["TLSv1.2"].accepted
    assert any(s.enc.startswith("AES(") for s in tls12)  # CBC
    assert any(s.is_rsa_key_exchange for s in tls12)
    assert any(s.mac == "SHA1" for s in tls12)
    assert any(s.au == "None" for s in tls12)  # anonymous
    assert any(s.enc == "None" for s in tls12)  # NULL encryption
    assert any(not s.is_aead for s in tls12)
    assert weak_scan["TLSv1.3"].accepted


def test_control_raw_tls10_hello_is_answered_by_a_weak_server(weak: Weak) -> None:
    # The hand-built hello the api ignores is a good hello: a TLS 1.0 server answers it.
    hello = raw_hello(weak.port, TLS10, legacy_codes()).server_hello
    assert hello is not None
    assert hello.version == TLS10


def test_control_renegotiation_probe_detects_renegotiation(weak: Weak) -> None:
    seen = renegotiate(weak.port)
    assert "RENEGOTIATING" in seen, seen
    after = seen[seen.index("RENEGOTIATING") :]
    assert any("ServerHello" in line for line in after), after
    assert not any("no_renegotiation" in line for line in after), after
