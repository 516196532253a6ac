"""Stored idempotent requests (SECURITY-REQUIREMENTS P1)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastionpay.db.base import Base, PkType


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("merchant_id", "livemode", "key"),)

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean)
    # HMAC-SHA-256 of the client's Idempotency-Key, hex (service.begin; C5).
    key: Mapped[str] = mapped_column(String(255))
    request_method: Mapped[str] = mapped_column(String(8))
    request_path: Mapped[str] = mapped_column(String(256))
    request_hash: Mapped[str] = mapped_column(String(64))
    locked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Fences the holder: a takeover after the lock timeout issues a new token, and the old holder's
    # late `complete`/`release` match no row (security review H3).
    lock_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[int] = mapped_column(BigInteger, index=True)
