"""Sealing staged events into the log, and signing checkpoints.

Run by the worker every second and on demand (`bastionpay audit checkpoint`). One sealer at a time:
the head row is locked (`FOR UPDATE` on PostgreSQL; SQLite serializes writers). Request
transactions never touch the head, so audit appends cost a payment one insert and no shared lock
(issue 3, item 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.orm import Session

from bastionpay.audit import chain, merkle
from bastionpay.audit.keys import AuditKeys
from bastionpay.audit.models import (
    AuditArchivedLeaf,
    AuditCheckpoint,
    AuditEntry,
    AuditHead,
    AuditStaged,
)

_STAGED = cast(Table, AuditStaged.__table__)
_ENTRIES = cast(Table, AuditEntry.__table__)
_ARCHIVED = cast(Table, AuditArchivedLeaf.__table__)
SEAL_BATCH = 5_000


class AuditTampered(Exception):
    """The stored log does not verify; sealing refuses to extend it."""


@dataclass(frozen=True)
class Sealed:
    count: int
    size: int


def _head(session: Session, keys: AuditKeys) -> AuditHead:
    head = session.scalar(select(AuditHead).where(AuditHead.id == 1).with_for_update())
    if head is None:
        head = AuditHead(
            id=1,
            size=0,
            chain_hash=chain.GENESIS,
            mac=chain.head_mac(keys.chain, 0, chain.GENESIS),
        )
        session.add(head)
        session.flush()
    elif not keys.chain.matches(f"head:{head.size}:{head.chain_hash}", head.mac):
        raise AuditTampered("the audit head does not match its MAC")
    return head


def seal(session: Session, keys: AuditKeys, *, limit: int = SEAL_BATCH) -> Sealed:
    head = _head(session, keys)
    staged = session.execute(select(_STAGED).order_by(_STAGED.c.pk).limit(limit)).mappings().all()
    if not staged:
        return Sealed(count=0, size=head.size)
    size, previous = head.size, head.chain_hash
    rows: list[dict[str, Any]] = []
    for event in staged:
        fields = {name: event[name] for name in chain.FIELDS}
        leaf = chain.leaf_hex(size, fields)
        previous = chain.link(keys.chain, size, previous, leaf)
        rows.append({**fields, "seq": size, "leaf_hash": leaf, "chain_hash": previous})
        size += 1
    session.execute(insert(_ENTRIES), rows)
    session.execute(delete(_STAGED).where(_STAGED.c.pk.in_([e["pk"] for e in staged])))
    head.size, head.chain_hash = size, previous
    head.mac = chain.head_mac(keys.chain, size, previous)
    return Sealed(count=len(rows), size=size)


def leaf_hashes(session: Session, size: int) -> list[bytes]:
    """The first `size` leaves: archived ones (kept online as hashes) then the online entries."""
    archived = session.execute(
        select(_ARCHIVED.c.leaf_hash).where(_ARCHIVED.c.seq < size).order_by(_ARCHIVED.c.seq)
    ).scalars()
    online = session.execute(
        select(_ENTRIES.c.leaf_hash).where(_ENTRIES.c.seq < size).order_by(_ENTRIES.c.seq)
    ).scalars()
    return [bytes.fromhex(value) for value in [*archived, *online]]


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.pk.desc()).limit(1))


def checkpoint(
    session: Session, keys: AuditKeys, *, now_us: int, force: bool = False
) -> AuditCheckpoint | None:
    """Sign the current head; skipped when nothing was sealed since the last one (unless forced)."""
    head = _head(session, keys)
    last = latest_checkpoint(session)
    if not force and (head.size == 0 or (last is not None and last.tree_size == head.size)):
        return None
    hashes = leaf_hashes(session, head.size)
    if len(hashes) != head.size:
        raise AuditTampered(f"the head says {head.size} entries but {len(hashes)} are stored")
    root = merkle.root_from_leaf_hashes(hashes).hex()
    message = chain.checkpoint_message(head.size, root, head.chain_hash, now_us, keys.key_id)
    record = AuditCheckpoint(
        tree_size=head.size,
        root_hash=root,
        chain_hash=head.chain_hash,
        created_us=now_us,
        key_id=keys.key_id,
        signature=keys.signing.sign(message).hex(),
    )
    session.add(record)
    session.flush()
    return record


def staged_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(_STAGED)) or 0)
