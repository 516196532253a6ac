"""Settings, read once from the environment (prefix BASTIONPAY_) and immutable afterwards.

Dev defaults live under the data dir (default `./var`): the SQLite database, the dev CA and server
certificate, and the keys. Production sets `BASTIONPAY_DATABASE_URL`, `BASTIONPAY_TLS_CERT_FILE` and
`BASTIONPAY_TLS_KEY_FILE` to real values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from limits import parse as parse_limit
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bastionpay.edge.networks import parse_networks

CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BASTIONPAY_", frozen=True, extra="ignore")

    data_dir: Path = Path("var")
    database_url: str | None = None
    host: str = "127.0.0.1"
    api_port: int = Field(default=8443, ge=0, le=65535)

    # TLS (SECURITY-REQUIREMENTS T1). Unset: the dev CA under the data dir issues a certificate.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None

    # Pricing: 2.9 % + 30 minor units by default (issue 2, item 8).
    fee_basis_points: int = Field(default=290, ge=0, le=10_000)
    fee_fixed: int = Field(default=30, ge=0)
    # Funds become `available` this many seconds after capture (Stripe's rolling payout delay).
    availability_delay_seconds: int = Field(default=2 * 24 * 3600, ge=0)
    # Charged to the merchant when a chargeback opens, returned if it is won (Stripe: $15.00),
    # in minor units of the disputed charge's currency (docs/disputes.md).
    dispute_fee: int = Field(default=1500, ge=0)

    # Idempotency (P1): results replayed for at least 24 h; a lock older than this is abandoned.
    idempotency_retention_seconds: int = Field(default=24 * 3600, ge=24 * 3600)
    idempotency_lock_timeout_seconds: int = Field(default=60, ge=5)

    # Request limits (T4 / OWASP API4): bounded body, parameter count and nesting.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    max_parameters: int = Field(default=500, ge=10)
    max_nesting_depth: int = Field(default=5, ge=2)

    # Requests executing the /v1 pipeline at once (threads). More threads than this only contend
    # for the GIL and, on SQLite, for the single writer; the rest wait their turn in order.
    api_concurrency: int = Field(default=2, ge=1, le=64)

    worker_interval_seconds: float = Field(default=30.0, gt=0)
    # The audit log: staged events are sealed into the chain every second; a signed checkpoint is
    # written at most this often when something new was sealed (and on demand).
    audit_seal_interval_seconds: float = Field(default=1.0, gt=0)
    audit_checkpoint_interval_seconds: int = Field(default=300, ge=1)
    # Entries older than this move to verifiable segment files (`bastionpay audit archive`);
    # PCI DSS 10.5.1: 3 months immediately available, 12 months kept (archives included).
    audit_online_days: int = Field(default=92, ge=1)
    # Ledger checkpoints only fold entries older than this, far behind any open transaction.
    ledger_checkpoint_horizon_seconds: int = Field(default=300, ge=0)

    # --- The edge (issue 6; docs/security/edge.md lists every default and why) ---
    # Host header allow-list ("*" turns it off, e.g. behind a proxy that already enforces it).
    allowed_hosts: CsvList = ["localhost", "127.0.0.1", "::1"]
    # Peers whose X-Forwarded-For is believed (the WAF/proxy in front); none by default.
    trusted_proxies: CsvList = []
    # Who may reach operator endpoints (/metrics now, the console later); loopback by default.
    operator_allowed_cidrs: CsvList = ["127.0.0.0/8", "::1/128"]
    # Rate limits (T4), `limits` notation. Stripe's documented defaults: live 100 and test 25
    # operations per second, reads and writes counted separately; merchants can be given their own.
    redis_url: str | None = None
    rate_limit_live_read: str = "100/second"
    rate_limit_live_write: str = "100/second"
    rate_limit_test_read: str = "25/second"
    rate_limit_test_write: str = "25/second"
    rate_limit_unauthenticated_ip: str = "20/second"
    rate_limit_auth_failures_ip: str = "30/minute"
    rate_limit_redis_retry_seconds: float = Field(default=5.0, gt=0)
    # Load shedding: requests admitted at once per api process (queued + running).
    max_in_flight: int = Field(default=64, ge=4, le=100_000)
    # HTTP hygiene: header count and bytes, and how long a client may take to send its request.
    max_headers: int = Field(default=64, ge=8)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=60 * 1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    keepalive_timeout_seconds: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=1024, ge=16)

    # --- The card vault (issue 4; docs/vault.md) ---
    # The vault's internal (mutual TLS) URL, e.g. https://127.0.0.1:8444. Unset: payments go to the
    # in-process sandbox connector (the api's own unit and functional tests); `bastionpay up` sets
    # it for the api it starts. The api presents `vault_client_cert_file`/`_key_file` and trusts
    # only `vault_ca_file` (the platform CA) on that connection (T2). Unset paths: the dev PKI.
    vault_url: str | None = None
    vault_ca_file: Path | None = None
    vault_client_cert_file: Path | None = None
    vault_client_key_file: Path | None = None
    vault_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Above the vault's own worst case for an authorization (acquirer timeout + reversals).
    vault_timeout_seconds: float = Field(default=30.0, gt=0, le=120)

    # --- Identity (issue 5; docs/identity.md) ---
    # The public origin operators' browsers use: WebAuthn's relying party, OAuth's issuer, links.
    public_url: str = "https://localhost:8443"
    webauthn_rp_id: str = "localhost"
    webauthn_rp_name: str = "BastionPay"
    # argon2id, RFC 9106 section 4's second recommended option (t=3, p=4, m=64 MiB); I1 asks for
    # at least 46 MiB, so less is refused. Raising them upgrades each hash at its next login.
    argon2_time_cost: int = Field(default=3, ge=1, le=20)
    argon2_memory_kib: int = Field(default=64 * 1024, ge=46 * 1024, le=4 * 1024 * 1024)
    argon2_parallelism: int = Field(default=4, ge=1, le=16)
    password_min_length: int = Field(default=12, ge=12, le=128)
    # Lockout (I2): the 10th consecutive failure locks the account for 30 minutes.
    lockout_threshold: int = Field(default=10, ge=3, le=100)
    lockout_seconds: int = Field(default=30 * 60, ge=60)
    # Layered login limits, checked before any hash is computed (I2).
    rate_limit_login_account: str = "20/hour"
    rate_limit_login_ip: str = "30/minute"
    rate_limit_login_global: str = "50/second"
    # OAuth token/introspect/revoke per client address (I6, T4).
    rate_limit_oauth_ip: str = "120/minute"
    # Sessions (I4): 15 minutes idle, 12 hours absolute.
    session_idle_seconds: int = Field(default=15 * 60, ge=60, le=15 * 60)
    session_absolute_seconds: int = Field(default=12 * 3600, ge=15 * 60, le=24 * 3600)
    # Step-up (I3): a second factor proven at most this long ago for sensitive actions; refunds
    # above this amount (minor units, any currency) are sensitive.
    step_up_max_age_seconds: int = Field(default=300, ge=30, le=300)
    step_up_refund_amount: int = Field(default=100_000, ge=0)
    # I7: accounts unused this long are disabled by the worker.
    inactive_account_days: int = Field(default=90, ge=1, le=90)
    invitation_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=3600, le=30 * 24 * 3600)
    # OAuth 2.0 (I6): short-lived JWT access tokens, rotating refresh tokens.
    oauth_access_token_seconds: int = Field(default=900, ge=60, le=3600)
    oauth_refresh_token_seconds: int = Field(default=30 * 24 * 3600, ge=3600)
    oauth_code_seconds: int = Field(default=60, ge=10, le=600)
    oauth_signing_key_rotation_days: int = Field(default=30, ge=1, le=365)

    @field_validator("allowed_hosts", "trusted_proxies", "operator_allowed_cidrs", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        # Environment variables hold lists as "a,b,c".
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", "operator_allowed_cidrs")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value

    @field_validator(
        "rate_limit_live_read",
        "rate_limit_live_write",
        "rate_limit_test_read",
        "rate_limit_test_write",
        "rate_limit_unauthenticated_ip",
        "rate_limit_auth_failures_ip",
        "rate_limit_login_account",
        "rate_limit_login_ip",
        "rate_limit_login_global",
        "rate_limit_oauth_ip",
    )
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        parse_limit(value)
        return value

    # --- Risk (issue 7; docs/risk.md) ---
    # Score and screen every confirmation (the api's own tests switch it off to stay fast).
    risk_enabled: bool = True
    # When scoring fails or overruns its budget: "closed" (P3: not processed) or "open".
    risk_failure_policy: Literal["open", "closed"] = "closed"
    # A safety bound, not a target: features take ~2-5 ms and a score ~1 ms on an idle machine.
    risk_time_budget_ms: int = Field(default=250, ge=5, le=5_000)
    risk_elevated_threshold: int = Field(default=65, ge=1, le=100)
    risk_highest_threshold: int = Field(default=75, ge=1, le=100)

    def api_rate_limit(self, livemode: bool, writes: bool) -> str:
        if livemode:
            return self.rate_limit_live_write if writes else self.rate_limit_live_read
        return self.rate_limit_test_write if writes else self.rate_limit_test_read

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir() / 'api.db'}"

    @property
    def keys_dir(self) -> Path:
        return self.resolved_data_dir() / "keys"

    @property
    def risk_models_dir(self) -> Path:
        return self.resolved_data_dir() / "risk" / "models"

    @property
    def tls_dir(self) -> Path:
        return self.resolved_data_dir() / "tls"


def load_settings(**overrides: object) -> Settings:
    """Environment first, explicit overrides (CLI flags) on top."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
