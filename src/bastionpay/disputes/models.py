"""The `disputes` table: Stripe's Dispute, one per charge (docs/disputes.md).

Evidence is text only (a bounded subset of Stripe's evidence fields, `disputes.evidence`), so the
row holds no files and, like every free-text parameter, no card number (C5). Money moves only
through the ledger (P2): the row records which balance transactions the dispute caused.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bastionpay.db.base import Base, MerchantOwned


class Dispute(MerchantOwned, Base):
    __tablename__ = "disputes"

    # Unique: the network opens at most one dispute per charge, and two operators (or a retry)
    # racing to open one meet this constraint instead of withdrawing the funds twice.
    charge_id: Mapped[str] = mapped_column(String(64), unique=True)
    payment_intent_id: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    due_by: Mapped[int] = mapped_column(BigInteger)
    submission_count: Mapped[int] = mapped_column(Integer, default=0)
    is_charge_refundable: Mapped[bool] = mapped_column(Boolean)
    balance_transaction_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
