"""`bastionpay ledger verify`: re-derive every invariant of the ledger from the raw rows.

Each check is named; a failure names the check and up to a few offending rows, so an operator knows
where to look. Checks are aggregate SQL queries and stream no rows into memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from bastionpay.disputes.models import Dispute
from bastionpay.disputes.states import FUNDS_WITHDRAWN
from bastionpay.ledger import service as ledger
from bastionpay.ledger.models import (
    BalanceTransaction,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
)
from bastionpay.payments.models import Charge, PaymentIntent, Refund

MAX_EXAMPLES = 5


@dataclass
class Check:
    name: str
    description: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Report:
    checks: list[Check]
    transactions: int
    entries: int
    accounts: int

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def first_failure(self) -> Check | None:
        return next((check for check in self.checks if not check.ok), None)


def _transactions_balance(session: Session) -> Check:
    check = Check("transactions_balance", "every ledger transaction's entries sum to zero")
    rows = session.execute(
        select(LedgerTransaction.id, func.coalesce(func.sum(LedgerEntry.amount), 0))
        .outerjoin(LedgerEntry, LedgerEntry.transaction_pk == LedgerTransaction.pk)
        .group_by(LedgerTransaction.id)
        .having(
            (func.coalesce(func.sum(LedgerEntry.amount), 0) != 0)
            | (func.count(LedgerEntry.pk) == 0)
        )
        .limit(MAX_EXAMPLES)
    ).all()
    check.problems = [f"transaction {txn_id} sums to {total}" for txn_id, total in rows]
    return check


def _currencies_consistent(session: Session) -> Check:
    check = Check(
        "currencies_consistent", "entries share their transaction's and account's currency"
    )
    rows = session.execute(
        select(LedgerEntry.pk, LedgerTransaction.id)
        .join(LedgerTransaction, LedgerTransaction.pk == LedgerEntry.transaction_pk)
        .join(LedgerAccount, LedgerAccount.pk == LedgerEntry.account_pk)
        .where(
            (LedgerEntry.currency != LedgerTransaction.currency)
            | (LedgerEntry.currency != LedgerAccount.currency)
            | (LedgerAccount.merchant_id != LedgerTransaction.merchant_id)
            | (LedgerAccount.livemode != LedgerTransaction.livemode)
        )
        .limit(MAX_EXAMPLES)
    ).all()
    check.problems = [f"entry {pk} of {txn_id} crosses currency or merchant" for pk, txn_id in rows]
    return check


def _checkpoints_match_entries(session: Session) -> Check:
    check = Check(
        "checkpoints_match_entries",
        "every account checkpoint equals the sum of its entries up to the checkpoint",
    )
    derived = (
        select(LedgerEntry.account_pk, func.sum(LedgerEntry.amount).label("total"))
        .join(LedgerAccount, LedgerAccount.pk == LedgerEntry.account_pk)
        .where(LedgerEntry.pk <= LedgerAccount.checkpoint_entry_pk)
        .group_by(LedgerEntry.account_pk)
        .subquery()
    )
    rows = session.execute(
        select(
            LedgerAccount.merchant_id,
            LedgerAccount.currency,
            LedgerAccount.code,
            LedgerAccount.checkpoint_balance,
            func.coalesce(derived.c.total, 0),
        )
        .outerjoin(derived, derived.c.account_pk == LedgerAccount.pk)
        .where(LedgerAccount.checkpoint_balance != func.coalesce(derived.c.total, 0))
        .limit(MAX_EXAMPLES)
    ).all()
    check.problems = [
        f"{merchant} {currency} {code}: checkpoint {stored}, entries sum to {total}"
        for merchant, currency, code, stored, total in rows
    ]
    return check


def _account_totals(session: Session, code: str) -> dict[tuple[str, bool, str], int]:
    """Current balances derived from every entry (not from checkpoints)."""
    rows = session.execute(
        select(
            LedgerAccount.merchant_id,
            LedgerAccount.livemode,
            LedgerAccount.currency,
            func.sum(LedgerEntry.amount),
        )
        .join(LedgerEntry, LedgerEntry.account_pk == LedgerAccount.pk)
        .where(LedgerAccount.code == code)
        .group_by(LedgerAccount.merchant_id, LedgerAccount.livemode, LedgerAccount.currency)
    ).all()
    return {(m, bool(lm), c): int(b) for m, lm, c, b in rows}


def _compare(
    check: Check,
    ledger_side: dict[tuple[str, bool, str], int],
    domain_side: dict[tuple[str, bool, str], int],
    label: str,
) -> Check:
    for key in sorted(set(ledger_side) | set(domain_side)):
        expected, actual = domain_side.get(key, 0), ledger_side.get(key, 0)
        if expected != actual and len(check.problems) < MAX_EXAMPLES:
            merchant, livemode, currency = key
            mode = "live" if livemode else "test"
            check.problems.append(
                f"{merchant} ({mode}) {currency}: ledger {actual}, {label} {expected}"
            )
    return check


def _merchant_balance_matches(session: Session) -> Check:
    check = Check(
        "merchant_balance_matches_balance_transactions",
        "each merchant balance equals the net of its balance transactions",
    )
    rows = session.execute(
        select(
            BalanceTransaction.merchant_id,
            BalanceTransaction.livemode,
            BalanceTransaction.currency,
            func.sum(BalanceTransaction.net),
        ).group_by(
            BalanceTransaction.merchant_id, BalanceTransaction.livemode, BalanceTransaction.currency
        )
    ).all()
    # merchant_balance is a liability (credit-normal): its balance is minus what we owe.
    ledger_side = {k: -v for k, v in _account_totals(session, ledger.MERCHANT_BALANCE).items()}
    return _compare(
        check,
        ledger_side,
        {(m, bool(lm), c): int(s) for m, lm, c, s in rows},
        "balance transactions",
    )


def _fees_match(session: Session) -> Check:
    check = Check("fees_match_balance_transactions", "fee revenue equals the fees charged")
    rows = session.execute(
        select(
            BalanceTransaction.merchant_id,
            BalanceTransaction.livemode,
            BalanceTransaction.currency,
            func.sum(BalanceTransaction.fee),
        ).group_by(
            BalanceTransaction.merchant_id, BalanceTransaction.livemode, BalanceTransaction.currency
        )
    ).all()
    ledger_side = {k: -v for k, v in _account_totals(session, ledger.FEE_REVENUE).items()}
    return _compare(check, ledger_side, {(m, bool(lm), c): int(s) for m, lm, c, s in rows}, "fees")


def _receivable_matches(session: Session) -> Check:
    check = Check(
        "receivable_matches_charges",
        "processor receivable equals captured charges minus succeeded refunds and the amounts "
        "of disputes whose funds are withdrawn",
    )
    captured = session.execute(
        select(
            Charge.merchant_id, Charge.livemode, Charge.currency, func.sum(Charge.amount_captured)
        ).group_by(Charge.merchant_id, Charge.livemode, Charge.currency)
    ).all()
    refunded = session.execute(
        select(Refund.merchant_id, Refund.livemode, Refund.currency, func.sum(Refund.amount))
        .where(Refund.status == "succeeded")
        .group_by(Refund.merchant_id, Refund.livemode, Refund.currency)
    ).all()
    # A chargeback takes its amount back until it is won (`disputes.states.FUNDS_WITHDRAWN`).
    disputed = session.execute(
        select(Dispute.merchant_id, Dispute.livemode, Dispute.currency, func.sum(Dispute.amount))
        .where(Dispute.status.in_(FUNDS_WITHDRAWN))
        .group_by(Dispute.merchant_id, Dispute.livemode, Dispute.currency)
    ).all()
    domain: dict[tuple[str, bool, str], int] = {}
    for m, lm, c, s in captured:
        domain[(m, bool(lm), c)] = domain.get((m, bool(lm), c), 0) + int(s)
    for m, lm, c, s in [*refunded, *disputed]:
        domain[(m, bool(lm), c)] = domain.get((m, bool(lm), c), 0) - int(s)
    return _compare(
        check,
        _account_totals(session, ledger.PROCESSOR_RECEIVABLE),
        domain,
        "charges minus refunds and disputes",
    )


def _holds_match(session: Session) -> Check:
    check = Check(
        "holds_match_open_authorizations",
        "authorization holds equal the capturable amounts of open PaymentIntents",
    )
    rows = session.execute(
        select(
            PaymentIntent.merchant_id,
            PaymentIntent.livemode,
            PaymentIntent.currency,
            func.sum(PaymentIntent.amount_capturable),
        )
        .where(and_(PaymentIntent.status == "requires_capture"))
        .group_by(PaymentIntent.merchant_id, PaymentIntent.livemode, PaymentIntent.currency)
    ).all()
    return _compare(
        check,
        _account_totals(session, ledger.AUTHORIZATION_HOLDS),
        {(m, bool(lm), c): int(s) for m, lm, c, s in rows},
        "open authorizations",
    )


def verify(session: Session) -> Report:
    checks = [
        _transactions_balance(session),
        _currencies_consistent(session),
        _checkpoints_match_entries(session),
        _merchant_balance_matches(session),
        _fees_match(session),
        _receivable_matches(session),
        _holds_match(session),
    ]
    return Report(
        checks=checks,
        transactions=session.scalar(select(func.count(LedgerTransaction.pk))) or 0,
        entries=session.scalar(select(func.count(LedgerEntry.pk))) or 0,
        accounts=session.scalar(select(func.count(LedgerAccount.pk))) or 0,
    )
