"""Stripe's public test PaymentMethods (shared/reference/test-cards-and-codes.md).

Only the card's display attributes live here — brand, last4, funding, country — never a card number:
the api zone holds no PAN, not even a public test one (ARCHITECTURE). The `behaviour` names how the
sandbox connector answers an authorization for the card; the dispute cards are approved by it (and
by the vault's acquirer, which approves every Luhn-valid number it has no other rule for).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bastionpay.payments.interfaces import Decline


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    funding: str
    country: str
    decline: Decline | None = None
    # Radar's test cards force a risk evaluation: "block", "highest" or "elevated".
    risk: str | None = None
    # Stripe's dispute test cards: once captured, the simulated network opens a dispute with this
    # reason, as an inquiry when the flag is set (`disputes.service.open_for_test_card`).
    dispute: tuple[str, bool] | None = None


def _declined(code: str, decline_code: str, message: str) -> Decline:
    return Decline(code=code, decline_code=decline_code, message=message)


_GENERIC = "Your card was declined."
_AUTHENTICATION_REQUIRED = _declined(
    "authentication_required", "authentication_required", "Your card requires authentication."
)
TEST_CARDS: Final[dict[str, TestCard]] = {
    "pm_card_visa": TestCard("visa", "4242", "credit", "US"),
    "pm_card_visa_debit": TestCard("visa", "5556", "debit", "US"),
    "pm_card_mastercard": TestCard("mastercard", "4444", "credit", "US"),
    "pm_card_mastercard_debit": TestCard("mastercard", "8210", "debit", "US"),
    "pm_card_mastercard_prepaid": TestCard("mastercard", "5100", "prepaid", "US"),
    "pm_card_amex": TestCard("amex", "0005", "credit", "US"),
    "pm_card_discover": TestCard("discover", "1117", "credit", "US"),
    "pm_card_diners": TestCard("diners", "0004", "credit", "US"),
    "pm_card_jcb": TestCard("jcb", "0505", "credit", "JP"),
    "pm_card_unionpay": TestCard("unionpay", "0005", "credit", "CN"),
    "pm_card_chargeDeclined": TestCard(
        "visa", "0002", "credit", "US", _declined("card_declined", "generic_decline", _GENERIC)
    ),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard(
        "visa",
        "9995",
        "credit",
        "US",
        _declined("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    ),
    "pm_card_chargeDeclinedLostCard": TestCard(
        "visa", "9987", "credit", "US", _declined("card_declined", "lost_card", _GENERIC)
    ),
    "pm_card_chargeDeclinedStolenCard": TestCard(
        "visa", "9979", "credit", "US", _declined("card_declined", "stolen_card", _GENERIC)
    ),
    "pm_card_chargeDeclinedExpiredCard": TestCard(
        "visa",
        "0069",
        "credit",
        "US",
        _declined("expired_card", "expired_card", "Your card has expired."),
    ),
    "pm_card_chargeDeclinedIncorrectCvc": TestCard(
        "visa",
        "0127",
        "credit",
        "US",
        _declined("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    ),
    "pm_card_chargeDeclinedProcessingError": TestCard(
        "visa",
        "0119",
        "credit",
        "US",
        _declined(
            "processing_error",
            "processing_error",
            "An error occurred while processing your card. Try again in a little bit.",
        ),
    ),
    # Fraud (Radar-like) test cards (shared/reference).
    "pm_card_radarBlock": TestCard("visa", "0019", "credit", "US", risk="block"),
    "pm_card_riskLevelHighest": TestCard("visa", "4954", "credit", "US", risk="highest"),
    "pm_card_riskLevelElevated": TestCard("visa", "9235", "credit", "US", risk="elevated"),
    # 3-D Secure required (issue 4, item 7): through the vault they ask for authentication; the
    # sandbox has no 3-D Secure and declines them as an issuer would without it.
    "pm_card_authenticationRequired": TestCard(
        "visa", "3184", "credit", "US", _AUTHENTICATION_REQUIRED
    ),
    "pm_card_threeDSecure2Required": TestCard(
        "visa", "3220", "credit", "US", _AUTHENTICATION_REQUIRED
    ),
    # Disputes (docs/disputes.md): the charge succeeds, then the cardholder disputes it.
    "pm_card_createDispute": TestCard(
        "visa", "0259", "credit", "US", dispute=("fraudulent", False)
    ),
    "pm_card_createDisputeProductNotReceived": TestCard(
        "visa", "2685", "credit", "US", dispute=("product_not_received", False)
    ),
    "pm_card_createDisputeInquiry": TestCard(
        "visa", "1976", "credit", "US", dispute=("fraudulent", True)
    ),
    "pm_card_chargeDeclinedVelocityLimitExceeded": TestCard(
        "visa",
        "6975",
        "credit",
        "US",
        _declined("card_declined", "card_velocity_exceeded", _GENERIC),
    ),
}

SANDBOX_TOKEN_PREFIX: Final = "sandbox:"  # noqa: S105 - a token-type prefix, not a secret


def minted_from(processor_token: str) -> str | None:
    """The Stripe test PaymentMethod a card was minted from (`pm_card_radarBlock`, …), if any.

    Sandbox tokens are `sandbox:<name>`; vault tokens of minted test cards are
    `vault:<pm_…>:<name>` (`vault_connector.vault_token`).
    """
    if processor_token.startswith(SANDBOX_TOKEN_PREFIX):
        name: str | None = processor_token.removeprefix(SANDBOX_TOKEN_PREFIX)
    else:
        parts = processor_token.split(":")
        name = parts[2] if len(parts) == 3 and parts[0] == "vault" else None
    return name if name in TEST_CARDS else None
