"""The PaymentIntent state machine (Stripe's), with charges and ledger postings in one transaction.

requires_payment_method → requires_confirmation → (requires_action) → processing →
requires_capture → succeeded, and canceled from any state before success. A decline returns the
intent to requires_payment_method with `last_payment_error` and a failed Charge. Every change here
happens inside the caller's unit of work: state, charge, ledger postings and balance transaction
commit together or not at all (SECURITY-REQUIREMENTS P2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from bastionpay.customers.models import Customer
from bastionpay.kernel import money
from bastionpay.kernel.errors import InvalidRequestError, ProcessorError, ResourceMissing
from bastionpay.kernel.ids import new_id, random_base62
from bastionpay.ledger import service as ledger
from bastionpay.ledger.models import BalanceTransaction
from bastionpay.payments import methods, reviews, screening
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.interfaces import AuthorizationRequest, Decline
from bastionpay.payments.lookup import get_owned
from bastionpay.payments.models import Charge, PaymentIntent, PaymentMethod
from bastionpay.risk.service import RiskEngine

CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
CANCELABLE = (
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "requires_capture",
)
CONFIRMABLE = ("requires_payment_method", "requires_confirmation")
UPDATABLE = ("requires_payment_method", "requires_confirmation", "requires_action")


@dataclass(frozen=True)
class IntentFields:
    amount: int | None = None
    currency: str | None = None
    customer: str | None = None
    payment_method: str | None = None
    description: str | None = None
    receipt_email: str | None = None
    statement_descriptor: str | None = None
    capture_method: str | None = None
    payment_method_types: tuple[str, ...] | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class ConfirmOutcome:
    intent: PaymentIntent
    decline: Decline | None = None
    charge: Charge | None = None


def check_amount(amount: int, currency: str, *, param: str = "amount") -> None:
    minimum = money.minimum_amount(currency)
    if amount < minimum:
        shown = money.Money(minimum, currency).format()
        raise InvalidRequestError(
            f"Amount must be at least {shown}", code="amount_too_small", param=param
        )
    if amount > money.MAXIMUM_AMOUNT:
        raise InvalidRequestError(
            f"Amount must be no more than {money.Money(money.MAXIMUM_AMOUNT, currency).format()}",
            code="amount_too_large",
            param=param,
        )


def check_currency(currency: str) -> str:
    try:
        return money.normalize_currency(currency)
    except money.UnknownCurrency:
        raise InvalidRequestError(
            f"Invalid currency: {currency[:10].lower()}. BastionPay supports ISO 4217 currency "
            "codes in lower case, e.g. usd.",
            code="parameter_invalid",
            param="currency",
        ) from None


def _unexpected_state(intent: PaymentIntent, action: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"You cannot {action} this PaymentIntent because it has a status of {intent.status}.",
        code="payment_intent_unexpected_state",
        param=None,
        extra={"payment_intent_status": intent.status},
    )


def _customer(session: Session, ctx: PaymentContext, customer_id: str) -> Customer:
    customer = get_owned(
        session,
        Customer,
        "customer",
        customer_id,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        param="customer",
    )
    if customer.deleted:
        raise ResourceMissing("customer", customer_id, param="customer")
    return customer


def _attach_payment_method(
    session: Session, ctx: PaymentContext, intent: PaymentIntent, payment_method_id: str
) -> PaymentMethod:
    method = methods.resolve(session, ctx, payment_method_id, param="payment_method")
    if (
        method.customer_id is not None
        and intent.customer_id is not None
        and method.customer_id != intent.customer_id
    ):
        raise InvalidRequestError(
            "The provided PaymentMethod belongs to a different Customer.",
            code="payment_method_unexpected_state",
            param="payment_method",
        )
    if method.customer_id is not None and intent.customer_id is None:
        raise InvalidRequestError(
            "The provided PaymentMethod is attached to a Customer; pass that customer as well.",
            code="parameter_missing",
            param="customer",
        )
    intent.payment_method_id = method.id
    return method


def get(
    session: Session, ctx: PaymentContext, intent_id: str, *, lock: bool = False
) -> PaymentIntent:
    return get_owned(
        session,
        PaymentIntent,
        "payment_intent",
        intent_id,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        for_update=lock,
    )


def create(
    session: Session, ctx: PaymentContext, fields: IntentFields
) -> tuple[PaymentIntent, PaymentMethod | None]:
    """A new PaymentIntent, and its PaymentMethod (if given) so confirm needn't reload it."""
    if fields.amount is None:
        raise InvalidRequestError(
            "Missing required param: amount.", code="parameter_missing", param="amount"
        )
    if fields.currency is None:
        raise InvalidRequestError(
            "Missing required param: currency.", code="parameter_missing", param="currency"
        )
    currency = check_currency(fields.currency)
    check_amount(fields.amount, currency)
    intent = PaymentIntent(
        id=new_id("pi"),
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        created=ctx.now,
        amount=fields.amount,
        currency=currency,
        status="requires_payment_method",
        capture_method=fields.capture_method or "automatic",
        payment_method_types=list(fields.payment_method_types or ("card",)),
        description=fields.description,
        receipt_email=fields.receipt_email,
        statement_descriptor=fields.statement_descriptor,
        metadata_=dict(fields.metadata or {}),
        confirmation_method="automatic",  # set here: rendered before any flush applies defaults
        amount_capturable=0,
        amount_received=0,
        client_secret_suffix=random_base62(24),
    )
    if fields.customer is not None:
        intent.customer_id = _customer(session, ctx, fields.customer).id
    method = None
    if fields.payment_method is not None:
        method = _attach_payment_method(session, ctx, intent, fields.payment_method)
        intent.status = "requires_confirmation"
    session.add(intent)
    return intent, method


def _locked(session: Session, ctx: PaymentContext, intent: str | PaymentIntent) -> PaymentIntent:
    """The intent, row-locked: loaded here from its id, or already loaded (and locked) by a view."""
    if isinstance(intent, PaymentIntent):
        return intent
    return get(session, ctx, intent, lock=True)


def update(
    session: Session,
    ctx: PaymentContext,
    intent_id: str | PaymentIntent,
    fields: IntentFields,
    metadata: dict[str, Any] | None,
) -> PaymentIntent:
    intent = _locked(session, ctx, intent_id)
    money_fields = (
        fields.amount,
        fields.currency,
        fields.customer,
        fields.payment_method,
        fields.capture_method,
        fields.payment_method_types,
    )
    if any(value is not None for value in money_fields) and intent.status not in UPDATABLE:
        raise _unexpected_state(intent, "update")
    if fields.currency is not None:
        intent.currency = check_currency(fields.currency)
    if fields.amount is not None:
        check_amount(fields.amount, intent.currency)
        intent.amount = fields.amount
    elif fields.currency is not None:
        check_amount(intent.amount, intent.currency)
    if fields.customer is not None:
        intent.customer_id = _customer(session, ctx, fields.customer).id
    if fields.capture_method is not None:
        intent.capture_method = fields.capture_method
    if fields.payment_method_types is not None:
        intent.payment_method_types = list(fields.payment_method_types)
    if fields.payment_method is not None:
        _attach_payment_method(session, ctx, intent, fields.payment_method)
        intent.status = "requires_confirmation"
    if fields.description is not None:
        intent.description = fields.description
    if fields.receipt_email is not None:
        intent.receipt_email = fields.receipt_email
    if fields.statement_descriptor is not None:
        intent.statement_descriptor = fields.statement_descriptor
    if metadata is not None:
        intent.metadata_ = metadata
    return intent


def _fee(ctx: PaymentContext, amount: int) -> int:
    return money.percentage_fee(amount, ctx.pricing.basis_points, ctx.pricing.fixed)


def _book_capture(
    session: Session,
    ctx: PaymentContext,
    intent: PaymentIntent,
    charge: Charge,
    captured: int,
    *,
    preceding: tuple[ledger.Posting, ...] = (),
) -> None:
    """Post the capture (after any `preceding` postings, in the same statements)."""
    fee = _fee(ctx, captured)
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


def _last_payment_error(decline: Decline, charge: Charge, method: PaymentMethod) -> dict[str, Any]:
    return {
        "type": "card_error",
        "code": decline.code,
        "decline_code": decline.decline_code,
        "message": decline.message,
        "charge": charge.id,
        "payment_method": {"id": method.id, "object": "payment_method", "type": method.type},
    }


def confirm(
    session: Session,
    ctx: PaymentContext,
    intent_id: str | PaymentIntent,
    payment_method: str | None = None,
    *,
    method: PaymentMethod | None = None,
    risk_inputs: screening.RiskInputs | None = None,
) -> ConfirmOutcome:
    intent = _locked(session, ctx, intent_id)
    if intent.status not in CONFIRMABLE:
        raise _unexpected_state(intent, "confirm")
    if payment_method is not None:
        method = _attach_payment_method(session, ctx, intent, payment_method)
    if intent.payment_method_id is None:
        raise InvalidRequestError(
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "Update it with a payment_method and then confirm it again.",
            code="payment_intent_unexpected_state",
            param="payment_method",
        )
    if method is None or method.id != intent.payment_method_id:
        method = get_owned(
            session,
            PaymentMethod,
            "PaymentMethod",
            intent.payment_method_id,
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
        )
    intent.status = "processing"
    charge = Charge(
        id=new_id("ch"),
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        created=ctx.now,
        payment_intent_id=intent.id,
        customer_id=intent.customer_id,
        payment_method_id=method.id,
        amount=intent.amount,
        amount_captured=0,
        amount_refunded=0,
        currency=intent.currency,
        status="pending",
        captured=False,
        description=intent.description,
        metadata_={},
        outcome={},
    )
    session.add(charge)
    # Risk first (issue 7): a blocked payment never reaches the network.
    assessment = screening.screen(session, ctx, intent, charge, method, risk_inputs)
    risk = assessment.charge_outcome() if assessment is not None else {"risk_level": "normal"}
    intent.latest_charge_id = charge.id
    if assessment is not None and assessment.action == "block":
        RiskEngine.settle(assessment, "blocked")
        return _declined(
            intent, charge, method, screening.FRAUDULENT, screening.blocked_outcome(assessment)
        )
    # Fail closed (P3): an exception from the processor propagates and the unit of work rolls
    # everything back; no charge or posting survives a failed authorization call.
    result = ctx.connector.authorize(
        AuthorizationRequest(
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            charge_id=charge.id,
            processor_token=method.processor_token,
            amount=intent.amount,
            currency=intent.currency,
        )
    )
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
        return _declined(intent, charge, method, decline, outcome)

    charge.status = "succeeded"
    charge.processor_reference = result.reference
    charge.authorization_code = result.authorization_code
    held = assessment is not None and assessment.action in ("review", "request_3ds")
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
        _capture_with_processor(ctx, charge, intent.amount)
        # Authorization and capture stay two ledger transactions, written together.
        _book_capture(session, ctx, intent, charge, intent.amount, preceding=(authorization,))
    return ConfirmOutcome(intent=intent, charge=charge)


def _declined(
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
    intent.last_payment_error = _last_payment_error(decline, charge, method)
    intent.payment_method_id = None
    return ConfirmOutcome(intent=intent, decline=decline, charge=charge)


def _capture_with_processor(ctx: PaymentContext, charge: Charge, amount: int) -> None:
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


def capture(
    session: Session,
    ctx: PaymentContext,
    intent_id: str | PaymentIntent,
    amount_to_capture: int | None,
    *,
    reviewed: bool = False,
) -> PaymentIntent:
    intent = _locked(session, ctx, intent_id)
    if intent.status != "requires_capture":
        raise _unexpected_state(intent, "capture")
    if intent.review_id is not None and not reviewed:
        # Held by risk (issue 7): only the review's approval releases the money.
        raise InvalidRequestError(
            f"This PaymentIntent is held for review ({intent.review_id}); approve the review "
            "before capturing it.",
            code="payment_intent_unexpected_state",
        )
    amount = intent.amount_capturable if amount_to_capture is None else amount_to_capture
    if amount < 1:
        raise InvalidRequestError(
            "amount_to_capture must be a positive integer.",
            code="parameter_invalid_integer",
            param="amount_to_capture",
        )
    if amount > intent.amount_capturable:
        raise InvalidRequestError(
            f"The amount to capture ({amount}) is greater than the amount capturable "
            f"({intent.amount_capturable}).",
            code="amount_too_large",
            param="amount_to_capture",
        )
    if intent.latest_charge_id is None:  # pragma: no cover - requires_capture implies a charge
        raise ProcessorError("The PaymentIntent has no charge to capture.")
    charge = get_owned(
        session,
        Charge,
        "charge",
        intent.latest_charge_id,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        for_update=True,
    )
    _capture_with_processor(ctx, charge, amount)
    _book_capture(session, ctx, intent, charge, amount)
    return intent


def cancel(
    session: Session, ctx: PaymentContext, intent_id: str, reason: str | None
) -> PaymentIntent:
    intent = get(session, ctx, intent_id, lock=True)
    if intent.status not in CANCELABLE:
        raise _unexpected_state(intent, "cancel")
    if intent.status == "requires_capture" and intent.latest_charge_id is not None:
        charge = get_owned(
            session,
            Charge,
            "charge",
            intent.latest_charge_id,
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            for_update=True,
        )
        if charge.processor_reference is not None:
            outcome = ctx.connector.void(charge.processor_reference)
            if not outcome.succeeded:
                raise ProcessorError(outcome.failure_message or "The processor refused the void.")
            # A void cannot be taken back: if this unit of work fails, reconcile by hand.
            ctx.journal.record(f"void of {charge.processor_reference} for {charge.id}", None)
        ledger.post(
            session,
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            currency=intent.currency,
            kind="void",
            source_id=charge.id,
            lines=ledger.release_lines(charge.amount),
            now=ctx.now,
        )
    intent.status = "canceled"
    intent.amount_capturable = 0
    intent.cancellation_reason = reason
    intent.canceled_at = ctx.now
    if intent.review_id is not None:
        reviews.close(session, ctx, intent, "canceled")
    if reason == "fraudulent":
        reviews.label(session, ctx, intent.id, "fraud", "cancel")
    return intent
