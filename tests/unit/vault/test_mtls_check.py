"""vault.mtls: which verified certificates may call the internal API, and the TLS context (T2)."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bastionpay.crypto.devpki import ensure_dev_pki, issue_leaf
from bastionpay.vault.mtls import ClientCheck, ClientRejected, internal_server_context
from bastionpay.vault.pki import ensure_dev_vault_pki, vault_tls
from bastionpay.vault.settings import VaultSettings


def _ca(tmp: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ensure_dev_pki(tmp)
    cert = x509.load_pem_x509_certificate((tmp / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((tmp / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def _reason(check: ClientCheck, der: bytes | None) -> str:
    with pytest.raises(ClientRejected) as refused:
        check.check(der)
    return refused.value.reason


def test_the_api_client_certificate_is_accepted(tmp_path: Path) -> None:
    ca_cert, ca_key = _ca(tmp_path)
    pem, _ = issue_leaf(ca_cert, ca_key, common_name="bastionpay-api", server=False)
    assert ClientCheck(["bastionpay-api"]).check(_der(pem)) == "bastionpay-api"


def test_server_certificates_and_other_names_are_refused(tmp_path: Path) -> None:
    ca_cert, ca_key = _ca(tmp_path)
    check = ClientCheck(["bastionpay-api"])
    server_pem, _ = issue_leaf(ca_cert, ca_key, common_name="bastionpay-api", server=True)
    worker_pem, _ = issue_leaf(ca_cert, ca_key, common_name="bastionpay-worker", server=False)
    assert _reason(check, _der(server_pem)) == "not_a_client_certificate"
    assert _reason(check, _der(worker_pem)) == "client_not_allowed"
    assert _reason(check, None) == "no_client_certificate"
    assert _reason(check, b"not a certificate") == "unparsable_certificate"


def test_a_certificate_without_extended_key_usage_is_refused(tmp_path: Path) -> None:
    ca_cert, ca_key = _ca(tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    bare = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bastionpay-api")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    der = bare.public_bytes(serialization.Encoding.DER)
    assert _reason(ClientCheck(["bastionpay-api"]), der) == "not_a_client_certificate"


def test_a_dns_name_can_identify_the_client(tmp_path: Path) -> None:
    ca_cert, ca_key = _ca(tmp_path)
    pem, _ = issue_leaf(
        ca_cert, ca_key, common_name="api-7", server=False, hosts=("api.internal.example",)
    )
    assert ClientCheck(["api.internal.example"]).check(_der(pem)) == "api.internal.example"
    with pytest.raises(ValueError, match="at least one"):
        ClientCheck([" "])


def test_the_internal_context_requires_a_client_certificate_from_the_platform_ca(
    tmp_path: Path,
) -> None:
    tls = ensure_dev_vault_pki(tmp_path)
    context = internal_server_context(tls.internal_cert_file, tls.internal_key_file, tls.ca_file)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_flags & ssl.VERIFY_X509_STRICT
    [anchor] = context.get_ca_certs()  # the platform CA and nothing else
    assert dict(item[0] for item in anchor["subject"])["commonName"] == "BastionPay dev CA"
    assert tls.api_client_cert_file is not None
    client = x509.load_pem_x509_certificate(tls.api_client_cert_file.read_bytes())
    assert ClientCheck(["bastionpay-api"]).check(client.public_bytes(serialization.Encoding.DER))


def test_a_half_configured_pki_is_refused_not_filled_from_a_dev_ca(tmp_path: Path) -> None:
    """Security review L4: no development CA key is created beside a production certificate."""
    dev = ensure_dev_vault_pki(tmp_path / "dev")
    partial = VaultSettings(
        data_dir=tmp_path / "vault",
        internal_cert_file=dev.internal_cert_file,
        internal_key_file=dev.internal_key_file,
        public_cert_file=dev.public_cert_file,
        public_key_file=dev.public_key_file,
    )
    with pytest.raises(ValueError, match="missing client_ca_file"):
        vault_tls(partial)
    assert not (tmp_path / "vault" / "tls").exists()
    complete = VaultSettings(
        data_dir=tmp_path / "vault",
        internal_cert_file=dev.internal_cert_file,
        internal_key_file=dev.internal_key_file,
        public_cert_file=dev.public_cert_file,
        public_key_file=dev.public_key_file,
        client_ca_file=dev.ca_file,
    )
    tls = vault_tls(complete)
    assert tls.ca_file == dev.ca_file and tls.api_client_cert_file is None
    assert not (tmp_path / "vault" / "tls").exists()
