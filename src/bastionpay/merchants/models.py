"""Merchants and their API keys."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from bastionpay.db.base import Base, PkType


class Merchant(Base):
    __tablename__ = "merchants"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created: Mapped[int] = mapped_column(BigInteger)
    # Rate-limit overrides in `limits` notation ("500/second"); NULL: the platform default (T4).
    rate_limit_read: Mapped[str | None] = mapped_column(String(32), nullable=True)
    rate_limit_write: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Risk (issue 7): the zone for night-time features (IANA name; NULL: UTC) and what happens
    # when scoring fails or overruns its budget ("open" or "closed"; NULL: the platform default).
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    risk_failure_policy: Mapped[str | None] = mapped_column(String(8), nullable=True)


class ApiKey(Base):
    """An API key, stored only as a keyed hash (SECURITY-REQUIREMENTS I7).

    `redacted` keeps the prefix and last 4 characters so operators can tell keys apart.
    """

    __tablename__ = "api_keys"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    merchant_id: Mapped[str] = mapped_column(String(64), index=True)
    livemode: Mapped[bool] = mapped_column(Boolean)
    kind: Mapped[str] = mapped_column(String(16))  # secret | publishable | restricted
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    redacted: Mapped[str] = mapped_column(String(32))
    permissions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # CIDRs the key may be used from (I7); NULL: anywhere.
    allowed_ips: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
