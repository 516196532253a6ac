"""Stripe's dispute reasons and statuses, and which statuses mean what (docs/disputes.md).

Two kinds of dispute share the object: an *inquiry* (`warning_*`: the issuer asks questions,
no money moves yet) and a *chargeback* (the network takes the funds back at once and the merchant
may fight it). An inquiry that the network escalates becomes a chargeback.
"""

from __future__ import annotations

from typing import Final, Literal

Reason = Literal[
    "fraudulent",
    "product_not_received",
    "duplicate",
    "subscription_canceled",
    "product_unacceptable",
    "credit_not_processed",
    "unrecognized",
    "general",
]
REASONS: Final[tuple[Reason, ...]] = Reason.__args__  # type: ignore[attr-defined]

Status = Literal[
    "warning_needs_response",
    "warning_under_review",
    "warning_closed",
    "needs_response",
    "under_review",
    "won",
    "lost",
]
Outcome = Literal["won", "lost"]

# The merchant may still add evidence, submit it, or accept the dispute.
NEEDS_RESPONSE: Final = frozenset({"needs_response", "warning_needs_response"})
# Still undecided: the network may resolve it.
OPEN: Final = NEEDS_RESPONSE | {"under_review", "warning_under_review"}
INQUIRY_OPEN: Final = frozenset({"warning_needs_response", "warning_under_review"})
# The disputed amount is out of the merchant's balance (and out of the processor receivable):
# from the chargeback until it is won. `ledger verify` derives the receivable from this.
FUNDS_WITHDRAWN: Final = ("needs_response", "under_review", "lost")

# After a submission (Stripe's names).
SUBMITTED: Final[dict[str, Status]] = {
    "needs_response": "under_review",
    "warning_needs_response": "warning_under_review",
}


def is_inquiry(status: str) -> bool:
    """Inquiries carry Stripe's `warning_` statuses, open or closed; chargebacks never do."""
    return status.startswith("warning_")
