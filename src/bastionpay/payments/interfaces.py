"""The processor connector contract (issue 2, item 9).

Kept small on purpose: the card-vault issue replaces the in-process sandbox with the vault, which
speaks ISO 8583 to the acquirer. Every call is keyed by our own reference (`charge_id` /
`refund_id`) so a retried call can be deduplicated or reversed by the other side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Decline:
    code: str  # Stripe error code: card_declined, expired_card, incorrect_cvc, processing_error…
    decline_code: str  # generic_decline, insufficient_funds, …
    message: str
    network_status: str = "declined_by_network"


@dataclass(frozen=True)
class AuthorizationRequest:
    merchant_id: str
    livemode: bool
    charge_id: str
    processor_token: str
    amount: int
    currency: str


@dataclass(frozen=True)
class AuthorizationResult:
    approved: bool
    reference: str | None = None  # the processor's authorization reference
    authorization_code: str | None = None
    decline: Decline | None = None


@dataclass(frozen=True)
class OperationResult:
    succeeded: bool
    reference: str | None = None
    failure_message: str | None = None


class ProcessorConnector(Protocol):
    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult: ...

    def capture(self, reference: str, amount: int, currency: str) -> OperationResult: ...

    def void(self, reference: str) -> OperationResult: ...

    def refund(
        self, reference: str, refund_id: str, amount: int, currency: str
    ) -> OperationResult: ...
