"""The simulator's records: a raw payment attempt and what the simulator says about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

# What happened to the attempt. The simulator produces only the first two; "blocked" (refused by
# the risk engine before authorization) exists because the api records it and, like an issuer's
# decline, it counts in the decline features.
Outcome = Literal["authorized", "declined", "blocked"]
DECLINED_OUTCOMES: Final = frozenset({"declined", "blocked"})

Scenario = Literal[
    "legitimate",
    "card_testing",
    "account_takeover",
    "velocity_burst",
    "geography_mismatch",
    "high_value",
]
FRAUD_SCENARIOS: Final[tuple[Scenario, ...]] = (
    "card_testing",
    "account_takeover",
    "velocity_burst",
    "geography_mismatch",
    "high_value",
)


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """One confirmation attempt as the api sees it: plain values, never a card number (C1).

    `time` is Unix seconds (UTC). Country codes are ISO 3166-1 alpha-2; `currency` an ISO 4217
    code; `amount` integer minor units. `outcome` is only read by `History.observe`, never when
    the attempt itself is scored (at scoring time it is not known yet).
    """

    time: int
    merchant: str
    amount: int
    currency: str
    card_fingerprint: str
    card_brand: str
    card_funding: str
    card_country: str | None
    customer: str | None
    email: str | None
    ip_address: str | None
    ip_country: str | None
    billing_country: str | None
    device_id: str | None
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class SimulatedPayment:
    """A simulated attempt, its features (computed before it happened), label and scenario.

    `label` is what a merchant would eventually learn (1 fraud, 0 legitimate) *after* label noise;
    `scenario` is the generator's ground truth, and `label_flipped` says whether noise changed
    the label, so a test can tell the two apart. Neither goes into a training file.
    """

    event: PaymentEvent
    features: dict[str, object]
    label: int
    scenario: Scenario
    label_flipped: bool
