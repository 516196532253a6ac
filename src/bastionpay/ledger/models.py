"""Double-entry ledger tables (SECURITY-REQUIREMENTS P2; issue 2, item 8).

Entries are signed integer minor units, debit positive and credit negative, so every transaction's
entries sum to zero. Entries and transactions are immutable: migrations install triggers that refuse
UPDATE and DELETE on both backends; corrections are new transactions.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastionpay.db.base import Base, MerchantOwned, PkType


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (UniqueConstraint("merchant_id", "livemode", "currency", "code"),)

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean)
    currency: Mapped[str] = mapped_column(String(3))
    code: Mapped[str] = mapped_column(String(64))
    # A checkpoint, not a running balance: `checkpoint_balance` is the sum of this account's entries
    # with pk ≤ `checkpoint_entry_pk`. Postings never touch this row (no hot row per merchant,
    # ARCHITECTURE: Data and scale); the worker advances checkpoints, and `ledger verify` re-derives
    # them from the entries. Current balance = checkpoint + entries after it.
    checkpoint_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    checkpoint_entry_pk: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerTransaction(MerchantOwned, Base):
    __tablename__ = "ledger_transactions"

    # authorization | capture | void | refund | dispute | dispute_reversal
    kind: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(64), index=True)
    currency: Mapped[str] = mapped_column(String(3))


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    transaction_pk: Mapped[int] = mapped_column(
        ForeignKey("ledger_transactions.pk", ondelete="RESTRICT"), index=True
    )
    account_pk: Mapped[int] = mapped_column(
        ForeignKey("ledger_accounts.pk", ondelete="RESTRICT"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


class BalanceTransaction(MerchantOwned, Base):
    """Stripe's BalanceTransaction: the merchant-facing view of a movement of their balance."""

    __tablename__ = "balance_transactions"

    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger)
    net: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    type: Mapped[str] = mapped_column(String(32))  # charge | refund | adjustment (disputes)
    source_id: Mapped[str] = mapped_column(String(64), index=True)
    description: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    available_on: Mapped[int] = mapped_column(BigInteger)
    ledger_transaction_id: Mapped[str] = mapped_column(String(64))
