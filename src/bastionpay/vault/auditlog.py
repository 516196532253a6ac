"""The vault's own audit log (L1; PCI DSS 10.2.1.1-10.2.1.7, 10.2.2).

Same tables and the same tamper evidence as the api's log (`bastionpay.audit`: staged inserts, a
keyed hash chain and a Merkle tree with signed checkpoints), but in the vault's database, under the
vault's own audit keys, with the vault's vocabulary below. The api cannot write to it and the
vault never writes to the api's.

`record` stages an event in the caller's transaction: an action and its audit record commit
together or not at all (fail closed, P3). Events that happen outside any transaction — a refused
TLS handshake on the event loop — go through `AuditQueue`, a bounded queue the vault's background
thread drains; when it overflows (a handshake flood) the surplus is counted and recorded as one
event with the number dropped, so an attacker cannot grow the log or memory without bound.

Details are scrubbed of card numbers before they are stored (C5), like the api's; callers never
put a card number, a CVC or a key in them in the first place.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from bastionpay.audit import seal as audit_seal
from bastionpay.audit.keys import AuditKeys
from bastionpay.audit.models import AuditStaged
from bastionpay.db.engine import Database
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.ids import new_id
from bastionpay.kernel.pan import mask_pans
from bastionpay.observability.logging import get_logger

log = get_logger("bastionpay.vault.audit")

VaultActor = Literal["service", "operator", "publishable_key", "system", "anonymous"]
Outcome = Literal["success", "failure", "denied"]
VaultAction = Literal[
    # access to cardholder data (10.2.1.1)
    "vault.card.detokenize",
    # creation and deletion of system objects (10.2.1.7)
    "vault.card.create",
    "vault.cvc.delete",
    "vault.publishable_key.register",
    "vault.publishable_key.revoke",
    # payments through the acquirer
    "vault.authorization.create",
    "vault.authorization.capture",
    "vault.authorization.void",
    "vault.authorization.reverse",
    "vault.authorization.refund",
    # 3-D Secure (issue 4, item 7): identification and authentication of the cardholder
    # (10.2.1.5); a refused challenge (expired, replayed, cross-site) is a failed access (10.2.1.4)
    "vault.three_d_secure.create",
    "vault.three_d_secure.challenge",
    "vault.three_d_secure.complete",
    "vault.three_d_secure.reject",
    # failed access (10.2.1.4): refused client certificates, keys, merchants
    "vault.mtls.reject",
    "vault.publishable_key.reject",
    "vault.access.deny",
    # key management: admin actions (10.2.1.2), identification and authentication data (10.2.1.5)
    "vault.keys.status",
    "vault.keys.rotate_kek",
    "vault.keys.rewrap",
    "vault.keys.retire_kek",
    "vault.keys.rotate_dek",
    "vault.keys.reencrypt",
    "vault.keys.destroy_dek",
    # audit log start and stop (10.2.1.6) and access to it (10.2.1.3)
    "vault.process.start",
    "vault.process.stop",
    "vault.audit.verify",
]
ACTIONS: Final = frozenset(VaultAction.__args__)  # type: ignore[attr-defined]
QUEUE_CAPACITY: Final = 1024
_STAGED = cast(Table, AuditStaged.__table__)


@dataclass(frozen=True)
class Origin:
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


SYSTEM: Final = Origin()


@dataclass(frozen=True)
class VaultEvent:
    """Who (`actor_type`/`actor_id`: a certificate subject, a key id, an operator), what, outcome,
    origin and target (PCI DSS 10.2.2). `occurred_us` defaults to the time of recording."""

    actor_type: VaultActor
    actor_id: str
    action: VaultAction
    outcome: Outcome
    merchant_id: str | None = None
    livemode: bool | None = None
    target_type: str | None = None
    target_id: str | None = None
    origin: Origin = SYSTEM
    details: dict[str, Any] = field(default_factory=dict)
    occurred_us: int | None = None


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask_pans(value)
    if isinstance(value, dict):
        return {_scrub(str(key)): _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def record(session: Session, event: VaultEvent) -> str:
    """Stage `event` in the caller's transaction; returns its id (`aud_…`)."""
    if event.action not in ACTIONS:
        raise ValueError(f"unknown vault audit action {event.action!r}")
    event_id = new_id("aud")
    session.execute(
        insert(_STAGED).values(
            event_id=event_id,
            occurred_us=event.occurred_us or time.time_ns() // 1000,
            actor_type=event.actor_type,
            actor_id=event.actor_id[:64],
            merchant_id=event.merchant_id,
            livemode=event.livemode,
            action=event.action,
            target_type=event.target_type,
            target_id=event.target_id,
            outcome=event.outcome,
            origin_ip=event.origin.ip,
            user_agent=_scrub(event.origin.user_agent or "")[:256] or None,
            request_id=event.origin.request_id,
            details=_scrub(event.details),
        )
    )
    return event_id


def record_now(db: Database, event: VaultEvent) -> str:
    """Record `event` in a transaction of its own (for events with no action to commit)."""
    with unit_of_work(db, write=True) as session:
        return record(session, event)


class AuditQueue:
    """Events raised where no transaction is open (the event loop); bounded, drained by a thread."""

    def __init__(self, capacity: int = QUEUE_CAPACITY) -> None:
        self._queue: queue.Queue[VaultEvent] = queue.Queue(maxsize=capacity)
        self._dropped = 0
        self._lock = threading.Lock()

    def put(self, event: VaultEvent) -> None:
        stamped = event if event.occurred_us else _stamped(event)
        try:
            self._queue.put_nowait(stamped)
        except queue.Full:
            with self._lock:
                self._dropped += 1

    def drain(self, db: Database, *, limit: int = QUEUE_CAPACITY) -> int:
        """Write queued events (and a note of any dropped ones) in one transaction."""
        events: list[VaultEvent] = []
        while len(events) < limit:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            events.append(
                VaultEvent(
                    actor_type="system",
                    actor_id="vault",
                    action="vault.mtls.reject",
                    outcome="denied",
                    details={"reason": "audit_queue_overflow", "dropped_events": dropped},
                )
            )
            log.warning("vault_audit_queue_overflow", dropped=dropped)
        if not events:
            return 0
        with unit_of_work(db, write=True) as session:
            for event in events:
                record(session, event)
        return len(events)


def _stamped(event: VaultEvent) -> VaultEvent:
    return VaultEvent(
        actor_type=event.actor_type,
        actor_id=event.actor_id,
        action=event.action,
        outcome=event.outcome,
        merchant_id=event.merchant_id,
        livemode=event.livemode,
        target_type=event.target_type,
        target_id=event.target_id,
        origin=event.origin,
        details=event.details,
        occurred_us=time.time_ns() // 1000,
    )


def seal_staged(db: Database, keys: AuditKeys) -> int:
    """Seal staged events into the chain (the vault's sealer; one at a time per database)."""
    with unit_of_work(db, write=True) as session:
        return audit_seal.seal(session, keys).count


def checkpoint(db: Database, keys: AuditKeys, *, force: bool = False) -> bool:
    """Sign the current head when something new was sealed (or always, with `force`)."""
    with unit_of_work(db, write=True) as session:
        signed = audit_seal.checkpoint(session, keys, now_us=time.time_ns() // 1000, force=force)
    return signed is not None
