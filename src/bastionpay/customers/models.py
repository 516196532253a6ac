"""Customers (Stripe's Customer object)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from bastionpay.db.base import Base, MerchantOwned


class Customer(MerchantOwned, Base):
    __tablename__ = "customers"

    email: Mapped[str | None] = mapped_column(String(512), nullable=True, index=True)
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    description: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
