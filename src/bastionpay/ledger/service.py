"""Posting to the double-entry ledger (SECURITY-REQUIREMENTS P2; issue 2, item 8).

A posting is validated before anything is written: amounts are integers, the lines sum to zero, and
every line is in the transaction's currency. Account balances are updated with a single relative
`UPDATE … SET balance = balance + :delta`, in a fixed (sorted) order so concurrent postings on
PostgreSQL cannot deadlock. Services never commit; the unit of work does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bastionpay.kernel.ids import new_id
from bastionpay.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction

# Chart of accounts, per merchant × mode × currency. Signs: debit positive, credit negative.
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


class LedgerImbalance(Exception):
    """A posting that would unbalance the ledger. Raised before any row is written."""


@dataclass(frozen=True)
class Line:
    account: str
    amount: int


def _account_pk(
    session: Session, merchant_id: str, livemode: bool, currency: str, code: str
) -> int:
    values = {
        "merchant_id": merchant_id,
        "livemode": livemode,
        "currency": currency,
        "code": code,
        "balance": 0,
    }
    # Get-or-create without a race: insert-if-absent, then read (both backends support it).
    dialect = session.get_bind().dialect.name
    insert_fn = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert_fn(LedgerAccount).values(**values).on_conflict_do_nothing())
    pk = session.scalar(
        select(LedgerAccount.pk).where(
            LedgerAccount.merchant_id == merchant_id,
            LedgerAccount.livemode == livemode,
            LedgerAccount.currency == currency,
            LedgerAccount.code == code,
        )
    )
    if pk is None:  # pragma: no cover - the insert above guarantees the row
        raise LedgerImbalance(f"ledger account {code} could not be created")
    return pk


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
) -> LedgerTransaction:
    if not lines:
        raise LedgerImbalance("a ledger transaction needs at least one line")
    for line in lines:
        if not isinstance(line.amount, int) or isinstance(line.amount, bool):
            raise LedgerImbalance("ledger amounts are integer minor units")
        if line.account not in ACCOUNT_CODES:
            raise LedgerImbalance(f"unknown ledger account {line.account}")
    total = sum(line.amount for line in lines)
    if total != 0:
        raise LedgerImbalance(f"{kind} for {source_id} does not balance (off by {total})")

    txn = LedgerTransaction(
        id=new_id("ltx"),
        merchant_id=merchant_id,
        livemode=livemode,
        currency=currency,
        kind=kind,
        source_id=source_id,
        created=now,
    )
    session.add(txn)
    session.flush()
    deltas: dict[str, int] = {}
    for line in lines:
        deltas[line.account] = deltas.get(line.account, 0) + line.amount
    for code in sorted(deltas):  # fixed lock order: no deadlocks between concurrent postings
        pk = _account_pk(session, merchant_id, livemode, currency, code)
        session.execute(
            update(LedgerAccount)
            .where(LedgerAccount.pk == pk)
            .values(balance=LedgerAccount.balance + deltas[code])
        )
        session.add(
            LedgerEntry(
                transaction_pk=txn.pk, account_pk=pk, amount=deltas[code], currency=currency
            )
        )
    session.flush()
    return txn


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


def account_balance(
    session: Session, merchant_id: str, livemode: bool, currency: str, code: str
) -> int:
    value = session.scalar(
        select(LedgerAccount.balance).where(
            LedgerAccount.merchant_id == merchant_id,
            LedgerAccount.livemode == livemode,
            LedgerAccount.currency == currency,
            LedgerAccount.code == code,
        )
    )
    return int(value or 0)
