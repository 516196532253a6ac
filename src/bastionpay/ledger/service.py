"""Posting to the double-entry ledger (SECURITY-REQUIREMENTS P2; issue 2, item 8).

A posting is validated before anything is written: amounts are integers and the lines sum to zero.
Posting is append-only — one ledger transaction row and its entries — so no row is shared by every
payment of a merchant (ARCHITECTURE: "no row that every payment must lock"). Balances are derived:
an account's checkpoint (advanced by the worker) plus its entries after the checkpoint. Services
never commit; the unit of work does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

from sqlalchemy import Table, event, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bastionpay.kernel.ids import new_id
from bastionpay.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from bastionpay.observability.metrics import METRICS

# Chart of accounts, per merchant x mode x currency. Signs: debit positive, credit negative.
AUTHORIZATION_HOLDS: Final = "authorization_holds"  # memo: funds held on cardholders' cards
AUTHORIZATION_COMMITMENTS: Final = "authorization_commitments"  # memo contra of the holds
PROCESSOR_RECEIVABLE: Final = "processor_receivable"  # asset: captured funds due from the network
MERCHANT_BALANCE: Final = "merchant_balance"  # liability: what we owe the merchant
FEE_REVENUE: Final = "fee_revenue"  # income: our processing fees
ACCOUNT_CODES: Final = frozenset(
    {
        AUTHORIZATION_HOLDS,
        AUTHORIZATION_COMMITMENTS,
        PROCESSOR_RECEIVABLE,
        MERCHANT_BALANCE,
        FEE_REVENUE,
    }
)

_ACCOUNTS = cast(Table, LedgerAccount.__table__)
_ENTRIES = cast(Table, LedgerEntry.__table__)
_TXNS = cast(Table, LedgerTransaction.__table__)
AccountKey = tuple[str, str, bool, str, str]  # (database url, merchant, livemode, currency, code)

# Accounts are created once and never deleted, so their primary keys are remembered per process,
# keyed by database URL. Only ids from *committed* transactions enter the cache: an id found or
# created inside a unit of work is staged on the session and published by the after-commit hook
# below, so a rollback can never leave a cached id that the database may later reuse for another
# merchant's account (SQLite reuses rolled-back rowids).
_ACCOUNT_PKS: dict[AccountKey, int] = {}
_ACCOUNT_PKS_LOCK = threading.Lock()
_ACCOUNT_CACHE_LIMIT = 100_000
_STAGED = "bastionpay.ledger.staged_account_pks"


@event.listens_for(Session, "after_commit")
def _publish_staged_accounts(session: Session) -> None:
    staged: dict[AccountKey, int] | None = session.info.pop(_STAGED, None)
    if not staged:
        return
    with _ACCOUNT_PKS_LOCK:
        if len(_ACCOUNT_PKS) + len(staged) > _ACCOUNT_CACHE_LIMIT:
            _ACCOUNT_PKS.clear()
        _ACCOUNT_PKS.update(staged)


@event.listens_for(Session, "after_rollback")
def _discard_staged_accounts(session: Session) -> None:
    session.info.pop(_STAGED, None)


class LedgerImbalance(Exception):
    """A posting that would unbalance the ledger. Raised before any row is written."""


@dataclass(frozen=True)
class Posted:
    """A committed-with-the-unit-of-work ledger transaction."""

    id: str


@dataclass(frozen=True)
class Line:
    account: str
    amount: int


def _account_pk(session: Session, key: AccountKey) -> int:
    cached = _ACCOUNT_PKS.get(key) or session.info.get(_STAGED, {}).get(key)
    if cached is not None:
        return int(cached)
    _, merchant_id, livemode, currency, code = key
    # Get-or-create without a race: insert-if-absent, then read (both backends support it).
    dialect = session.get_bind().dialect.name
    insert_fn = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert_fn(_ACCOUNTS)
        .values(
            merchant_id=merchant_id,
            livemode=livemode,
            currency=currency,
            code=code,
            checkpoint_balance=0,
            checkpoint_entry_pk=0,
        )
        .on_conflict_do_nothing()
    )
    pk = session.scalar(
        select(_ACCOUNTS.c.pk).where(
            _ACCOUNTS.c.merchant_id == merchant_id,
            _ACCOUNTS.c.livemode == livemode,
            _ACCOUNTS.c.currency == currency,
            _ACCOUNTS.c.code == code,
        )
    )
    if pk is None:  # pragma: no cover - the insert above guarantees the row
        raise LedgerImbalance(f"ledger account {code} could not be created")
    session.info.setdefault(_STAGED, {})[key] = int(pk)
    return int(pk)


@dataclass(frozen=True)
class Posting:
    """One balanced ledger transaction to write: what happened, to which object, and its lines."""

    kind: str
    source_id: str
    lines: Sequence[Line]


def _check(posting: Posting) -> None:
    if not posting.lines:
        raise LedgerImbalance("a ledger transaction needs at least one line")
    for line in posting.lines:
        if not isinstance(line.amount, int) or isinstance(line.amount, bool):
            raise LedgerImbalance("ledger amounts are integer minor units")
        if line.account not in ACCOUNT_CODES:
            raise LedgerImbalance(f"unknown ledger account {line.account}")
    total = sum(line.amount for line in posting.lines)
    if total != 0:
        raise LedgerImbalance(
            f"{posting.kind} for {posting.source_id} does not balance (off by {total})"
        )


def post(
    session: Session,
    *,
    merchant_id: str,
    livemode: bool,
    currency: str,
    kind: str,
    source_id: str,
    lines: Sequence[Line],
    now: int,
) -> Posted:
    return post_many(
        session,
        merchant_id=merchant_id,
        livemode=livemode,
        currency=currency,
        now=now,
        postings=[Posting(kind=kind, source_id=source_id, lines=lines)],
    )[0]


def post_many(
    session: Session,
    *,
    merchant_id: str,
    livemode: bool,
    currency: str,
    now: int,
    postings: Sequence[Posting],
) -> list[Posted]:
    """Write several ledger transactions in two statements; every one is checked first."""
    if not postings:
        return []
    for posting in postings:
        _check(posting)  # all or nothing: nothing is written if any posting is unbalanced
    rows = [
        {
            "id": new_id("ltx"),
            "merchant_id": merchant_id,
            "livemode": livemode,
            "currency": currency,
            "kind": posting.kind,
            "source_id": posting.source_id,
            "created": now,
        }
        for posting in postings
    ]
    # Core inserts with RETURNING: no ORM flush is forced here, so the payment's own rows are
    # written once, with their final values, when the unit of work commits.
    with session.no_autoflush:
        returned = session.execute(insert(_TXNS).returning(_TXNS.c.id, _TXNS.c.pk), rows).all()
        pk_by_id = {row_id: int(pk) for row_id, pk in returned}
        url = str(session.get_bind().engine.url)
        entries = []
        for row, posting in zip(rows, postings, strict=True):
            deltas: dict[str, int] = {}
            for line in posting.lines:
                deltas[line.account] = deltas.get(line.account, 0) + line.amount
            for code, amount in sorted(deltas.items()):
                if amount == 0:
                    continue
                key = (url, merchant_id, livemode, currency, code)
                entries.append(
                    {
                        "transaction_pk": pk_by_id[row["id"]],
                        "account_pk": _account_pk(session, key),
                        "amount": amount,
                        "currency": currency,
                    }
                )
        if entries:
            session.execute(insert(_ENTRIES), entries)
    for posting in postings:
        METRICS.ledger_postings.labels(posting.kind).inc()
    return [Posted(id=str(row["id"])) for row in rows]


def authorization_lines(amount: int) -> list[Line]:
    return [Line(AUTHORIZATION_HOLDS, amount), Line(AUTHORIZATION_COMMITMENTS, -amount)]


def release_lines(amount: int) -> list[Line]:
    return [Line(AUTHORIZATION_HOLDS, -amount), Line(AUTHORIZATION_COMMITMENTS, amount)]


def capture_lines(authorized: int, captured: int, fee: int) -> list[Line]:
    """Release the whole hold, then book the captured funds: receivable = merchant net + fee."""
    return [
        *release_lines(authorized),
        Line(PROCESSOR_RECEIVABLE, captured),
        Line(MERCHANT_BALANCE, -(captured - fee)),
        Line(FEE_REVENUE, -fee),
    ]


def refund_lines(amount: int) -> list[Line]:
    # Fees are not returned on refunds (Stripe's current pricing behaviour).
    return [Line(MERCHANT_BALANCE, amount), Line(PROCESSOR_RECEIVABLE, -amount)]


def dispute_lines(amount: int, fee: int) -> list[Line]:
    """A chargeback: the network takes the disputed amount back from the receivable, and the
    merchant pays it plus the dispute fee (Stripe's `adjustment` / reporting category `dispute`)."""
    return [
        Line(MERCHANT_BALANCE, amount + fee),
        Line(PROCESSOR_RECEIVABLE, -amount),
        Line(FEE_REVENUE, -fee),
    ]


def dispute_reversal_lines(amount: int, fee: int) -> list[Line]:
    """A won dispute: the exact opposite of `dispute_lines` (a new entry, never an edit)."""
    return [Line(line.account, -line.amount) for line in dispute_lines(amount, fee)]


def account_balance(
    session: Session, merchant_id: str, livemode: bool, currency: str, code: str
) -> int:
    """Checkpoint plus the entries posted after it."""
    account = session.execute(
        select(
            _ACCOUNTS.c.pk, _ACCOUNTS.c.checkpoint_balance, _ACCOUNTS.c.checkpoint_entry_pk
        ).where(
            _ACCOUNTS.c.merchant_id == merchant_id,
            _ACCOUNTS.c.livemode == livemode,
            _ACCOUNTS.c.currency == currency,
            _ACCOUNTS.c.code == code,
        )
    ).first()
    if account is None:
        return 0
    pk, checkpoint, through = account
    after = session.scalar(
        select(func.coalesce(func.sum(_ENTRIES.c.amount), 0)).where(
            _ENTRIES.c.account_pk == pk, _ENTRIES.c.pk > through
        )
    )
    return int(checkpoint) + int(after or 0)


def advance_checkpoints(session: Session, *, through_entry_pk: int) -> int:
    """Fold entries with pk ≤ `through_entry_pk` into each account's checkpoint.

    The caller picks `through_entry_pk` behind a safety horizon (see `checkpoint_horizon`) so no
    transaction still in flight can later commit an entry below it. Returns accounts advanced.
    """
    rows = session.execute(
        select(_ENTRIES.c.account_pk, func.sum(_ENTRIES.c.amount), func.max(_ENTRIES.c.pk))
        .join(_ACCOUNTS, _ACCOUNTS.c.pk == _ENTRIES.c.account_pk)
        .where(_ENTRIES.c.pk > _ACCOUNTS.c.checkpoint_entry_pk)
        .where(_ENTRIES.c.pk <= through_entry_pk)
        .group_by(_ENTRIES.c.account_pk)
    ).all()
    for account_pk, amount, last_pk in rows:
        session.execute(
            update(_ACCOUNTS)
            .where(_ACCOUNTS.c.pk == account_pk)
            .where(_ACCOUNTS.c.checkpoint_entry_pk < last_pk)
            .values(
                checkpoint_balance=_ACCOUNTS.c.checkpoint_balance + int(amount),
                checkpoint_entry_pk=through_entry_pk,
            )
        )
    return len(rows)


def checkpoint_horizon(session: Session, *, older_than: int) -> int:
    """The highest entry pk whose ledger transaction was created before `older_than`.

    Entry pks come from a sequence and transactions commit out of order, so the newest entries may
    still have uncommitted neighbours below them. Units of work last seconds; a horizon minutes in
    the past is far behind any open transaction.
    """
    txns = cast(Table, LedgerTransaction.__table__)
    value = session.scalar(
        select(func.max(_ENTRIES.c.pk))
        .join(txns, txns.c.pk == _ENTRIES.c.transaction_pk)
        .where(txns.c.created < older_than)
    )
    return int(value or 0)
