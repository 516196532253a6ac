"""crypto: keyed hashes, key files and the dev PKI."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from bastionpay.crypto.devpki import ensure_dev_pki
from bastionpay.crypto.keyed_hash import KeyedHasher
from bastionpay.crypto.keyfiles import KEY_BYTES, load_or_create_key


def test_keyed_hash_is_hmac_sha256_with_domain_separation() -> None:
    key = bytes(range(32))
    hasher = KeyedHasher(key, purpose="api-key")
    derived = hmac.new(key, b"bastionpay/api-key", hashlib.sha256).digest()
    expected = hmac.new(derived, b"sk_test_x", hashlib.sha256).hexdigest()
    assert hasher.hexdigest("sk_test_x") == expected
    assert hasher.hexdigest("sk_test_x") != KeyedHasher(key, purpose="other").hexdigest("sk_test_x")
    assert hasher.matches("sk_test_x", expected)
    assert not hasher.matches("sk_test_y", expected)


def test_keyed_hash_refuses_short_keys() -> None:
    with pytest.raises(ValueError, match="256 bits"):
        KeyedHasher(b"short", purpose="x")


def test_key_files_are_owner_only_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "k.key"
    first = load_or_create_key(path)
    assert len(first) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == first
    path.write_bytes(b"truncated")
    with pytest.raises(ValueError, match="corrupt"):
        load_or_create_key(path)


def test_dev_pki_issues_a_server_certificate_for_loopback(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "tls")
    again = ensure_dev_pki(tmp_path / "tls")
    assert again.cert_file.read_bytes() == pki.cert_file.read_bytes()  # idempotent
    cert = x509.load_pem_x509_certificate(pki.cert_file.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert any(str(ip) == "127.0.0.1" for ip in sans.get_values_for_type(x509.IPAddress))
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert stat.S_IMODE(pki.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls" / "ca.key").stat().st_mode) == 0o600
