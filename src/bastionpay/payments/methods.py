"""PaymentMethods: Stripe's test PaymentMethods, cards from the vault, attach and detach.

With a card vault configured (`Settings.vault_url`) every card PaymentMethod is a vault record and
the api keeps only its token and metadata (issue 4, item 4): a test PaymentMethod (`pm_card_visa`)
asks the vault to create the card from Stripe's public test number, and a `pm_…` the api has never
seen (made by the vault's hosted fields) is looked up in the vault, for this merchant, and recorded
on first use. Without a vault the in-process sandbox tokens remain (the api's own tests).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastionpay.customers.models import Customer
from bastionpay.kernel.errors import InvalidRequestError, ResourceMissing
from bastionpay.kernel.ids import new_id
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.lookup import get_owned
from bastionpay.payments.models import PaymentMethod
from bastionpay.payments.test_cards import SANDBOX_TOKEN_PREFIX, TEST_CARDS
from bastionpay.payments.vault_connector import VaultCard, card_vault, vault_token


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
        vault = card_vault(ctx.connector)
        if vault is not None:
            in_vault, created = vault.test_card(ctx.merchant_id, payment_method_id)
            method = _from_vault(
                ctx,
                in_vault,
                vault_token(in_vault.id, payment_method_id),
                # The first use's PaymentMethod is the vault record itself; later uses are new
                # PaymentMethods on the same record (Stripe: each use of `pm_card_visa` is new).
                id=in_vault.id if created else new_id("pm"),
            )
            session.add(method)
            return method
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
        found = _import_from_vault(session, ctx, payment_method_id)
        if found is not None:
            return found
        raise ResourceMissing("PaymentMethod", payment_method_id, param=param) from None


def _from_vault(
    ctx: PaymentContext, card: VaultCard, token: str, *, id: str | None = None
) -> PaymentMethod:
    """The api's record of a vault card: the token plus what may be shown, never the number."""
    return PaymentMethod(
        # The vault's id is the PaymentMethod's id (docs/vault.md), except for a test card's
        # later uses, which share its record; the token always names the vault record.
        id=id or card.id,
        merchant_id=ctx.merchant_id,
        livemode=card.livemode,
        created=ctx.now,
        type="card",
        card_brand=card.brand,
        card_last4=card.last4,
        card_exp_month=card.exp_month,
        card_exp_year=card.exp_year,
        card_funding=card.funding,
        card_country=card.country,
        fingerprint=card.fingerprint,  # the vault's keyed per-merchant fingerprint (C3)
        processor_token=token,
        billing_details={},
        metadata_={},
    )


def _import_from_vault(
    session: Session, ctx: PaymentContext, payment_method_id: str
) -> PaymentMethod | None:
    """A `pm_…` made by the vault's hosted fields, recorded on first use (None: not the vault's).

    The vault answers only for this merchant's cards (another merchant's id is a 404 there too),
    and a card of the other mode is not found, as for any object.
    """
    vault = card_vault(ctx.connector)
    if vault is None:
        return None
    card = vault.payment_method(ctx.merchant_id, payment_method_id)
    if card is None or card.livemode != ctx.livemode:
        return None
    method = _from_vault(ctx, card, vault_token(card.id))
    try:
        # A savepoint: two first uses at once — one inserts, the other reads what it inserted.
        with session.begin_nested():
            session.add(method)
    except IntegrityError:
        return get_owned(
            session,
            PaymentMethod,
            "PaymentMethod",
            payment_method_id,
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
        )
    return method


def _locked(session: Session, ctx: PaymentContext, payment_method_id: str) -> PaymentMethod:
    try:
        return get_owned(
            session,
            PaymentMethod,
            "PaymentMethod",
            payment_method_id,
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            for_update=True,
        )
    except ResourceMissing:
        found = _import_from_vault(session, ctx, payment_method_id)
        if found is None:
            raise
        return found


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
