"""The process-wide objects a running api needs, built once from settings.

Tests build one with a FrozenClock or a different connector; nothing reaches for globals.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastionpay.audit.keys import AuditKeys, load_audit_keys
from bastionpay.config import Settings
from bastionpay.crypto.keyed_hash import KeyedHasher
from bastionpay.crypto.keyfiles import load_or_create_key
from bastionpay.db.engine import Database, get_database
from bastionpay.edge.ratelimit import RateLimits
from bastionpay.kernel.clock import Clock, SystemClock
from bastionpay.kernel.secrets import Secret
from bastionpay.payments.context import PaymentContext, Pricing
from bastionpay.payments.interfaces import ProcessorConnector
from bastionpay.payments.sandbox import SandboxConnector
from bastionpay.risk.service import RiskEngine


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    clock: Clock
    api_keys: KeyedHasher
    fingerprints: KeyedHasher
    connector: ProcessorConnector
    audit_keys: AuditKeys
    metrics_token: Secret
    rate_limits: RateLimits
    # Fraud scoring and rules in the payment path (issue 7); None only in tests that opt out.
    risk: RiskEngine | None = None

    @property
    def pricing(self) -> Pricing:
        return Pricing(
            basis_points=self.settings.fee_basis_points,
            fixed=self.settings.fee_fixed,
            availability_delay_seconds=self.settings.availability_delay_seconds,
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
        connector=connector or SandboxConnector(),
        audit_keys=load_audit_keys(keys),
        metrics_token=Secret(load_or_create_key(keys / "metrics-token.key").hex()),
        rate_limits=RateLimits(
            settings.redis_url, redis_retry_seconds=settings.rate_limit_redis_retry_seconds
        ),
    )
