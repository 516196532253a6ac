"""Risk screening of a confirmation (issue 7, item 5): signals in, decision applied.

Decisions and what they do to the PaymentIntent:
- `allow`: authorize as usual.
- `block`: nothing is sent to the network; the charge fails with Stripe's `card_declined` /
  `fraudulent` and `outcome.type = "blocked"`; the intent returns to `requires_payment_method`.
- `review`: authorized but held: the intent stays in `requires_capture` with an open Review,
  whatever its capture method; `POST /v1/reviews/{id}/approve` captures (automatic capture) or
  releases it to the merchant (manual capture); rejecting voids it. Capturing while the review is
  open is refused.
- `request_3ds`: the payment goes through the vault's 3-D Secure (issue 4, item 7): nothing is
  authorized until the cardholder authenticates; then the rules run again with
  `three_ds_completed=True` and `:is_3ds_authenticated:` (so the rule does not ask twice) and
  their allow / block / review applies (`intents.resume`). With a connector that has no
  3-D Secure — the sandbox test double, `bastionpay up --no-vault` — the payment is held for
  review instead, the conservative reading of "verify first".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.customers.models import Customer
from bastionpay.kernel.ids import new_id
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.interfaces import Decline
from bastionpay.payments.models import Charge, PaymentIntent, PaymentMethod
from bastionpay.payments.test_cards import TEST_CARDS, minted_from
from bastionpay.risk.features import PaymentSignals
from bastionpay.risk.models import Review
from bastionpay.risk.service import Assessment, TestRisk

DEFAULT_BLOCK_HIGHEST = "rule_default_block_highest_risk"  # risk.rules.defaults
FRAUDULENT = Decline(
    "card_declined", "fraudulent", "Your card was declined.", network_status="not_sent_to_network"
)


@dataclass(frozen=True)
class RiskInputs:
    """What the merchant told us about the buyer (`radar_options`)."""

    ip_address: str | None = None
    ip_country: str | None = None
    device_id: str | None = None


def _test_risk(ctx: PaymentContext, method: PaymentMethod) -> TestRisk | None:
    name = None if ctx.livemode else minted_from(method.processor_token)
    card = TEST_CARDS.get(name) if name is not None else None
    return cast("TestRisk | None", card.risk if card else None)


def _email(session: Session, intent: PaymentIntent) -> str | None:
    if intent.receipt_email:
        return intent.receipt_email
    if intent.customer_id is None:
        return None
    email: str | None = session.scalar(
        select(Customer.email).where(Customer.id == intent.customer_id)
    )
    return email


def _billing_country(method: PaymentMethod) -> str | None:
    address = (method.billing_details or {}).get("address") or {}
    country = address.get("country") if isinstance(address, dict) else None
    return str(country).upper() if country else None


def screen(
    session: Session,
    ctx: PaymentContext,
    intent: PaymentIntent,
    charge: Charge,
    method: PaymentMethod,
    inputs: RiskInputs | None,
) -> Assessment | None:
    if ctx.risk is None:
        return None
    inputs = inputs or RiskInputs()
    signals = PaymentSignals(
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        now=ctx.now,
        amount=intent.amount,
        currency=intent.currency,
        card_fingerprint=method.fingerprint,
        card_brand=method.card_brand,
        card_funding=method.card_funding,
        card_country=method.card_country,
        customer_id=intent.customer_id,
        email=_email(session, intent),
        ip_address=inputs.ip_address,
        ip_country=inputs.ip_country.upper() if inputs.ip_country else None,
        billing_country=_billing_country(method),
        device_id=inputs.device_id,
        timezone=ctx.timezone,
    )
    return ctx.risk.assess(
        session,
        signals,
        payment_intent_id=intent.id,
        charge_id=charge.id,
        policy=ctx.risk_policy,
        test_risk=_test_risk(ctx, method),
    )


def blocked_outcome(assessment: Assessment) -> dict[str, Any]:
    rule = assessment.rule or {}
    return {
        "type": "blocked",
        "network_status": "not_sent_to_network",
        "reason": "highest_risk_level" if rule.get("id") == DEFAULT_BLOCK_HIGHEST else "rule",
        "seller_message": "BastionPay blocked this payment as too risky.",
        **assessment.charge_outcome(),
    }


def open_review(
    session: Session,
    ctx: PaymentContext,
    intent: PaymentIntent,
    charge: Charge,
    assessment: Assessment,
) -> Review:
    review = Review(
        id=new_id("prv"),
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        created=ctx.now,
        payment_intent_id=intent.id,
        charge_id=charge.id,
        open=True,
        opened_reason="rule",
        reason="rule",
        rule=assessment.rule,
    )
    session.add(review)
    intent.review_id = review.id
    return review
