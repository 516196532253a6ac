"""The vault's settings, read once from the environment (prefix `BASTIONPAY_VAULT_`), immutable.

The vault is its own process in its own trust zone (the CDE), so it does not read the api's
`bastionpay.config` (an import-linter contract): everything it needs is here, with safe defaults
for a local data dir and explicit settings for production.

Files under the data dir by default (`--data-dir`, `BASTIONPAY_VAULT_DATA_DIR` or
`BASTIONPAY_DATA_DIR`):

    <data_dir>/vault.db                    the vault database (SQLite; PostgreSQL via DATABASE_URL)
    <data_dir>/vault/keys/kek.json         the file KEK (0600; `kek_backend=pkcs11` for an HSM, C4)
    <data_dir>/vault/keys/*.key|*.pem      fingerprint and publishable-key HMAC keys, audit keys
    <data_dir>/tls/ca.pem                  the platform (dev) CA: the only trust anchor for clients
    <data_dir>/tls/vault.pem|key           the vault's server certificate (both listeners in dev)
    <data_dir>/tls/api-client.pem|key      the api's client certificate for mTLS (T2)
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bastionpay.edge.networks import parse_networks
from bastionpay.edge.ratelimit import check_limit

CsvList = Annotated[list[str], NoDecode]
DEFAULT_API_CLIENT = "bastionpay-api"  # the CN of the api's client certificate (dev PKI)
MAX_CVC_TTL_SECONDS = 600  # C1 / PCI DSS 3.3.2: the CVC lives at most 10 minutes before auth


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


def _valid_host(host: str) -> bool:
    """A DNS name in ASCII (IDNA-encoded), or an IP address."""
    if _HOSTNAME.fullmatch(host):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def normalise_origin(value: str) -> str:
    """`https://Shop.example:443/` → `https://shop.example`; ValueError for anything not an origin.

    An origin is scheme, host and port only (RFC 6454). Paths, queries, credentials, wildcards
    and `null` are refused: every origin allowed to frame the hosted fields or to call the
    tokenization endpoint is named exactly (T3).
    """
    text = value.strip()
    parts = urlsplit(text)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "*" in text
    ):
        raise ValueError(f"not an origin: {text[:80]!r}")
    host = parts.hostname.lower()
    if not _valid_host(host):
        # Origins go into CSP headers (frame-ancestors, form-action): `;` or a space in a "host"
        # would add directives (security review L1).
        raise ValueError(f"not an origin: {text[:80]!r}")
    if ":" in host:
        host = f"[{host}]"
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port
    suffix = f":{port}" if port is not None and port != default_port else ""
    return f"{parts.scheme}://{host}{suffix}"


class VaultSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BASTIONPAY_VAULT_", frozen=True, extra="ignore")

    data_dir: Path = Path("var")
    database_url: str | None = None
    host: str = "127.0.0.1"
    # In production the listeners face different networks: the api's segment and the WAF's.
    internal_host: str | None = None  # default: `host`
    public_host: str | None = None  # default: `host`
    internal_port: int = Field(default=8444, ge=0, le=65535)
    public_port: int = Field(default=8445, ge=0, le=65535)

    # --- TLS (T1) and mutual TLS on the internal listener (T2) ---
    # Unset: the dev CA under <data_dir>/tls issues the vault's certificate and the api's.
    internal_cert_file: Path | None = None
    internal_key_file: Path | None = None
    # The only trust anchor for client certificates: the platform CA, never the system store.
    client_ca_file: Path | None = None
    # Client certificates accepted on the internal listener: CN or DNS SAN, exactly.
    allowed_clients: CsvList = [DEFAULT_API_CLIENT]
    # The public listener faces browsers: production uses a publicly trusted certificate here.
    public_cert_file: Path | None = None
    public_key_file: Path | None = None
    handshake_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    # --- Keys (C3, C4) ---
    kek_backend: Literal["file", "pkcs11"] = "file"
    kek_file: Path | None = None  # default <data_dir>/vault/keys/kek.json
    # A superseded key version is destroyed/retired only this long after its successor appeared.
    key_grace_seconds: int = Field(default=300, ge=0)

    # --- The acquirer (ISO 8583 over TCP) ---
    acquirer_host: str = "127.0.0.1"
    acquirer_port: int = Field(default=8583, ge=1, le=65535)
    acquirer_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    acquirer_reversal_attempts: int = Field(default=3, ge=1, le=20)
    card_acceptor_id: str = "BASTIONPAY"
    terminal_id: str = "BPVAULT1"

    # --- Card data ---
    # C1 / PCI DSS 3.3.2: an unused CVC is purged after this long (at most 10 minutes).
    cvc_ttl_seconds: int = Field(default=MAX_CVC_TTL_SECONDS, ge=1, le=MAX_CVC_TTL_SECONDS)

    # --- 3-D Secure (issue 4, item 7) ---
    # A challenge link lives this long and works once (the cardholder is at the checkout now).
    three_ds_challenge_ttl_seconds: int = Field(default=600, ge=30, le=1800)
    # The public listener's address as browsers reach it (behind the WAF in production), used in
    # challenge URLs; unset: https://<public host>:<bound public port>.
    public_url: str | None = None

    # --- The public listener (hosted fields) ---
    # Origins allowed to embed the hosted-fields page, for every merchant (frame-ancestors).
    # Each publishable key adds the origins the api registers with it.
    frame_ancestors: CsvList = []
    # Origins allowed to call the tokenization endpoint cross-origin, for every merchant (CORS).
    cors_origins: CsvList = []
    allowed_hosts: CsvList = ["localhost", "127.0.0.1", "::1"]
    trusted_proxies: CsvList = []
    redis_url: str | None = None
    # Card-testing attacks run many tokenizations from few addresses and keys (T4).
    rate_limit_tokenize_ip: str = "30/minute"
    rate_limit_tokenize_key: str = "600/minute"
    rate_limit_page_ip: str = "300/minute"
    max_public_body_bytes: int = Field(default=8 * 1024, ge=1024, le=64 * 1024)
    max_internal_body_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    max_headers: int = Field(default=64, ge=8)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=60 * 1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=1024, ge=16)

    # --- Background work in the vault process ---
    audit_seal_interval_seconds: float = Field(default=1.0, gt=0)
    audit_checkpoint_interval_seconds: int = Field(default=300, ge=1)
    # Bounds how long a deleted CVC's ciphertext may linger in the SQLite WAL (C1; payments.
    # purge_expired_cvcs truncates it every run) and how far past its 10 minutes a CVC may live.
    purge_interval_seconds: float = Field(default=30.0, gt=0, le=60)

    @field_validator(
        "allowed_clients",
        "frame_ancestors",
        "cors_origins",
        "allowed_hosts",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("frame_ancestors", "cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [normalise_origin(origin) for origin in value]

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("public_url must be an https:// URL without query or fragment")
        return value.strip().rstrip("/")

    @field_validator("allowed_clients")
    @classmethod
    def _clients(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one client identity is required on the internal listener")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value

    @field_validator("rate_limit_tokenize_ip", "rate_limit_tokenize_key", "rate_limit_page_ip")
    @classmethod
    def _limit(cls, value: str) -> str:
        return check_limit(value)

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir() / 'vault.db'}"

    @property
    def keys_dir(self) -> Path:
        return self.resolved_data_dir() / "vault" / "keys"

    @property
    def tls_dir(self) -> Path:
        return self.resolved_data_dir() / "tls"

    @property
    def resolved_kek_file(self) -> Path:
        return self.kek_file if self.kek_file is not None else self.keys_dir / "kek.json"


def load_vault_settings(**overrides: object) -> VaultSettings:
    """Environment first, explicit overrides (CLI flags) on top."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    return VaultSettings(**clean)  # type: ignore[arg-type]
