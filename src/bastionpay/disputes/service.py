"""Disputes: opened and decided by the card network, answered by the merchant (docs/disputes.md).

There is no real network: an operator (`bastionpay disputes open|resolve`) plays its part, and in
test mode Stripe's dispute test cards and evidence magic values do. Every step runs inside the
caller's unit of work and never commits (ARCHITECTURE): the dispute row, its ledger postings and
balance transactions (P2), the risk label (issue 7) and the audit event (L1) commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.api.params import merge_metadata
from bastionpay.audit import events as audit
from bastionpay.audit.events import Action, ActorType, Origin
from bastionpay.disputes import evidence as ev
from bastionpay.disputes import states
from bastionpay.disputes.models import Dispute
from bastionpay.kernel.errors import InvalidRequestError
from bastionpay.kernel.ids import new_id
from bastionpay.ledger import service as ledger
from bastionpay.ledger.models import BalanceTransaction
from bastionpay.payments import reviews
from bastionpay.payments.charge_amounts import take_unrefunded
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.lookup import get_owned
from bastionpay.payments.models import Charge, PaymentMethod
from bastionpay.payments.test_cards import TEST_CARDS, minted_from

# How long the merchant has to answer (Stripe's window is set by the network, typically 7–21
# days; the simulated network gives the shortest).
RESPONSE_WINDOW_SECONDS: Final = 7 * 24 * 3600


@dataclass(frozen=True)
class Actor:
    """Who did it, for the audit log (L1): an operator's CLI, the simulated network, a key."""

    type: ActorType
    id: str
    origin: Origin = audit.SYSTEM_ORIGIN


NETWORK: Final = Actor("system", "card_network")


def _audit(
    session: Session,
    ctx: PaymentContext,
    action: Action,
    dispute: Dispute,
    actor: Actor,
    **details: Any,
) -> None:
    audit.record(
        session,
        audit.AuditEvent(
            actor_type=actor.type,
            actor_id=actor.id,
            action=action,
            outcome="success",
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            target_type="dispute",
            target_id=dispute.id,
            origin=actor.origin,
            details={
                "charge": dispute.charge_id,
                "amount": dispute.amount,
                "currency": dispute.currency,
                "reason": dispute.reason,
                "status": dispute.status,
                **details,
            },
        ),
    )


def get(session: Session, ctx: PaymentContext, dispute_id: str, *, lock: bool = False) -> Dispute:
    """The merchant's own dispute; another merchant's id is 404 (I5)."""
    return get_owned(
        session,
        Dispute,
        "dispute",
        dispute_id,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        for_update=lock,
    )


def for_charge(session: Session, charge_id: str) -> Dispute | None:
    return session.scalar(select(Dispute).where(Dispute.charge_id == charge_id))


def _balance_transaction(
    session: Session,
    ctx: PaymentContext,
    dispute: Dispute,
    *,
    kind: str,
    sign: int,
    description: str,
) -> None:
    """Post the ledger transaction and its merchant-facing BalanceTransaction (P2)."""
    # A reversal returns the fee that was withdrawn, even if the fee setting changed meanwhile.
    fee = ctx.pricing.dispute_fee if sign < 0 else _withdrawn_fee(session, dispute)
    lines = (
        ledger.dispute_lines(dispute.amount, fee)
        if sign < 0
        else ledger.dispute_reversal_lines(dispute.amount, fee)
    )
    txn = ledger.post(
        session,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        currency=dispute.currency,
        kind=kind,
        source_id=dispute.id,
        lines=lines,
        now=ctx.now,
    )
    row = BalanceTransaction(
        id=new_id("txn"),
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        created=ctx.now,
        amount=sign * dispute.amount,
        fee=-sign * fee,
        net=sign * (dispute.amount + fee),
        currency=dispute.currency,
        type="adjustment",
        source_id=dispute.id,
        description=description,
        available_on=ctx.now,  # a chargeback is debited at once, as on Stripe
        ledger_transaction_id=txn.id,
    )
    session.add(row)


def _withdrawn_fee(session: Session, dispute: Dispute) -> int:
    withdrawal = session.scalar(
        select(BalanceTransaction).where(
            BalanceTransaction.merchant_id == dispute.merchant_id,
            BalanceTransaction.source_id == dispute.id,
            BalanceTransaction.amount < 0,
        )
    )
    if withdrawal is None:  # pragma: no cover - callers reverse only withdrawn disputes
        raise InvalidRequestError(f"Dispute {dispute.id} has no withdrawal to reverse.")
    return int(withdrawal.fee)


def _withdraw(session: Session, ctx: PaymentContext, dispute: Dispute) -> None:
    """The chargeback: funds and fee out of the merchant's balance; a fraud label (issue 7)."""
    _balance_transaction(
        session,
        ctx,
        dispute,
        kind="dispute",
        sign=-1,
        description=f"Chargeback withdrawal for {dispute.charge_id}",
    )
    if dispute.reason == "fraudulent":
        # The cardholder says they did not make this payment: ground truth for retraining
        # (`bastionpay risk train --from-platform`), in the same transaction as the chargeback.
        reviews.label(session, ctx, dispute.payment_intent_id, "fraud", "dispute")


def open_dispute(
    session: Session,
    ctx: PaymentContext,
    charge: Charge | str,
    *,
    reason: str,
    amount: int | None = None,
    inquiry: bool = False,
    actor: Actor = NETWORK,
) -> Dispute:
    """The network opens a dispute on a captured charge: a chargeback, or an inquiry."""
    if reason not in states.REASONS:
        raise InvalidRequestError(
            f"Invalid reason: must be one of {', '.join(states.REASONS)}",
            code="parameter_invalid",
            param="reason",
        )
    if isinstance(charge, str):
        # Locked: a refund of the same charge serializes with this (`refunds.create` locks it
        # too), so a charge is never both fully refunded and charged back. A Charge object comes
        # from a capture, which holds it locked already.
        charge = get_owned(
            session,
            Charge,
            "charge",
            charge,
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            param="charge",
            for_update=True,
        )
    if not charge.captured or charge.status != "succeeded":
        raise InvalidRequestError(
            f"Charge {charge.id} has not been captured; only captured charges can be disputed.",
            code="charge_not_disputable",
            param="charge",
        )
    if charge.disputed:
        raise InvalidRequestError(
            f"Charge {charge.id} has already been disputed.",
            code="charge_disputed",
            param="charge",
        )
    disputed = take_unrefunded(charge, amount, by="Dispute")
    dispute = Dispute(
        id=new_id("dp"),
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        created=ctx.now,
        charge_id=charge.id,
        payment_intent_id=charge.payment_intent_id,
        amount=disputed,
        currency=charge.currency,
        reason=reason,
        status="warning_needs_response" if inquiry else "needs_response",
        evidence={},
        due_by=ctx.now + RESPONSE_WINDOW_SECONDS,
        submission_count=0,
        metadata_={},
    )
    session.add(dispute)
    charge.disputed = True
    if not inquiry:
        _withdraw(session, ctx, dispute)
    _audit(session, ctx, "disputes.dispute.create", dispute, actor, inquiry=inquiry)
    return dispute


def open_for_test_card(
    session: Session, ctx: PaymentContext, charge: Charge, method: PaymentMethod | None
) -> Dispute | None:
    """Stripe's dispute test cards (`pm_card_createDispute`, …): a dispute opens as soon as the
    charge is captured (Stripe opens it moments later). Test mode only; nothing for other cards."""
    if ctx.livemode:
        return None
    token = (
        method.processor_token
        if method is not None and method.id == charge.payment_method_id
        else session.scalar(
            select(PaymentMethod.processor_token).where(
                PaymentMethod.id == charge.payment_method_id
            )
        )
    )
    name = minted_from(token) if token is not None else None
    card = TEST_CARDS.get(name) if name is not None else None
    if card is None or card.dispute is None:
        return None
    reason, inquiry = card.dispute
    return open_dispute(session, ctx, charge, reason=reason, inquiry=inquiry)


def refunded(session: Session, ctx: PaymentContext, dispute: Dispute) -> None:
    """The merchant refunded a charge under inquiry: the cardholder has their money back, so the
    inquiry closes and can no longer escalate into a chargeback (no double repayment)."""
    if dispute.status in states.INQUIRY_OPEN:
        dispute.status = "warning_closed"
        _audit(session, ctx, "disputes.dispute.close", dispute, NETWORK, via="refund")


def _refuse_unless(dispute: Dispute, allowed: frozenset[str], action: str) -> None:
    if dispute.status not in allowed:
        raise InvalidRequestError(
            f"You cannot {action} this dispute because it has a status of {dispute.status}.",
            code="dispute_unexpected_state",
            extra={"dispute_status": dispute.status},
        )


def update(
    session: Session,
    ctx: PaymentContext,
    dispute_id: str,
    *,
    evidence: dict[str, str] | None,
    metadata: dict[str, str] | None,
    submit: bool | None,
) -> Dispute:
    """Stage or submit evidence, change metadata (Stripe's `POST /v1/disputes/{id}`).

    Like Stripe, evidence is submitted when it is sent unless `submit=false` stages it; metadata
    can change at any time, evidence only while the dispute needs a response.
    """
    dispute = get(session, ctx, dispute_id, lock=True)
    submitting = submit if submit is not None else evidence is not None
    if evidence is not None or submitting:
        _refuse_unless(dispute, states.NEEDS_RESPONSE, "submit evidence for")
        if ctx.now > dispute.due_by:
            raise InvalidRequestError(
                "The deadline to respond to this dispute has passed.",
                code="dispute_past_due",
            )
    if evidence is not None:
        dispute.evidence = ev.merge(dispute.evidence, evidence)
    if metadata is not None:
        dispute.metadata_ = merge_metadata(dispute.metadata_, metadata)
    if submitting:
        dispute.status = states.SUBMITTED[dispute.status]
        dispute.submission_count += 1
        text = dispute.evidence.get("uncategorized_text")
        if not ctx.livemode and text in (ev.WINNING, ev.LOSING):
            # Stripe's test-mode magic values: the simulated network decides at once.
            resolve(session, ctx, dispute, "won" if text == ev.WINNING else "lost")
    return dispute


def close(session: Session, ctx: PaymentContext, dispute_id: str) -> Dispute:
    """The merchant accepts the dispute (Stripe's `close`): a chargeback is lost, an inquiry
    closes; nothing more moves (the funds of a chargeback were withdrawn when it opened)."""
    dispute = get(session, ctx, dispute_id, lock=True)
    _refuse_unless(dispute, states.NEEDS_RESPONSE, "close")
    dispute.status = "warning_closed" if dispute.status in states.INQUIRY_OPEN else "lost"
    return dispute


def resolve(
    session: Session,
    ctx: PaymentContext,
    dispute: Dispute | str,
    outcome: states.Outcome,
    *,
    actor: Actor = NETWORK,
) -> Dispute:
    """The network decides.

    Chargeback: `won` returns the amount and the fee (a `dispute_reversal`), `lost` keeps them.
    Inquiry: `won` closes it (`warning_closed`); `lost` escalates it into a chargeback
    (`needs_response`, funds withdrawn, a new response window).
    """
    if isinstance(dispute, str):
        dispute = get(session, ctx, dispute, lock=True)
    _refuse_unless(dispute, states.OPEN, "resolve")
    if dispute.status in states.INQUIRY_OPEN:
        if outcome == "won":
            dispute.status = "warning_closed"
        else:
            dispute.status = "needs_response"
            dispute.due_by = ctx.now + RESPONSE_WINDOW_SECONDS
            _withdraw(session, ctx, dispute)
    elif outcome == "won":
        dispute.status = "won"
        _balance_transaction(
            session,
            ctx,
            dispute,
            kind="dispute_reversal",
            sign=1,
            description=f"Chargeback reversal for {dispute.charge_id}",
        )
        if dispute.reason == "fraudulent":
            # The network upheld the payment against the fraud claim: the latest label wins.
            reviews.label(session, ctx, dispute.payment_intent_id, "legit", "dispute")
    else:
        # Lost: the withdrawal stands. A non-fraud loss says nothing about fraud: no label.
        dispute.status = "lost"
    _audit(session, ctx, "disputes.dispute.resolve", dispute, actor, outcome=outcome)
    return dispute
