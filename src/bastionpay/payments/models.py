"""PaymentMethods, PaymentIntents, Charges and Refunds.

The api zone never holds a card number or CVC (ARCHITECTURE): a PaymentMethod keeps the processor's
token plus brand, last4, expiry, funding, country and a keyed fingerprint.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from bastionpay.db.base import Base, MerchantOwned


class PaymentMethod(MerchantOwned, Base):
    __tablename__ = "payment_methods"

    type: Mapped[str] = mapped_column(String(32), default="card")
    customer_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    card_brand: Mapped[str] = mapped_column(String(32))
    card_last4: Mapped[str] = mapped_column(String(4))
    card_exp_month: Mapped[int] = mapped_column(Integer)
    card_exp_year: Mapped[int] = mapped_column(Integer)
    card_funding: Mapped[str] = mapped_column(String(16))
    card_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    processor_token: Mapped[str] = mapped_column(String(128))
    billing_details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class PaymentIntent(MerchantOwned, Base):
    __tablename__ = "payment_intents"

    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # Indexed: the worker's janitor looks for `processing` and `requires_action` intents.
    status: Mapped[str] = mapped_column(String(32), index=True)
    capture_method: Mapped[str] = mapped_column(String(32))
    confirmation_method: Mapped[str] = mapped_column(String(32), default="automatic")
    customer_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    payment_method_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    payment_method_types: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    receipt_email: Mapped[str | None] = mapped_column(String(512), nullable=True)
    statement_descriptor: Mapped[str | None] = mapped_column(String(22), nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    amount_capturable: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_received: Mapped[int] = mapped_column(BigInteger, default=0)
    latest_charge_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_payment_error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    cancellation_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    canceled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    client_secret_suffix: Mapped[str] = mapped_column(String(64))
    review_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # an open review
    # The 3-D Secure attempt while `requires_action` (issue 4, item 7; `payments.three_d_secure`):
    # authentication id, reserved charge id, challenge URL, return_url, reason. No card data.
    three_d_secure: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Charge(MerchantOwned, Base):
    __tablename__ = "charges"

    payment_intent_id: Mapped[str] = mapped_column(String(64), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    payment_method_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    amount_captured: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # succeeded | pending | failed
    captured: Mapped[bool] = mapped_column(Boolean, default=False)
    # A dispute (chargeback or inquiry) was opened on this charge (`bastionpay.disputes`).
    disputed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(String(500), nullable=True)
    outcome: Mapped[dict[str, Any]] = mapped_column(default=dict)
    balance_transaction_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    processor_reference: Mapped[str | None] = mapped_column(String(128), nullable=True)
    authorization_code: Mapped[str | None] = mapped_column(String(16), nullable=True)
    description: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class Refund(MerchantOwned, Base):
    __tablename__ = "refunds"

    charge_id: Mapped[str] = mapped_column(String(64), index=True)
    payment_intent_id: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    balance_transaction_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    processor_reference: Mapped[str | None] = mapped_column(String(128), nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
