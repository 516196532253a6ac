"""Reading the ground truth: each payment's latest label (`risk_labels`, issue 7).

Labels are appended, never edited: a reviewer's decision, a fraudulent refund or cancellation, a
dispute. A payment may have several; the latest wins (a later chargeback overrides an approval).
Retraining reads them all; a back-test reads only those of the payments it replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.risk.models import RiskLabel

# Payment ids per query: under SQLite's bound-parameter limit, with room to spare.
CHUNK: Final = 500


def latest_labels(
    session: Session,
    *,
    livemode: bool,
    merchant_id: str | None = None,
    payment_intent_ids: Sequence[str] | None = None,
) -> dict[str, str]:
    """`payment_intent_id → "fraud" | "legit"`: one merchant's or every merchant's (None), for
    the given payments only when `payment_intent_ids` is set."""
    query = select(RiskLabel.payment_intent_id, RiskLabel.label).where(
        RiskLabel.livemode.is_(livemode)
    )
    if merchant_id is not None:
        query = query.where(RiskLabel.merchant_id == merchant_id)
    chunks = (
        [query]
        if payment_intent_ids is None
        else [
            query.where(RiskLabel.payment_intent_id.in_(payment_intent_ids[i : i + CHUNK]))
            for i in range(0, len(payment_intent_ids), CHUNK)
        ]
    )
    labels: dict[str, str] = {}
    for chunk in chunks:
        # Ascending insertion order: a later label overwrites an earlier one.
        for payment_intent_id, label in session.execute(chunk.order_by(RiskLabel.pk)):
            labels[payment_intent_id] = label
    return labels
