"""Refunds: full, partial, and several partials up to the captured amount."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bastionpay.disputes import service as disputes
from bastionpay.kernel.errors import InvalidRequestError, ProcessorError
from bastionpay.kernel.ids import new_id
from bastionpay.ledger import service as ledger
from bastionpay.ledger.models import BalanceTransaction
from bastionpay.payments import reviews
from bastionpay.payments.charge_amounts import take_unrefunded
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.lookup import get_owned
from bastionpay.payments.models import Charge, PaymentIntent, Refund

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def create(
    session: Session,
    ctx: PaymentContext,
    *,
    charge_id: str | None,
    payment_intent_id: str | None,
    amount: int | None,
    reason: str | None,
    metadata: dict[str, Any] | None,
) -> Refund:
    if charge_id is None and payment_intent_id is None:
        raise InvalidRequestError(
            "One of the following params should be provided for this request: payment_intent "
            "or charge.",
            code="parameter_missing",
            param="payment_intent",
        )
    if payment_intent_id is not None:
        intent = get_owned(
            session,
            PaymentIntent,
            "payment_intent",
            payment_intent_id,
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            param="payment_intent",
            for_update=True,
        )
        if intent.latest_charge_id is None or intent.status != "succeeded":
            raise InvalidRequestError(
                f"This PaymentIntent ({intent.id}) does not have a successful charge to refund.",
                code="charge_not_refundable",
                param="payment_intent",
            )
        if charge_id is not None and charge_id != intent.latest_charge_id:
            raise InvalidRequestError(
                "The charge does not belong to the given PaymentIntent.",
                param="charge",
            )
        charge_id = intent.latest_charge_id
    if charge_id is None:  # pragma: no cover - narrowed above
        raise InvalidRequestError("Missing required param: charge.", param="charge")
    # Lock the charge: concurrent refunds of one charge serialize here, so their sum can never
    # exceed what was captured.
    charge = get_owned(
        session,
        Charge,
        "charge",
        charge_id,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        param="charge",
        for_update=True,
    )
    if not charge.captured or charge.status != "succeeded":
        raise InvalidRequestError(
            f"Charge {charge.id} has not been captured; cancel its PaymentIntent instead.",
            code="charge_not_refundable",
            param="charge",
        )
    dispute = disputes.for_charge(session, charge.id) if charge.disputed else None
    if charge.disputed and (dispute is None or not dispute.is_charge_refundable):
        # Stripe's `charge_disputed`: the network already took the money back (a chargeback); a
        # refund would pay the cardholder twice. A charge under inquiry may still be refunded.
        raise InvalidRequestError(
            f"Charge {charge.id} has been charged back; it cannot be refunded.",
            code="charge_disputed",
            param="charge",
        )
    refund_amount = take_unrefunded(charge, amount, by="Refund")
    if charge.processor_reference is None:
        raise ProcessorError("The charge has no processor reference to refund against.")
    refund = Refund(
        id=new_id("re"),
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        created=ctx.now,
        charge_id=charge.id,
        payment_intent_id=charge.payment_intent_id,
        amount=refund_amount,
        currency=charge.currency,
        status="pending",
        reason=reason,
        metadata_=dict(metadata or {}),
    )
    session.add(refund)
    session.flush()
    outcome = ctx.connector.refund(
        charge.processor_reference, refund.id, refund_amount, charge.currency
    )
    if not outcome.succeeded:
        raise ProcessorError(outcome.failure_message or "The processor refused the refund.")
    # A refund cannot be taken back: if this unit of work fails, reconcile by hand.
    ctx.journal.record(f"refund {refund.id} of {refund_amount} on {charge.id}", None)
    if reason == "fraudulent":
        # The merchant says it was fraud: a label for retraining (issue 7, item 6).
        reviews.label(session, ctx, charge.payment_intent_id, "fraud", "refund")
    txn = ledger.post(
        session,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        currency=charge.currency,
        kind="refund",
        source_id=refund.id,
        lines=ledger.refund_lines(refund_amount),
        now=ctx.now,
    )
    balance_txn = BalanceTransaction(
        id=new_id("txn"),
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        created=ctx.now,
        amount=-refund_amount,
        fee=0,
        net=-refund_amount,
        currency=charge.currency,
        type="refund",
        source_id=refund.id,
        description="REFUND FOR CHARGE",
        available_on=ctx.now,
        ledger_transaction_id=txn.id,
    )
    session.add(balance_txn)
    refund.status = "succeeded"
    refund.processor_reference = outcome.reference
    refund.balance_transaction_id = balance_txn.id
    charge.amount_refunded += refund_amount
    if dispute is not None:
        disputes.refunded(session, ctx, dispute)
    return refund


def update_metadata(
    session: Session, ctx: PaymentContext, refund_id: str, metadata: dict[str, Any]
) -> Refund:
    refund = get_owned(
        session,
        Refund,
        "refund",
        refund_id,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        for_update=True,
    )
    refund.metadata_ = metadata
    return refund
