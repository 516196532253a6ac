"""Audit tables. No foreign keys: an audit entry never cascades away with its subject (L2)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastionpay.db.base import Base, PkType


class _EventColumns:
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    occurred_us: Mapped[int] = mapped_column(BigInteger)  # Unix microseconds, UTC
    actor_type: Mapped[str] = mapped_column(String(16))  # api_key | user | oauth_client | system
    actor_id: Mapped[str] = mapped_column(String(64))
    merchant_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    livemode: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    action: Mapped[str] = mapped_column(String(64))  # domain.object.verb
    target_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure | denied
    origin_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditStaged(_EventColumns, Base):
    """Events written by request transactions: insert-only, no shared row (no hot spot)."""

    __tablename__ = "audit_staged"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)


class AuditEntry(_EventColumns, Base):
    """A sealed entry: its place in the log (`seq`), its Merkle leaf and its chain link."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    chain_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain head after the last sealed entry, MAC'd with the chain key (truncation check)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    chain_hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement: the first `tree_size` entries have this Merkle root and chain head."""

    __tablename__ = "audit_checkpoints"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[str] = mapped_column(String(64))
    chain_hash: Mapped[str] = mapped_column(String(64))
    created_us: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[str] = mapped_column(Text)


class AuditArchivedLeaf(Base):
    """What stays online of an archived entry: its place, leaf and chain link (verification)."""

    __tablename__ = "audit_archived_leaves"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    chain_hash: Mapped[str] = mapped_column(String(64))


class AuditArchive(Base):
    """A segment of entries moved to a file: which, where, and the file's SHA-256."""

    __tablename__ = "audit_archives"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    end_seq: Mapped[int] = mapped_column(BigInteger)
    file_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    created_us: Mapped[int] = mapped_column(BigInteger)
