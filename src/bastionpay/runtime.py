"""The process-wide objects a running api needs, built once from settings.

Tests build one with a FrozenClock or a different connector; nothing reaches for globals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bastionpay.audit.keys import AuditKeys, load_audit_keys
from bastionpay.config import Settings
from bastionpay.crypto.keyed_hash import KeyedHasher
from bastionpay.crypto.keyfiles import load_or_create_key
from bastionpay.db.engine import Database, get_database
from bastionpay.edge.ratelimit import RateLimits
from bastionpay.identity.keys import IdentityKeys, load_identity_keys
from bastionpay.kernel.clock import Clock, SystemClock
from bastionpay.kernel.secrets import Secret
from bastionpay.payments.context import PaymentContext, Pricing
from bastionpay.payments.interfaces import ProcessorConnector
from bastionpay.payments.sandbox import SandboxConnector
from bastionpay.payments.vault_connector import VaultClient, VaultConnector
from bastionpay.risk.platform import load_scorer
from bastionpay.risk.rule_store import MerchantRules
from bastionpay.risk.service import RiskEngine, Thresholds


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    clock: Clock
    api_keys: KeyedHasher
    fingerprints: KeyedHasher
    # Idempotency keys are client free text and may hold anything, a PAN included (C5).
    idempotency_keys: KeyedHasher
    connector: ProcessorConnector
    audit_keys: AuditKeys
    metrics_token: Secret
    rate_limits: RateLimits
    # Session ids, CSRF, recovery codes, invitations, OAuth tokens, sealed TOTP seeds (issue 5).
    identity_keys: IdentityKeys
    # Fraud scoring and rules in the payment path (issue 7); None only in tests that opt out.
    risk: RiskEngine | None = None

    @property
    def pricing(self) -> Pricing:
        return Pricing(
            basis_points=self.settings.fee_basis_points,
            fixed=self.settings.fee_fixed,
            availability_delay_seconds=self.settings.availability_delay_seconds,
            dispute_fee=self.settings.dispute_fee,
        )

    def payment_context(
        self,
        merchant_id: str,
        livemode: bool,
        now: int,
        *,
        timezone: str | None = None,
        risk_policy: str | None = None,
    ) -> PaymentContext:
        return PaymentContext(
            merchant_id=merchant_id,
            livemode=livemode,
            now=now,
            connector=self.connector,
            pricing=self.pricing,
            fingerprints=self.fingerprints,
            risk=self.risk,
            timezone=timezone,
            risk_policy=risk_policy,
            db=self.db,
        )


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    connector: ProcessorConnector | None = None,
    db: Database | None = None,
) -> Runtime:
    keys = settings.keys_dir
    return Runtime(
        settings=settings,
        db=db or get_database(settings.resolved_database_url()),
        clock=clock or SystemClock(),
        api_keys=KeyedHasher(load_or_create_key(keys / "api-key-hmac.key"), purpose="api-key"),
        fingerprints=KeyedHasher(
            load_or_create_key(keys / "fingerprint-hmac.key"), purpose="card-fingerprint"
        ),
        # The API-key master key, domain-separated by purpose (KeyedHasher).
        idempotency_keys=KeyedHasher(
            load_or_create_key(keys / "api-key-hmac.key"), purpose="idempotency-key"
        ),
        connector=connector or default_connector(settings),
        audit_keys=load_audit_keys(keys),
        metrics_token=Secret(load_or_create_key(keys / "metrics-token.key").hex()),
        rate_limits=RateLimits(
            settings.redis_url, redis_retry_seconds=settings.rate_limit_redis_retry_seconds
        ),
        identity_keys=load_identity_keys(keys),
        risk=risk_engine(settings) if settings.risk_enabled else None,
    )


def risk_engine(settings: Settings, models_dir: Path | None = None) -> RiskEngine:
    """The payment path's risk step: the active model, each merchant's rules, the policy."""
    return RiskEngine(
        load_scorer(models_dir or settings.risk_models_dir),
        MerchantRules(),
        thresholds=Thresholds(settings.risk_elevated_threshold, settings.risk_highest_threshold),
        budget_ms=settings.risk_time_budget_ms,
        default_policy=settings.risk_failure_policy,
    )


def default_connector(settings: Settings) -> ProcessorConnector:
    """The card vault when `vault_url` is set (api → vault over mTLS → acquirer), else the sandbox.

    Unset certificate paths default to the development PKI under the data dir (`tls/ca.pem`,
    `tls/api-client.pem`/`.key`, created by the vault's first run).
    """
    if not settings.vault_url:
        return SandboxConnector()
    tls = settings.tls_dir
    return VaultConnector(
        VaultClient(
            settings.vault_url,
            ca_file=settings.vault_ca_file or tls / "ca.pem",
            cert_file=settings.vault_client_cert_file or tls / "api-client.pem",
            key_file=settings.vault_client_key_file or tls / "api-client.key",
            connect_timeout=settings.vault_connect_timeout_seconds,
            timeout=settings.vault_timeout_seconds,
        )
    )
