"""What a payments operation needs besides the session: who, when, pricing and the processor."""

from __future__ import annotations

from dataclasses import dataclass, field

from bastionpay.crypto.keyed_hash import KeyedHasher
from bastionpay.db.engine import Database
from bastionpay.payments.interfaces import ProcessorConnector
from bastionpay.payments.journal import ProcessorJournal
from bastionpay.risk.service import RiskEngine


@dataclass(frozen=True)
class Pricing:
    basis_points: int
    fixed: int
    availability_delay_seconds: int
    dispute_fee: int = 1500  # Settings.dispute_fee


@dataclass(frozen=True)
class PaymentContext:
    merchant_id: str
    livemode: bool
    now: int
    connector: ProcessorConnector
    pricing: Pricing
    fingerprints: KeyedHasher
    # Processor operations of this unit of work, undone if it does not commit.
    journal: ProcessorJournal = field(default_factory=ProcessorJournal)
    # Risk (issue 7): the engine, and the merchant's zone and failure policy.
    risk: RiskEngine | None = None
    timezone: str | None = None
    risk_policy: str | None = None
    # The database, for the rare step that needs a unit of work of its own: finishing a
    # 3-D Secure payment during a (read-only) retrieve (`intents.refresh`).
    db: Database | None = None
