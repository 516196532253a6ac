"""The PaymentIntent state machine (Stripe's), with charges and ledger postings in one transaction.

requires_payment_method → requires_confirmation → (requires_action) → processing →
requires_capture → succeeded, and canceled from any state before success. A decline returns the
intent to requires_payment_method with `last_payment_error` and a failed Charge. Every change here
happens inside the caller's unit of work: state, charge, ledger postings and balance transaction
commit together or not at all (SECURITY-REQUIREMENTS P2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from bastionpay.customers.models import Customer
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel import money
from bastionpay.kernel.errors import InvalidRequestError, ProcessorError, ResourceMissing
from bastionpay.kernel.ids import new_id, random_base62
from bastionpay.ledger import service as ledger
from bastionpay.payments import methods, reviews, screening, three_d_secure
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.interfaces import AuthorizationRequest, Decline
from bastionpay.payments.journal import ProcessorJournal
from bastionpay.payments.lookup import get_owned
from bastionpay.payments.models import Charge, PaymentIntent, PaymentMethod
from bastionpay.payments.settlement import (
    ConfirmOutcome,
    after_authorization,
    book_capture,
    capture_with_processor,
    declined,
)
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
    if any(value is not None for value in money_fields) and intent.three_d_secure is not None:
        # The authentication is bound to the amount and card it was made for (issue 4, item 7):
        # changing them ends the attempt; the next confirmation authenticates again.
        three_d_secure.abandon(session, ctx, intent, three_d_secure.SYSTEM)
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


def _new_charge(
    ctx: PaymentContext, intent: PaymentIntent, method: PaymentMethod, charge_id: str
) -> Charge:
    return Charge(
        id=charge_id,
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


def _intent_method(session: Session, ctx: PaymentContext, intent: PaymentIntent) -> PaymentMethod:
    if intent.payment_method_id is None:  # pragma: no cover - checked by the callers
        raise ProcessorError("The PaymentIntent has no payment method.")
    return get_owned(
        session,
        PaymentMethod,
        "PaymentMethod",
        intent.payment_method_id,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
    )


def confirm(
    session: Session,
    ctx: PaymentContext,
    intent_id: str | PaymentIntent,
    payment_method: str | None = None,
    *,
    method: PaymentMethod | None = None,
    risk_inputs: screening.RiskInputs | None = None,
    return_url: str | None = None,
    actor: three_d_secure.Actor = three_d_secure.SYSTEM,
) -> ConfirmOutcome:
    return_url = three_d_secure.check_return_url(return_url)
    intent = _locked(session, ctx, intent_id)
    if intent.status == "requires_action" and intent.three_d_secure is not None:
        if payment_method is None:
            # Stripe's "confirm again after the redirect": finish the payment if the cardholder
            # has answered the challenge (issue 4, item 7).
            return resume(session, ctx, intent, actor=actor)
        # A new payment method abandons the pending 3-D Secure attempt (as on Stripe).
        three_d_secure.abandon(session, ctx, intent, actor)
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
        method = _intent_method(session, ctx, intent)
    intent.status = "processing"
    previous_charge = intent.latest_charge_id
    charge = _new_charge(ctx, intent, method, new_id("ch"))
    session.add(charge)
    # Risk first (issue 7): a blocked payment never reaches the network.
    assessment = screening.screen(session, ctx, intent, charge, method, risk_inputs)
    intent.latest_charge_id = charge.id
    if assessment is not None and assessment.action == "block":
        RiskEngine.settle(assessment, "blocked")
        return declined(
            intent, charge, method, screening.FRAUDULENT, screening.blocked_outcome(assessment)
        )
    # request_3ds goes through the vault's 3-D Secure; a connector without it (the sandbox test
    # double) holds the payment for review instead (screening.py, docs/risk.md).
    wants_3ds = assessment is not None and assessment.action == "request_3ds"
    via_3ds = wants_3ds and ctx.connector.supports_three_d_secure
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
            request_three_d_secure="any" if via_3ds else "automatic",
            return_url=three_d_secure.processor_return_url(intent, return_url),
        )
    )
    if result.authentication is not None:
        # Nothing was authorized: the cardholder authenticates first (issue 4, item 7).
        if assessment is not None:
            RiskEngine.settle(assessment, "requires_action")
        # Stripe has no charge before the authentication either: the id stays reserved for it.
        session.flush()
        session.delete(charge)
        intent.latest_charge_id = previous_charge
        three_d_secure.require_action(
            session, ctx, intent, charge.id, result.authentication, return_url, assessment, actor
        )
        return ConfirmOutcome(intent=intent)
    held = assessment is not None and (assessment.action == "review" or wants_3ds)
    return after_authorization(session, ctx, intent, charge, method, assessment, result, held=held)


def resume(
    session: Session,
    ctx: PaymentContext,
    intent: PaymentIntent,
    *,
    actor: three_d_secure.Actor = three_d_secure.SYSTEM,
) -> ConfirmOutcome:
    """Finish a `requires_action` PaymentIntent whose 3-D Secure has ended, in this unit of work.

    Pending: nothing changes. Failed or expired: back to `requires_payment_method` with Stripe's
    `payment_intent_authentication_failure`, nothing sent to the network. Succeeded: the rules
    run again with `three_ds_completed` (a request_3ds rule does not loop), then the reserved
    charge is authorized with the authentication — whose ECI and cryptogram the vault attaches
    — and booked exactly as a first confirmation is (`settlement`).
    """
    attempt = three_d_secure.Attempt.of(intent)
    status = ctx.connector.authentication(ctx.merchant_id, attempt.authentication).status
    if status == "requires_action":
        return ConfirmOutcome(intent=intent)
    method = _intent_method(session, ctx, intent)
    intent.three_d_secure = None
    if status != "succeeded":
        three_d_secure.failed(session, ctx, intent, method, attempt, status, actor)
        return ConfirmOutcome(intent=intent)
    three_d_secure.succeeded(session, ctx, intent, attempt, actor)
    assessment = None
    if ctx.risk is not None and attempt.risk_assessment is not None:
        assessment = ctx.risk.reassess(
            session,
            attempt.risk_assessment,
            now=ctx.now,
            authenticated=True,
            policy=ctx.risk_policy,
        )
    intent.status = "processing"
    charge = _new_charge(ctx, intent, method, attempt.charge)
    session.add(charge)
    intent.latest_charge_id = charge.id
    if assessment is not None and assessment.action == "block":
        RiskEngine.settle(assessment, "blocked")
        return declined(
            intent, charge, method, screening.FRAUDULENT, screening.blocked_outcome(assessment)
        )
    result = ctx.connector.authorize(
        AuthorizationRequest(
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            charge_id=charge.id,
            processor_token=method.processor_token,
            amount=intent.amount,
            currency=intent.currency,
            authentication=attempt.authentication,
        )
    )
    if result.authentication is not None:
        raise ProcessorError("The processor asked for authentication again.")
    held = assessment is not None and assessment.action == "review"
    return after_authorization(session, ctx, intent, charge, method, assessment, result, held=held)


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
    capture_with_processor(ctx, charge, amount)
    book_capture(session, ctx, intent, charge, amount)
    return intent


def cancel(
    session: Session, ctx: PaymentContext, intent_id: str, reason: str | None
) -> PaymentIntent:
    intent = get(session, ctx, intent_id, lock=True)
    if intent.status not in CANCELABLE:
        raise _unexpected_state(intent, "cancel")
    if intent.three_d_secure is not None:
        three_d_secure.abandon(session, ctx, intent, three_d_secure.SYSTEM)
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


TIMED_OUT = Decline(
    "processing_error",
    "try_again_later",
    "The card network did not answer in time and the authorization was reversed; nothing was "
    "charged. Try again.",
)


def settle_processing(
    session: Session, ctx: PaymentContext, intent: PaymentIntent, charge: Charge
) -> bool:
    """A `processing` intent whose timed-out authorization is now reversed: fail it cleanly.

    The janitor calls this once the vault says the reversal was acknowledged (issue 4, item 6):
    the charge fails with Stripe's `processing_error` / `try_again_later` and the intent returns
    to `requires_payment_method`, ready for another attempt. False if it was settled already.
    """
    if intent.status != "processing" or charge.status != "pending":
        return False
    method = _intent_method(session, ctx, intent)
    outcome = {
        **charge.outcome,
        "type": "issuer_declined",
        "network_status": "declined_by_network",
        "reason": TIMED_OUT.decline_code,
        "seller_message": "The card network did not answer in time; the authorization was "
        "reversed.",
    }
    declined(intent, charge, method, TIMED_OUT, outcome)
    return True


def refresh(
    ctx: PaymentContext,
    intent: PaymentIntent,
    render: Callable[[Session, PaymentIntent], dict[str, Any]],
    *,
    actor: three_d_secure.Actor = three_d_secure.SYSTEM,
) -> dict[str, Any] | None:
    """A retrieve of a `requires_action` intent whose 3-D Secure has ended: finish it now.

    Stripe's intent is already `succeeded` (or `requires_capture`, or back to
    `requires_payment_method`) when the merchant retrieves it after the redirect, so ours must be
    too. A retrieve runs in a read-only transaction; the state change runs in a unit of work of
    its own — one transaction for state, charge, postings and audit (P2) — with its own processor
    journal, so a failure undoes exactly what it did. The vault is asked first, outside any
    write lock, and nothing is written while the challenge is still open. Returns the rendered
    intent, or None when nothing changed.
    """
    if intent.status != "requires_action" or intent.three_d_secure is None or ctx.db is None:
        return None
    attempt = three_d_secure.Attempt.of(intent)
    if ctx.connector.authentication(ctx.merchant_id, attempt.authentication).status == (
        "requires_action"
    ):
        return None
    own = replace(ctx, journal=ProcessorJournal())
    try:
        with unit_of_work(ctx.db, write=True) as session:
            locked = get(session, own, intent.id, lock=True)
            if locked.status == "requires_action" and locked.three_d_secure is not None:
                resume(session, own, locked, actor=actor)
            return render(session, locked)
    except Exception:
        own.journal.compensate()
        raise
