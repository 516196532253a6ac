"""The processor connector contract (issue 2, item 9).

Kept small on purpose: the card-vault issue replaces the in-process sandbox with the vault, which
speaks ISO 8583 to the acquirer. Every call is keyed by our own reference (`charge_id` /
`refund_id`) so a retried call can be deduplicated or reversed by the other side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


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
    # 3-D Secure (issue 4, item 7): "any" asks for authentication whatever the card (a risk
    # rule's request_3ds); "automatic" leaves it to the card's issuer. `authentication` names a
    # succeeded authentication of this very attempt, whose result the processor attaches.
    request_three_d_secure: Literal["automatic", "any"] = "automatic"
    authentication: str | None = None
    return_url: str | None = None


@dataclass(frozen=True)
class AuthenticationRequired:
    """Nothing was authorized: the cardholder must first authenticate at `url`."""

    id: str  # the processor's authentication id
    url: str
    reason: str  # card_required | requested


@dataclass(frozen=True)
class AuthenticationStatus:
    id: str
    status: Literal["requires_action", "succeeded", "failed", "expired"]


@dataclass(frozen=True)
class AuthorizationResult:
    approved: bool
    reference: str | None = None  # the processor's authorization reference
    authorization_code: str | None = None
    decline: Decline | None = None
    authentication: AuthenticationRequired | None = None  # then not approved, nothing held
    # Neither the answer nor the reversal of a timed-out authorization was acknowledged: whether
    # the issuer holds the money is unknown until the reversal gets through (issue 4, item 6).
    pending: bool = False


@dataclass(frozen=True)
class OperationResult:
    succeeded: bool
    reference: str | None = None
    failure_message: str | None = None


class ProcessorConnector(Protocol):
    # Whether `authorize` can answer `AuthenticationRequired` (the vault can; the sandbox cannot).
    supports_three_d_secure: bool

    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult: ...

    def authentication(self, merchant_id: str, authentication_id: str) -> AuthenticationStatus: ...

    def settle_pending(self, reference: str) -> Literal["pending", "reversed"]:
        """Push a pending authorization's reversal once more; where it stands afterwards."""
        ...

    def capture(self, reference: str, amount: int, currency: str) -> OperationResult: ...

    def void(self, reference: str) -> OperationResult: ...

    def refund(
        self, reference: str, refund_id: str, amount: int, currency: str
    ) -> OperationResult: ...
