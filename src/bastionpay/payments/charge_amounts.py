"""How much of a captured charge a refund or a dispute may still take (P2: never more than was
captured, net of what was already refunded)."""

from __future__ import annotations

from typing import Literal

from bastionpay.kernel import money
from bastionpay.kernel.errors import InvalidRequestError
from bastionpay.payments.models import Charge


def take_unrefunded(charge: Charge, amount: int | None, *, by: Literal["Refund", "Dispute"]) -> int:
    """`amount` (default: all that is left) checked against the charge's unrefunded amount,
    with Stripe's error codes. The caller holds the charge locked, so the figure cannot move."""
    remaining = charge.amount_captured - charge.amount_refunded
    if remaining <= 0:
        suffix = "" if by == "Refund" else " It cannot be disputed."
        raise InvalidRequestError(
            f"Charge {charge.id} has already been refunded.{suffix}",
            code="charge_already_refunded",
            param="charge",
        )
    taken = remaining if amount is None else amount
    if taken < 1:
        raise InvalidRequestError(
            f"{by} amount must be a positive integer.",
            code="parameter_invalid_integer",
            param="amount",
        )
    if taken > remaining:
        asked = money.Money(taken, charge.currency).format()
        left = money.Money(remaining, charge.currency).format()
        raise InvalidRequestError(
            f"{by} amount ({asked}) is greater than the unrefunded amount of the charge ({left}).",
            code="amount_too_large",
            param="amount",
        )
    return taken
