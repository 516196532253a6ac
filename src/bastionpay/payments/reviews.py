"""Reviews and labels (issue 7, item 6): the primitives shared by the payment flows.

A Review is opened by a `review` decision and closed exactly once: approved, rejected
(`refunded_as_fraud`), canceled with its PaymentIntent, or refunded. Each closing that says
something about fraud also writes a label, the ground truth `bastionpay risk train
--from-platform` learns from.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.payments.context import PaymentContext
from bastionpay.payments.lookup import get_owned
from bastionpay.payments.models import PaymentIntent
from bastionpay.risk.models import Review, RiskLabel

ClosedReason = Literal["approved", "refunded_as_fraud", "canceled", "refunded"]
Label = Literal["fraud", "legit"]


def get(session: Session, ctx: PaymentContext, review_id: str, *, lock: bool = False) -> Review:
    return get_owned(
        session,
        Review,
        "review",
        review_id,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        for_update=lock,
    )


def close(
    session: Session,
    ctx: PaymentContext,
    intent: PaymentIntent,
    reason: ClosedReason,
    *,
    closed_by: str | None = None,
) -> Review | None:
    if intent.review_id is None:
        return None
    review = session.scalar(select(Review).where(Review.id == intent.review_id).with_for_update())
    intent.review_id = None
    if review is None or not review.open:
        return review
    review.open = False
    review.reason = reason
    review.closed_reason = reason
    review.closed_at = ctx.now
    review.closed_by = closed_by
    return review


def label(
    session: Session, ctx: PaymentContext, payment_intent_id: str, value: Label, source: str
) -> None:
    session.add(
        RiskLabel(
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            payment_intent_id=payment_intent_id,
            label=value,
            source=source,
            created=ctx.now,
        )
    )
