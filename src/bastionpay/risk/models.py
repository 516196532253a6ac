"""Risk assessments, reviews and labels (issue 7).

One `RiskAssessment` per confirmation attempt records the decision and its inputs (item 5: "the
decision and its inputs are recorded"); its key columns are also the velocity counters' source, so
the counters live in the database, indexed by (merchant, mode, key, time), and cost no memory.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastionpay.db.base import Base, MerchantOwned, PkType


class RiskAssessment(MerchantOwned, Base):
    __tablename__ = "risk_assessments"

    payment_intent_id: Mapped[str] = mapped_column(String(64), index=True)
    charge_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The velocity keys (never a card number: the fingerprint is a keyed hash, C3).
    card_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    customer_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    email: Mapped[str | None] = mapped_column(String(512), nullable=True)
    ip_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    amount_usd_cents: Mapped[int] = mapped_column(BigInteger)
    # authorized | declined | blocked | review | pending (set when the outcome is known)
    outcome: Mapped[str] = mapped_column(String(16))
    score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    level: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    rule: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reasons: Mapped[list[str]] = mapped_column(JSON)
    features: Mapped[dict[str, Any]] = mapped_column(JSON)
    shadow: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        Index("ix_risk_assessments_card", "merchant_id", "livemode", "card_fingerprint", "created"),
        Index("ix_risk_assessments_customer", "merchant_id", "livemode", "customer_id", "created"),
        Index("ix_risk_assessments_email", "merchant_id", "livemode", "email", "created"),
        Index("ix_risk_assessments_ip", "merchant_id", "livemode", "ip_address", "created"),
        Index("ix_risk_assessments_device", "merchant_id", "livemode", "device_id", "created"),
        Index("ix_risk_assessments_time", "merchant_id", "livemode", "created"),
    )


class Review(MerchantOwned, Base):
    """Stripe's Review object: a payment held until someone decides (item 6)."""

    __tablename__ = "reviews"

    payment_intent_id: Mapped[str] = mapped_column(String(64), index=True)
    charge_id: Mapped[str] = mapped_column(String(64))
    open: Mapped[bool] = mapped_column(Boolean)
    opened_reason: Mapped[str] = mapped_column(String(32))  # rule | manual
    reason: Mapped[str] = mapped_column(String(32))  # the rule while open, then the closing one
    closed_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    closed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rule: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class RiskLabel(Base):
    """Ground truth for retraining: reviewers' decisions, fraudulent refunds and cancellations."""

    __tablename__ = "risk_labels"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(64), index=True)
    livemode: Mapped[bool] = mapped_column(Boolean)
    payment_intent_id: Mapped[str] = mapped_column(String(64), index=True)
    label: Mapped[str] = mapped_column(String(8))  # fraud | legit
    source: Mapped[str] = mapped_column(String(32))  # review | refund | cancel | dispute
    created: Mapped[int] = mapped_column(BigInteger)


class RiskRuleSet(Base):
    """One version of a merchant's rule set (append-only: every change is a new version)."""

    __tablename__ = "risk_rulesets"
    __table_args__ = (UniqueConstraint("merchant_id", "livemode", "version"),)

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean)
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # rules.serialization's format
    created: Mapped[int] = mapped_column(BigInteger)
    changed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class RiskList(Base):
    """A named list (`@name`) of one kind of value, for rules (block lists, allow lists, …)."""

    __tablename__ = "risk_lists"
    __table_args__ = (UniqueConstraint("merchant_id", "livemode", "name"),)

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(500))
    created: Mapped[int] = mapped_column(BigInteger)


class RiskListItem(Base):
    __tablename__ = "risk_list_items"
    __table_args__ = (UniqueConstraint("merchant_id", "livemode", "list_name", "value"),)

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean)
    list_name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(512))
    created: Mapped[int] = mapped_column(BigInteger)
