"""In-process sandbox connector that honours Stripe's test PaymentMethods.

It stands in for the processor until the card-vault issue puts the vault and the ISO 8583
acquirer on the real path; afterwards it remains a unit-test double. It is deterministic: the
token names the test card, and the test card decides approval or the decline.

It has no 3-D Secure (that lives in the vault, issue 4 item 7): cards that require authentication
decline with `authentication_required`, as an issuer does when none was performed, and the
payments code holds a risk rule's `request_3ds` for review instead (`supports_three_d_secure`).
"""

from __future__ import annotations

import secrets
from typing import Literal

from bastionpay.kernel.errors import ResourceMissing
from bastionpay.payments.interfaces import (
    AuthenticationStatus,
    AuthorizationRequest,
    AuthorizationResult,
    Decline,
    OperationResult,
)
from bastionpay.payments.test_cards import SANDBOX_TOKEN_PREFIX, TEST_CARDS


class SandboxConnector:
    supports_three_d_secure = False

    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult:
        name = request.processor_token.removeprefix(SANDBOX_TOKEN_PREFIX)
        card = TEST_CARDS.get(name)
        if card is None:
            return AuthorizationResult(
                approved=False,
                decline=Decline("card_declined", "generic_decline", "Your card was declined."),
            )
        if card.decline is not None:
            return AuthorizationResult(approved=False, decline=card.decline)
        return AuthorizationResult(
            approved=True,
            reference=f"sbx_auth_{secrets.token_hex(8)}",
            authorization_code=f"{secrets.randbelow(1_000_000):06d}",
        )

    def authentication(self, merchant_id: str, authentication_id: str) -> AuthenticationStatus:
        raise ResourceMissing("authentication", authentication_id)

    def settle_pending(self, reference: str) -> Literal["pending", "reversed"]:
        return "reversed"  # the sandbox never leaves an authorization pending

    def capture(self, reference: str, amount: int, currency: str) -> OperationResult:
        return OperationResult(succeeded=True, reference=reference)

    def void(self, reference: str) -> OperationResult:
        return OperationResult(succeeded=True, reference=reference)

    def refund(self, reference: str, refund_id: str, amount: int, currency: str) -> OperationResult:
        return OperationResult(succeeded=True, reference=f"sbx_refund_{secrets.token_hex(8)}")
