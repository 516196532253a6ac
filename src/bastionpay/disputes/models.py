"""The `disputes` table: Stripe's Dispute, one per charge (docs/disputes.md).

Evidence is text only (a bounded subset of Stripe's evidence fields, `disputes.evidence`), so the
row holds no files and, like every free-text parameter, no card number (C5). Money moves only
through the ledger (P2): a dispute's balance transactions are the ones whose `source_id` is its id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bastionpay.db.base import Base, MerchantOwned
from bastionpay.disputes.states import is_inquiry


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
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)

    @property
    def is_charge_refundable(self) -> bool:
        """Stripe's flag: an inquiry moves no money, so refunding stays the merchant's choice; a
        chargeback already took the funds back (a refund would repay the cardholder twice)."""
        return is_inquiry(self.status)
