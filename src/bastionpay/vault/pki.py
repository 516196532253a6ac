"""Certificates the vault needs, from the development CA when no real ones are configured (T1, T2).

`bastionpay.crypto.devpki` creates the platform's dev CA (and the api's server certificate) under
`<data_dir>/tls`. The vault adds, with the same CA:

- `vault.pem` / `vault.key` — the vault's server certificate (both listeners in development;
  production gives the public listener a publicly trusted certificate of its own);
- `api-client.pem` / `api-client.key` — the api's *client* certificate (EKU clientAuth, CN
  `bastionpay-api`), which the api presents to the internal listener (mutual TLS, T2).

Production sets `BASTIONPAY_VAULT_INTERNAL_CERT_FILE`, `…_INTERNAL_KEY_FILE`, `…_CLIENT_CA_FILE`,
`…_PUBLIC_CERT_FILE` and `…_PUBLIC_KEY_FILE` to files from the real platform CA instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastionpay.crypto.devpki import ensure_dev_pki, issue_leaf
from bastionpay.crypto.keyfiles import write_private
from bastionpay.vault.settings import DEFAULT_API_CLIENT, VaultSettings

VAULT_SERVER_NAME = "bastionpay-vault"


@dataclass(frozen=True)
class VaultTls:
    """Everything both listeners need, plus the api's client certificate in development."""

    ca_file: Path  # trust anchor for client certificates (internal) and for the vault's own
    internal_cert_file: Path
    internal_key_file: Path
    public_cert_file: Path
    public_key_file: Path
    api_client_cert_file: Path | None  # None when real certificates are configured


def _load_ca(tls_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((tls_dir / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("dev CA key must be an EC key")
    return cert, key


def _ensure_leaf(tls_dir: Path, stem: str, *, common_name: str, server: bool) -> tuple[Path, Path]:
    cert_file, key_file = tls_dir / f"{stem}.pem", tls_dir / f"{stem}.key"
    if not (cert_file.exists() and key_file.exists()):
        ca_cert, ca_key = _load_ca(tls_dir)
        cert_pem, key_pem = issue_leaf(ca_cert, ca_key, common_name=common_name, server=server)
        write_private(key_file, key_pem)
        cert_file.write_bytes(cert_pem)
    return cert_file, key_file


def ensure_dev_vault_pki(tls_dir: Path) -> VaultTls:
    """Create the dev CA, the vault's server certificate and the api's client certificate."""
    pki = ensure_dev_pki(tls_dir)
    cert, key = _ensure_leaf(tls_dir, "vault", common_name=VAULT_SERVER_NAME, server=True)
    client, _ = _ensure_leaf(tls_dir, "api-client", common_name=DEFAULT_API_CLIENT, server=False)
    return VaultTls(
        ca_file=pki.ca_file,
        internal_cert_file=cert,
        internal_key_file=key,
        public_cert_file=cert,
        public_key_file=key,
        api_client_cert_file=client,
    )


def vault_tls(settings: VaultSettings) -> VaultTls:
    """Configured certificate files, or the development PKI when none is configured.

    All five or none: with some configured and others not, filling the gaps from a development CA
    created on the vault host would leave its key there — and with `client_ca_file` the missing
    one, the internal listener would trust a CA whose key sits beside it (security review L4).
    """
    configured = {
        "internal_cert_file": settings.internal_cert_file,
        "internal_key_file": settings.internal_key_file,
        "public_cert_file": settings.public_cert_file,
        "public_key_file": settings.public_key_file,
        "client_ca_file": settings.client_ca_file,
    }
    missing = sorted(name for name, value in configured.items() if not value)
    if missing and len(missing) < len(configured):
        raise ValueError(
            "incomplete TLS settings for the vault: set all of the certificate settings or none "
            f"(none: a development PKI); missing {', '.join(missing)}"
        )
    internal = settings.internal_cert_file and settings.internal_key_file
    public = settings.public_cert_file and settings.public_key_file
    dev = None
    if not (internal and public and settings.client_ca_file):
        dev = ensure_dev_vault_pki(settings.tls_dir)
    internal_cert = settings.internal_cert_file if internal else None
    internal_key = settings.internal_key_file if internal else None
    public_cert = settings.public_cert_file if public else None
    public_key = settings.public_key_file if public else None
    ca_file = settings.client_ca_file
    if dev is not None:
        internal_cert = internal_cert or dev.internal_cert_file
        internal_key = internal_key or dev.internal_key_file
        public_cert = public_cert or dev.public_cert_file
        public_key = public_key or dev.public_key_file
        ca_file = ca_file or dev.ca_file
    if not (internal_cert and internal_key and public_cert and public_key and ca_file):
        raise ValueError("incomplete TLS settings for the vault")  # unreachable: dev fills gaps
    return VaultTls(
        ca_file=ca_file,
        internal_cert_file=internal_cert,
        internal_key_file=internal_key,
        public_cert_file=public_cert,
        public_key_file=public_key,
        api_client_cert_file=dev.api_client_cert_file if dev is not None else None,
    )
