"""What happens to a PaymentIntent once the network answered: decline, hold or capture (P2).

Shared by the first confirmation and by the one that follows 3-D Secure (`intents`), so both
book authorizations, captures and declines the same way, inside the caller's unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from bastionpay.disputes import service as disputes
from bastionpay.kernel import money
from bastionpay.kernel.errors import ProcessorError
from bastionpay.kernel.ids import new_id
from bastionpay.ledger import service as ledger
from bastionpay.ledger.models import BalanceTransaction
from bastionpay.payments import screening
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.interfaces import AuthorizationResult, Decline
from bastionpay.payments.models import Charge, PaymentIntent, PaymentMethod
from bastionpay.risk.service import Assessment, RiskEngine


@dataclass(frozen=True)
class ConfirmOutcome:
    intent: PaymentIntent
    decline: Decline | None = None
    charge: Charge | None = None


def merchant_fee(ctx: PaymentContext, amount: int) -> int:
    return money.percentage_fee(amount, ctx.pricing.basis_points, ctx.pricing.fixed)


def book_capture(
    session: Session,
    ctx: PaymentContext,
    intent: PaymentIntent,
    charge: Charge,
    captured: int,
    *,
    preceding: tuple[ledger.Posting, ...] = (),
    method: PaymentMethod | None = None,
) -> None:
    """Post the capture (after any `preceding` postings, in the same statements).

    In test mode a dispute test card's capture opens its dispute here, in the same unit of work
    (`disputes.service.open_for_test_card`); `method` spares looking the card up again.
    """
    fee = merchant_fee(ctx, captured)
    capture = ledger.Posting(
        kind="capture",
        source_id=charge.id,
        lines=ledger.capture_lines(authorized=charge.amount, captured=captured, fee=fee),
    )
    txn = ledger.post_many(
        session,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        currency=intent.currency,
        now=ctx.now,
        postings=[*preceding, capture],
    )[-1]
    balance_txn = BalanceTransaction(
        id=new_id("txn"),
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        created=ctx.now,
        amount=captured,
        fee=fee,
        net=captured - fee,
        currency=intent.currency,
        type="charge",
        source_id=charge.id,
        description=intent.description,
        available_on=ctx.now + ctx.pricing.availability_delay_seconds,
        ledger_transaction_id=txn.id,
    )
    session.add(balance_txn)
    charge.captured = True
    charge.amount_captured = captured
    charge.balance_transaction_id = balance_txn.id
    intent.amount_received = captured
    intent.amount_capturable = 0
    intent.status = "succeeded"
    disputes.open_for_test_card(session, ctx, charge, method)


def last_payment_error(decline: Decline, charge: Charge, method: PaymentMethod) -> dict[str, Any]:
    return {
        "type": "card_error",
        "code": decline.code,
        "decline_code": decline.decline_code,
        "message": decline.message,
        "charge": charge.id,
        "payment_method": {"id": method.id, "object": "payment_method", "type": method.type},
    }


def declined(
    intent: PaymentIntent,
    charge: Charge,
    method: PaymentMethod,
    decline: Decline,
    outcome: dict[str, Any],
) -> ConfirmOutcome:
    charge.status = "failed"
    charge.failure_code = decline.code
    charge.failure_message = decline.message
    charge.outcome = outcome
    intent.status = "requires_payment_method"
    intent.last_payment_error = last_payment_error(decline, charge, method)
    intent.payment_method_id = None
    return ConfirmOutcome(intent=intent, decline=decline, charge=charge)


def capture_with_processor(ctx: PaymentContext, charge: Charge, amount: int) -> None:
    if charge.processor_reference is None:
        raise ProcessorError("The charge has no authorization to capture.")
    reference, currency = charge.processor_reference, charge.currency
    outcome = ctx.connector.capture(reference, amount, currency)
    if not outcome.succeeded:
        raise ProcessorError(outcome.failure_message or "The processor refused the capture.")
    ctx.journal.record(
        f"capture of {amount} {currency} on {reference} for {charge.id}",
        lambda: ctx.connector.refund(reference, f"reversal_{charge.id}", amount, currency),
    )


def after_authorization(
    session: Session,
    ctx: PaymentContext,
    intent: PaymentIntent,
    charge: Charge,
    method: PaymentMethod,
    assessment: Assessment | None,
    result: AuthorizationResult,
    *,
    held: bool,
) -> ConfirmOutcome:
    """Book the network's answer: a decline, an authorization held (review, manual capture) or
    captured at once — state, charge and postings in the caller's unit of work (P2)."""
    risk = assessment.charge_outcome() if assessment is not None else {"risk_level": "normal"}
    if result.pending:
        # Timed out and not yet reversed (issue 4, item 6): `processing` until the janitor sees
        # the reversal through; never succeeded, no posting (nothing is known to be held).
        if assessment is not None:
            RiskEngine.settle(assessment, "processing")
        charge.processor_reference = result.reference
        charge.outcome = {
            "type": None,
            "network_status": None,
            "reason": "network_timeout",
            "seller_message": "The card network did not answer in time; the authorization is "
            "being reversed.",
            **risk,
        }
        intent.status = "processing"
        intent.last_payment_error = None
        return ConfirmOutcome(intent=intent, charge=charge)
    if result.approved and result.reference is not None:
        reference = result.reference
        ctx.journal.record(
            f"authorization {reference} of {charge.id}",
            lambda: ctx.connector.void(reference),
        )
    if not result.approved:
        decline = result.decline or Decline(
            "card_declined", "generic_decline", "Your card was declined."
        )
        if assessment is not None:
            RiskEngine.settle(assessment, "declined")
        outcome = {
            "type": "issuer_declined",
            "network_status": decline.network_status,
            "reason": decline.decline_code,
            "seller_message": "The bank did not return any further details with this decline.",
            **risk,
        }
        return declined(intent, charge, method, decline, outcome)

    charge.status = "succeeded"
    charge.processor_reference = result.reference
    charge.authorization_code = result.authorization_code
    charge.outcome = {
        "type": "manual_review" if held else "authorized",
        "network_status": "approved_by_network",
        "reason": None,
        "seller_message": "Payment held for review." if held else "Payment complete.",
        **risk,
    }
    intent.last_payment_error = None
    authorization = ledger.Posting(
        kind="authorization",
        source_id=charge.id,
        lines=ledger.authorization_lines(intent.amount),
    )
    if assessment is not None:
        RiskEngine.settle(assessment, "review" if held else "authorized")
        if held:
            screening.open_review(session, ctx, intent, charge, assessment)
    if intent.capture_method == "manual" or held:
        ledger.post_many(
            session,
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            currency=intent.currency,
            now=ctx.now,
            postings=[authorization],
        )
        intent.status = "requires_capture"
        intent.amount_capturable = intent.amount
    else:
        capture_with_processor(ctx, charge, intent.amount)
        # Authorization and capture stay two ledger transactions, written together.
        book_capture(
            session, ctx, intent, charge, intent.amount, preceding=(authorization,), method=method
        )
    return ConfirmOutcome(intent=intent, charge=charge)
