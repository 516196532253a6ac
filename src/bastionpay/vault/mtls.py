"""Mutual TLS on the internal listener: only the api's client certificate gets in (T2, T1).

Three checks, in order:

1. **The handshake** (`internal_server_context`): `CERT_REQUIRED` with the platform CA as the only
   trust anchor (no system store), strict X.509 verification, TLS 1.2/1.3 with AEAD suites
   (`edge.tls.harden`). No certificate, an expired one, or one from any other CA fails the
   handshake itself: the connection never reaches HTTP.
2. **The identity** (`ClientCheck`): a certificate the CA did issue must also be a client
   certificate (EKU clientAuth) naming an allowed client (CN or DNS SAN, exactly; default
   `bastionpay-api`) — the CA also issues server certificates, and those must not get in.
3. **The app** (`internal.py`) refuses any request whose connection carries no checked identity,
   so a listener started without this protocol fails closed.

Auditing refusals (L1, PCI DSS 10.2.1.4): asyncio performs the TLS handshake inside its transport
and reports a failure only as a debug log line, before any protocol sees the connection. So the
internal listener does not give uvicorn a TLS context at all: `MutualTlsProtocol` accepts the TCP
connection, pauses it and upgrades it with `loop.start_tls()` (public asyncio API), which raises
the handshake error *to us*; we audit it (reason, peer address) and drop the connection, and only a
checked connection is handed to uvicorn's HTTP protocol. Events go through the bounded
`AuditQueue`, so a handshake flood cannot grow memory or the log without bound.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any, ClassVar, Final

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastionpay.edge.protocol import DeadlineH11Protocol
from bastionpay.edge.tls import harden
from bastionpay.observability.logging import get_logger
from bastionpay.vault.auditlog import AuditQueue, Origin, VaultEvent

log = get_logger("bastionpay.vault.mtls")

SCOPE_KEY: Final = "bastionpay.vault.client"  # ASGI scope extension: the checked client name
MAX_EARLY_BYTES: Final = 64 * 1024


class ClientRejected(Exception):
    def __init__(self, reason: str, subject: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.subject = subject


def internal_server_context(
    cert_file: Path, key_file: Path, client_ca_file: Path
) -> ssl.SSLContext:
    """The internal listener's TLS: mutual, anchored on the platform CA only (T2)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_file), str(key_file))
    context.verify_mode = ssl.CERT_REQUIRED
    # The only trust anchor is the platform CA: never `load_default_certs()`, or any public CA's
    # customer could present a certificate for a name we allow.
    context.load_verify_locations(cafile=str(client_ca_file))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return harden(context)


def client_names(certificate: x509.Certificate) -> tuple[str, ...]:
    names = [
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return tuple(names)
    return (*names, *sans.value.get_values_for_type(x509.DNSName))


class ClientCheck:
    """Which verified certificates may call the internal API (T2)."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self._allowed = frozenset(name.strip() for name in allowed if name.strip())
        if not self._allowed:
            raise ValueError("at least one allowed client name is required")

    def check(self, der: bytes | None) -> str:
        """The allowed name the certificate carries; raises `ClientRejected` otherwise."""
        if not der:
            raise ClientRejected("no_client_certificate")
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            raise ClientRejected("unparsable_certificate") from None
        names = client_names(certificate)
        subject = names[0] if names else None
        try:
            usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            raise ClientRejected("not_a_client_certificate", subject) from None
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
            raise ClientRejected("not_a_client_certificate", subject)
        for name in names:
            if name in self._allowed:
                return name
        raise ClientRejected("client_not_allowed", subject)


def _peer_ip(peer: Any) -> str | None:
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


class MutualTlsProtocol(DeadlineH11Protocol):
    """uvicorn's HTTP/1.1 protocol behind our own TLS upgrade; see the module docstring."""

    ssl_context: ClassVar[ssl.SSLContext]
    client_check: ClassVar[ClientCheck]
    audit_queue: ClassVar[AuditQueue]
    handshake_timeout_seconds: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tls_ready = False
        self._client_name: str | None = None
        self._handshake: asyncio.Task[None] | None = None
        # Decrypted bytes that arrive with the end of the handshake (TLS 1.3 clients send their
        # request right behind their Finished message), before the identity check has run.
        self._early: list[bytes] = []
        self._early_size = 0
        self._early_eof = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Nothing may be read in clear: stop reading before the first byte arrives, then let
        # start_tls take the transport over.
        transport.pause_reading()
        self._handshake = self.loop.create_task(self._upgrade(transport))

    async def _upgrade(self, raw: asyncio.Transport) -> None:
        peer = _peer_ip(raw.get_extra_info("peername"))
        try:
            upgraded = await self.loop.start_tls(
                raw,
                self,
                self.ssl_context,
                server_side=True,
                ssl_handshake_timeout=self.handshake_timeout_seconds,
            )
        except ssl.SSLError as exc:
            self._refused(peer, "handshake_failed", detail=exc.reason or type(exc).__name__)
            return
        except (OSError, TimeoutError) as exc:
            # The peer went away or stalled mid-handshake: no credential was offered or refused.
            log.info("vault_mtls_handshake_abandoned", peer=peer, error=type(exc).__name__)
            raw.close()
            return
        if upgraded is None:  # the transport closed while upgrading
            return
        ssl_object = upgraded.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        try:
            self._client_name = self.client_check.check(der)
        except ClientRejected as refusal:
            self._refused(peer, refusal.reason, subject=refusal.subject)
            upgraded.abort()
            return
        self._tls_ready = True
        super().connection_made(upgraded)
        early, self._early = self._early, []
        for chunk in early:
            super().data_received(chunk)
        if self._early_eof:
            super().eof_received()

    def data_received(self, data: bytes) -> None:
        if self._tls_ready:
            super().data_received(data)
            return
        # Held until the client certificate is checked; bounded like a request head.
        self._early_size += len(data)
        if self._early_size > MAX_EARLY_BYTES:
            self._early.clear()
            return
        self._early.append(data)

    def eof_received(self) -> None:
        if self._tls_ready:
            super().eof_received()
        else:
            self._early_eof = True

    def _refused(
        self,
        peer: str | None,
        reason: str,
        *,
        detail: str | None = None,
        subject: str | None = None,
    ) -> None:
        details: dict[str, Any] = {"reason": reason, "listener": "internal"}
        if detail:
            details["tls_error"] = str(detail)[:120]
        if subject:
            details["subject"] = subject[:120]
        log.warning("vault_mtls_refused", peer=peer, reason=reason, tls_error=detail)
        self.audit_queue.put(
            VaultEvent(
                actor_type="anonymous",
                actor_id=(subject or "unknown")[:64],
                action="vault.mtls.reject",
                outcome="denied",
                target_type="listener",
                target_id="internal",
                origin=Origin(ip=peer),
                details=details,
            )
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._tls_ready:
            return  # the handshake failed: uvicorn never saw this connection
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        if cycle is not None:
            # The request task is scheduled but has not run: it will see the checked identity.
            extensions: dict[str, Any] = cycle.scope.setdefault("extensions", {})
            extensions[SCOPE_KEY] = self._client_name


def mutual_tls_protocol(
    context: ssl.SSLContext,
    check: ClientCheck,
    audit_queue: AuditQueue,
    *,
    handshake_timeout: float,
    header_timeout: float,
) -> type[MutualTlsProtocol]:
    """A protocol class bound to one listener (uvicorn instantiates the class itself)."""
    return type(
        "BoundMutualTlsProtocol",
        (MutualTlsProtocol,),
        {
            "ssl_context": context,
            "client_check": check,
            "audit_queue": audit_queue,
            "handshake_timeout_seconds": handshake_timeout,
            "header_timeout_seconds": header_timeout,
        },
    )


def client_of(scope: MutableMapping[str, Any]) -> str | None:
    """The client name the mTLS protocol checked for this request's connection, or None."""
    extensions = scope.get("extensions") or {}
    name = extensions.get(SCOPE_KEY)
    return name if isinstance(name, str) else None
