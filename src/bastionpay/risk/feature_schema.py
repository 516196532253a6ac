"""The risk features: one vocabulary for the payment path, the rules language and the model.

Every feature a payment is scored on is declared here once, with its type, whether the model sees
it, and what it means. The api computes them from its database at payment time
(`risk.features`); the transaction simulator computes the same names from its own history
(`risk.simulator`), and a parity test keeps the two in step (train/serve skew is the classic way a
fraud model silently degrades).

Windows: `hourly` is the last 3,600 s, `daily` the last 86,400 s, both ending just before the
payment being scored (it never counts itself). Counts are per merchant except where noted.
Missing values are None (the model reads them as NaN; the rules treat comparisons with them as
false).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

FeatureType = Literal["number", "boolean", "string", "country"]


@dataclass(frozen=True)
class Feature:
    name: str
    type: FeatureType
    model: bool  # used by the model (ids and free text never are)
    description: str


FEATURES: Final[tuple[Feature, ...]] = (
    # The payment
    Feature("amount", "number", False, "amount in the currency's minor units"),
    Feature("amount_in_usd", "number", True, "amount converted to USD (major units)"),
    Feature("currency", "string", True, "ISO 4217 code, lower case"),
    # The card (BIN attributes as far as the api knows them: brand, funding, issuing country)
    Feature("card_fingerprint", "string", False, "keyed hash of the card number"),
    Feature("card_brand", "string", True, "visa, mastercard, amex, …"),
    Feature("card_funding", "string", True, "credit, debit, prepaid, unknown"),
    Feature("card_country", "country", True, "issuing country (ISO 3166-1 alpha-2)"),
    # Who and from where (supplied by the merchant in radar_options, or from the customer)
    Feature("customer", "string", False, "the Customer id, when there is one"),
    Feature("email", "string", False, "receipt or customer email, lower case"),
    Feature("email_domain", "string", False, "the part after @"),
    Feature("ip_address", "string", False, "the buyer's IP address"),
    Feature("ip_country", "country", True, "country of the buyer's IP address"),
    Feature("billing_country", "country", True, "billing address country"),
    Feature("device_id", "string", False, "the merchant's device identifier"),
    # Geography
    Feature("card_country_mismatch_ip", "boolean", True, "card country differs from IP country"),
    Feature("card_country_mismatch_billing", "boolean", True, "card country differs from billing"),
    Feature("ip_country_mismatch_billing", "boolean", True, "IP country differs from billing"),
    # History of this card, customer and device at this merchant
    Feature("is_new_card_for_customer", "boolean", True, "the customer never used this card"),
    Feature("seconds_since_card_first_seen", "number", True, "0 when the card is new here"),
    Feature("seconds_since_customer_first_seen", "number", True, "0 when the customer is new"),
    Feature("is_new_device", "boolean", True, "device id never seen with this card or customer"),
    # Velocity (attempts = confirmations, whatever their outcome)
    Feature("attempts_per_card_fingerprint_hourly", "number", True, "this card, last hour"),
    Feature("attempts_per_card_fingerprint_daily", "number", True, "this card, last day"),
    Feature("attempts_per_customer_hourly", "number", True, "this customer, last hour"),
    Feature("attempts_per_customer_daily", "number", True, "this customer, last day"),
    Feature("attempts_per_email_daily", "number", True, "this email, last day"),
    Feature("attempts_per_ip_hourly", "number", True, "this IP, last hour"),
    Feature("attempts_per_ip_daily", "number", True, "this IP, last day"),
    Feature("attempts_per_device_daily", "number", True, "this device, last day"),
    Feature("attempts_per_merchant_hourly", "number", True, "the whole merchant, last hour"),
    # Card testing: declines and many cards from one source
    Feature("declines_per_card_fingerprint_hourly", "number", True, "declined, this card, 1 h"),
    Feature("declines_per_card_fingerprint_daily", "number", True, "declined, this card, 1 day"),
    Feature("declines_per_ip_daily", "number", True, "declined from this IP, last day"),
    Feature("cards_per_ip_daily", "number", True, "distinct cards from this IP, last day"),
    Feature("cards_per_customer_daily", "number", True, "distinct cards of this customer, 1 day"),
    # Amount against history (30 days)
    Feature("amount_to_customer_mean", "number", True, "amount ÷ the customer's mean amount"),
    Feature("amount_to_merchant_mean", "number", True, "amount ÷ the merchant's mean amount"),
    # Time in the merchant's zone
    Feature("hour_of_day_local", "number", True, "0–23 in the merchant's time zone"),
    Feature("is_night_time", "boolean", True, "00:00–05:59 in the merchant's time zone"),
)

BY_NAME: Final = {f.name: f for f in FEATURES}
MODEL_FEATURES: Final = tuple(f.name for f in FEATURES if f.model)
CATEGORICAL_MODEL_FEATURES: Final = tuple(
    f.name for f in FEATURES if f.model and f.type in ("string", "country")
)

HOURLY: Final = 3_600
DAILY: Final = 86_400
HISTORY: Final = 30 * DAILY
NIGHT_HOURS: Final = range(0, 6)

# Outputs of scoring, also visible to rules (not model inputs).
OUTPUTS: Final[tuple[Feature, ...]] = (
    Feature("risk_score", "number", False, "0–100 from the model"),
    Feature("risk_level", "string", False, "normal, elevated or highest"),
)
