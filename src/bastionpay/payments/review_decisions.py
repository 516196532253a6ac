"""Approving and rejecting reviews (issue 7, item 6), for the API and the CLI alike."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bastionpay.kernel.errors import InvalidRequestError
from bastionpay.payments import intents, reviews
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.models import PaymentIntent
from bastionpay.risk.models import Review


def _open_review(
    session: Session, ctx: PaymentContext, review_id: str
) -> tuple[Review, PaymentIntent]:
    review = reviews.get(session, ctx, review_id, lock=True)
    if not review.open:
        raise InvalidRequestError(
            f"This review is already closed ({review.closed_reason}).",
            code="review_already_closed",
        )
    intent = intents.get(session, ctx, review.payment_intent_id, lock=True)
    return review, intent


def approve(session: Session, ctx: PaymentContext, review_id: str, by: str) -> Review:
    """Release the payment: capture it now if the merchant asked for automatic capture."""
    review, intent = _open_review(session, ctx, review_id)
    if intent.capture_method != "manual":
        intents.capture(session, ctx, intent, None, reviewed=True)
    reviews.close(session, ctx, intent, "approved", closed_by=by)
    reviews.label(session, ctx, intent.id, "legit", "review")
    return review


def reject(session: Session, ctx: PaymentContext, review_id: str, by: str) -> Review:
    """Void the held authorization and label the payment as fraud."""
    review, intent = _open_review(session, ctx, review_id)
    intents.cancel(session, ctx, intent.id, "fraudulent")  # voids, labels, closes as canceled
    # The same (identity-mapped) review object: record why it was closed.
    review.reason = review.closed_reason = "refunded_as_fraud"
    review.closed_by = by
    return review
