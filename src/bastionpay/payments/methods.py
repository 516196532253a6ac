"""PaymentMethods: Stripe's test PaymentMethods, attach and detach."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from bastionpay.customers.models import Customer
from bastionpay.kernel.errors import InvalidRequestError, ResourceMissing
from bastionpay.kernel.ids import new_id
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.lookup import get_owned
from bastionpay.payments.models import PaymentMethod
from bastionpay.payments.test_cards import SANDBOX_TOKEN_PREFIX, TEST_CARDS


def _test_card_expiry(now: int) -> tuple[int, int]:
    # Stripe's test cards take any future expiry; use December three years ahead.
    year = dt.datetime.fromtimestamp(now, dt.UTC).year + 3
    return 12, year


def resolve(
    session: Session, ctx: PaymentContext, payment_method_id: str, *, param: str
) -> PaymentMethod:
    """Load a PaymentMethod, or mint one from a Stripe test PaymentMethod id in test mode.

    Like Stripe, `pm_card_visa` is not itself an object: each use creates a new `pm_…` with the test
    card's attributes.
    """
    card = TEST_CARDS.get(payment_method_id)
    if card is not None:
        if ctx.livemode:
            raise InvalidRequestError(
                f"No such PaymentMethod: '{payment_method_id}'; a similar object exists in test "
                "mode, but a live mode key was used to make this request.",
                code="resource_missing",
                param=param,
            )
        exp_month, exp_year = _test_card_expiry(ctx.now)
        method = PaymentMethod(
            id=new_id("pm"),
            merchant_id=ctx.merchant_id,
            livemode=False,
            created=ctx.now,
            type="card",
            card_brand=card.brand,
            card_last4=card.last4,
            card_exp_month=exp_month,
            card_exp_year=exp_year,
            card_funding=card.funding,
            card_country=card.country,
            # Keyed per merchant: the same card has the same fingerprint within one merchant only.
            fingerprint=ctx.fingerprints.hexdigest(f"{ctx.merchant_id}:{payment_method_id}")[:16],
            processor_token=SANDBOX_TOKEN_PREFIX + payment_method_id,
            billing_details={},
            metadata_={},
        )
        session.add(method)
        return method
    try:
        return get_owned(
            session,
            PaymentMethod,
            "PaymentMethod",
            payment_method_id,
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            param=param,
        )
    except ResourceMissing:
        raise ResourceMissing("PaymentMethod", payment_method_id, param=param) from None


def _locked(session: Session, ctx: PaymentContext, payment_method_id: str) -> PaymentMethod:
    return get_owned(
        session,
        PaymentMethod,
        "PaymentMethod",
        payment_method_id,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        for_update=True,
    )


def attach(
    session: Session, ctx: PaymentContext, payment_method_id: str, customer_id: str
) -> PaymentMethod:
    if payment_method_id in TEST_CARDS:
        # Like Stripe, attaching `pm_card_visa` attaches a fresh PaymentMethod minted from it.
        method = resolve(session, ctx, payment_method_id, param="payment_method")
    else:
        method = _locked(session, ctx, payment_method_id)
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
    if method.customer_id is not None and method.customer_id != customer.id:
        raise InvalidRequestError(
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
            param="payment_method",
        )
    method.customer_id = customer.id
    return method


def detach(session: Session, ctx: PaymentContext, payment_method_id: str) -> PaymentMethod:
    method = _locked(session, ctx, payment_method_id)
    if method.customer_id is None:
        raise InvalidRequestError(
            "The payment method you provided is not attached to a customer so detachment is "
            "impossible.",
            code="payment_method_unexpected_state",
            param="payment_method",
        )
    method.customer_id = None
    return method
