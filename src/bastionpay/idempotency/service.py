"""Idempotent requests with Stripe's semantics (SECURITY-REQUIREMENTS P1).

1. `begin` reserves the key in its own short transaction. A unique constraint on
   (merchant, mode, key) makes concurrent first uses race safely: one wins, the others get 409.
2. The request runs in the caller's unit of work and `complete` stores the response in that same
   transaction, so the effect and its recorded response commit together — a crash in between
   leaves neither, and the key can be retried.
3. A later request with the key replays the stored response (≥ 24 h); with different parameters it
   is an `idempotency_error`. A reservation left by a crashed process expires after a lock timeout.

The key itself is stored only as a keyed hash (HMAC-SHA-256): it is free text chosen by the client,
and a client that sends a card number as its key must not put that number in the api's database
(C5; a Stripe SDK's UUID key even contains a Luhn-valid 16-digit run now and then).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastionpay.crypto.keyed_hash import KeyedHasher
from bastionpay.db.engine import Database
from bastionpay.db.uow import unit_of_work
from bastionpay.idempotency.models import IdempotencyRecord
from bastionpay.kernel.errors import IdempotencyError, IdempotencyKeyInUse, InvalidRequestError

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Replay:
    status: int
    body: str


@dataclass(frozen=True)
class Reservation:
    pk: int
    token: str
    key_preview: str


def fingerprint(method: str, path: str, params: dict[str, Any]) -> str:
    canonical = json.dumps([method, path, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequestError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters long.",
            code="idempotency_key_invalid",
            param="Idempotency-Key",
        )


def _preview(key: str) -> str:
    return key if len(key) <= 40 else key[:37] + "..."


def begin(
    db: Database,
    *,
    merchant_id: str,
    livemode: bool,
    key: str,
    hasher: KeyedHasher,
    method: str,
    path: str,
    request_hash: str,
    now: int,
    lock_timeout: int,
) -> Replay | Reservation:
    check_key(key)
    stored_key = hasher.hexdigest(key)  # C5: never the client's text itself
    token = secrets.token_hex(16)
    try:
        with unit_of_work(db, write=True) as session:
            record = session.scalar(
                select(IdempotencyRecord)
                .where(
                    IdempotencyRecord.merchant_id == merchant_id,
                    IdempotencyRecord.livemode == livemode,
                    IdempotencyRecord.key == stored_key,
                )
                .with_for_update()
            )
            if record is None:
                record = IdempotencyRecord(
                    merchant_id=merchant_id,
                    livemode=livemode,
                    key=stored_key,
                    request_method=method,
                    request_path=path,
                    request_hash=request_hash,
                    locked_at=now,
                    lock_token=token,
                    created=now,
                )
                session.add(record)
                session.flush()
                return Reservation(pk=record.pk, token=token, key_preview=_preview(key))
            if (
                record.request_hash != request_hash
                or record.request_path != path
                or record.request_method != method
            ):
                raise IdempotencyError(
                    "Keys for idempotent requests can only be used with the same parameters they "
                    f"were first used with. Try using a key other than '{_preview(key)}' if you "
                    "meant to execute a different request.",
                    code="idempotency_key_reused",
                )
            if record.response_status is not None and record.response_body is not None:
                return Replay(status=record.response_status, body=record.response_body)
            if record.locked_at is not None and now - record.locked_at < lock_timeout:
                raise IdempotencyKeyInUse(_preview(key))
            # The previous holder died or overran the lock timeout. Take over with a new token: if
            # the old holder is in fact still running, its `complete` now matches no row, so its
            # unit of work rolls back and only this request's effect can commit.
            record.locked_at = now
            record.lock_token = token
            return Reservation(pk=record.pk, token=token, key_preview=_preview(key))
    except IntegrityError:
        # Lost the race to insert the key (PostgreSQL): another request holds it right now.
        raise IdempotencyKeyInUse(_preview(key)) from None


def _held(reservation: Reservation) -> ColumnElement[bool]:
    return and_(
        IdempotencyRecord.pk == reservation.pk,
        IdempotencyRecord.lock_token == reservation.token,
        IdempotencyRecord.response_status.is_(None),
    )


def complete(session: Session, reservation: Reservation, status: int, body: str) -> None:
    """Store the response in the caller's unit of work; raise if the reservation was taken over."""
    result = session.execute(
        update(IdempotencyRecord)
        .where(_held(reservation))
        .values(response_status=status, response_body=body, locked_at=None, lock_token=None)
    )
    if getattr(result, "rowcount", 0) != 1:
        # Another request took the key over after our lock timed out; our effect must not commit.
        raise IdempotencyKeyInUse(reservation.key_preview)


def store_error(db: Database, reservation: Reservation, status: int, body: str) -> None:
    """An error raised while executing is the key's result too (Stripe replays errors)."""
    with unit_of_work(db, write=True) as session:
        session.execute(
            update(IdempotencyRecord)
            .where(_held(reservation))
            .values(response_status=status, response_body=body, locked_at=None, lock_token=None)
        )


def release(db: Database, reservation: Reservation) -> None:
    """Forget a reservation whose request failed unexpectedly, so the client can retry."""
    with unit_of_work(db, write=True) as session:
        session.execute(delete(IdempotencyRecord).where(_held(reservation)))


def prune(session: Session, *, older_than: int) -> int:
    result = session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created < older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
