"""Every number the simulator uses, in one place (docs/risk-simulator.md explains each).

Probabilities are per attempt unless the name says per campaign or per customer. Amounts are in
US dollars and converted to the merchant's currency with the approximate rates of `risk.fx`.
A `(low, high)` pair is a uniform range (integers inclusive).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

Weights = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class MerchantProfile:
    name: str
    timezone: str
    country: str
    currency: str
    secondary_currency: str  # some buyers pay in a neighbouring currency
    secondary_share: float
    median_usd: float  # median basket of a typical customer
    sigma: float  # log-normal spread of one customer's baskets
    daily_volume: float  # legitimate attempts per day (before retries)
    buyer_countries: Weights  # home countries of the customers


MERCHANT_PROFILES: Final[tuple[MerchantProfile, ...]] = (
    MerchantProfile(
        name="books",
        timezone="America/New_York",
        country="US",
        currency="usd",
        secondary_currency="cad",
        secondary_share=0.08,
        median_usd=32.0,
        sigma=0.7,
        daily_volume=900.0,
        buyer_countries=(("US", 0.82), ("CA", 0.08), ("GB", 0.04), ("MX", 0.03), ("DE", 0.03)),
    ),
    MerchantProfile(
        name="fashion",
        timezone="Europe/Paris",
        country="FR",
        currency="eur",
        secondary_currency="gbp",
        secondary_share=0.10,
        median_usd=75.0,
        sigma=0.6,
        daily_volume=600.0,
        buyer_countries=(
            ("FR", 0.55),
            ("DE", 0.15),
            ("BE", 0.08),
            ("ES", 0.08),
            ("IT", 0.07),
            ("NL", 0.07),
        ),
    ),
    MerchantProfile(
        name="games",
        timezone="Asia/Tokyo",
        country="JP",
        currency="jpy",
        secondary_currency="usd",
        secondary_share=0.10,
        median_usd=25.0,
        sigma=0.9,
        daily_volume=500.0,
        buyer_countries=(("JP", 0.80), ("KR", 0.07), ("US", 0.06), ("SG", 0.04), ("AU", 0.03)),
    ),
    MerchantProfile(
        name="electronics",
        timezone="Europe/London",
        country="GB",
        currency="gbp",
        secondary_currency="eur",
        secondary_share=0.10,
        median_usd=180.0,
        sigma=0.9,
        daily_volume=250.0,
        buyer_countries=(("GB", 0.85), ("IE", 0.05), ("FR", 0.04), ("DE", 0.03), ("NL", 0.03)),
    ),
    MerchantProfile(
        name="travel",
        timezone="Australia/Sydney",
        country="AU",
        currency="aud",
        secondary_currency="nzd",
        secondary_share=0.12,
        median_usd=420.0,
        sigma=0.8,
        daily_volume=150.0,
        buyer_countries=(("AU", 0.80), ("NZ", 0.10), ("SG", 0.04), ("GB", 0.03), ("US", 0.03)),
    ),
)

# Relative legitimate traffic by local hour 0-23: quiet nights, a lunchtime and an evening peak.
DIURNAL: Final[tuple[float, ...]] = (
    0.25, 0.15, 0.10, 0.08, 0.08, 0.12, 0.30, 0.55, 0.80, 1.00, 1.10, 1.20,
    1.30, 1.25, 1.15, 1.10, 1.10, 1.20, 1.35, 1.50, 1.55, 1.40, 1.00, 0.60,
)  # fmt: skip

# The simulator's own IP plan: each country owns one first octet, so an address always maps to
# the same country. Synthetic: not a real allocation and not to be used for geolocation.
COUNTRIES: Final[tuple[str, ...]] = (
    "US", "CA", "MX", "BR", "AR", "GB", "IE", "FR", "DE", "ES", "IT", "NL", "BE", "CH", "SE",
    "PL", "RO", "UA", "RU", "TR", "NG", "ZA", "IN", "CN", "JP", "KR", "SG", "ID", "PH", "VN",
    "AU", "NZ",
)  # fmt: skip
IP_FIRST_OCTET: Final = {country: 11 + i * 6 for i, country in enumerate(COUNTRIES)}

# Where stolen cards were issued (card markets are dominated by US and western European cards).
STOLEN_CARD_COUNTRIES: Final[Weights] = (
    ("US", 0.45), ("GB", 0.12), ("CA", 0.08), ("FR", 0.07), ("DE", 0.07), ("AU", 0.06),
    ("JP", 0.05), ("BR", 0.05), ("ES", 0.05),
)  # fmt: skip
# Where attackers' traffic comes from (their own country, proxies and rented servers).
ATTACKER_IP_COUNTRIES: Final[Weights] = (
    ("US", 0.14), ("NG", 0.08), ("RU", 0.08), ("UA", 0.06), ("RO", 0.06), ("BR", 0.08),
    ("VN", 0.08), ("ID", 0.06), ("IN", 0.08), ("CN", 0.06), ("NL", 0.06), ("DE", 0.05),
    ("TR", 0.05), ("PH", 0.06),
)  # fmt: skip

EMAIL_DOMAINS: Final[Weights] = (
    ("gmail.com", 0.45), ("outlook.com", 0.15), ("yahoo.com", 0.12), ("icloud.com", 0.12),
    ("proton.me", 0.04), ("example.net", 0.12),
)  # fmt: skip
ATTACKER_EMAIL_DOMAINS: Final[Weights] = (
    ("gmail.com", 0.35), ("proton.me", 0.15), ("mail.ru", 0.15), ("outlook.com", 0.15),
    ("tempmail.example", 0.20),
)  # fmt: skip

CARD_BRANDS: Final[Weights] = (("visa", 0.55), ("mastercard", 0.38), ("amex", 0.07))
CARD_BRANDS_BY_COUNTRY: Final[dict[str, Weights]] = {
    "US": (("visa", 0.52), ("mastercard", 0.33), ("amex", 0.11), ("discover", 0.04)),
    "JP": (("visa", 0.45), ("mastercard", 0.25), ("jcb", 0.25), ("amex", 0.05)),
}
CARD_FUNDING: Final[Weights] = (("credit", 0.58), ("debit", 0.38), ("prepaid", 0.04))
STOLEN_CARD_FUNDING: Final[Weights] = (("credit", 0.55), ("debit", 0.30), ("prepaid", 0.15))


@dataclass(frozen=True)
class LegitimateParams:
    guest_share: float = 0.15  # checkouts without a Customer (email only)
    returning_share: float = 0.6  # otherwise: an existing customer of the merchant returns
    customer_pool: int = 4_000  # customers remembered per merchant (a random one churns out)
    cards_per_customer: tuple[float, ...] = (0.6, 0.3, 0.1)  # P(1, 2, 3 cards)
    devices_per_customer: tuple[float, ...] = (0.55, 0.35, 0.10)  # P(1, 2, 3 devices)
    foreign_card_share: float = 0.04  # per customer: a card issued outside their home country
    foreign_billing_share: float = 0.03  # per customer: billing address abroad
    traveller_share: float = 0.08  # per customer: sometimes buys from abroad
    abroad_share: float = 0.3  # per purchase of a traveller
    new_card_share: float = 0.03  # a returning customer adds a card
    new_device_share: float = 0.05  # a returning customer uses a new phone/browser
    new_ip_share: float = 0.15  # a returning customer on a new address in their country
    spend_sigma: float = 0.4  # spread of customers' typical baskets around the merchant median
    big_basket_share: float = 0.015  # honest unusually large orders
    big_basket_multiplier: tuple[float, float] = (4.0, 12.0)
    decline_rate: float = 0.035  # honest declines (insufficient funds, expired card)
    prepaid_decline_rate: float = 0.09
    retry_share: float = 0.5  # after an honest decline the buyer tries again
    retry_delay: tuple[int, int] = (20, 300)  # seconds
    retry_other_card_share: float = 0.5  # with another of their cards when they have one
    missing_device_share: float = 0.08  # the merchant sent no device id
    missing_billing_share: float = 0.05  # no billing address collected
    missing_ip_share: float = 0.02  # no IP address supplied


@dataclass(frozen=True)
class CardTestingParams:
    fraud_share: float = 0.30  # share of fraudulent attempts
    attempts: tuple[int, int] = (15, 60)
    mean_gap: float = 12.0  # seconds between attempts (exponential)
    subtle_share: float = 0.2  # per campaign: slow and in daytime
    subtle_attempts: tuple[int, int] = (4, 10)
    subtle_mean_gap: float = 900.0
    night_share: float = 0.65  # per (non-subtle) campaign: moved to the merchant's night
    amount_usd: tuple[float, float] = (0.5, 3.0)
    decline_rate: float = 0.7
    reuse_card_share: float = 0.2  # the next attempt retries the previous card
    ips: tuple[int, int] = (1, 3)  # addresses rotated through (one country)
    no_device_share: float = 0.4  # per campaign: no device id
    guest_share: float = 0.8  # per campaign: guest checkout (else one throwaway customer)
    billing_is_card_country_share: float = 0.5  # else the IP's country


@dataclass(frozen=True)
class AccountTakeoverParams:
    fraud_share: float = 0.20
    attempts: tuple[int, int] = (1, 4)
    mean_gap: float = 400.0
    new_device_share: float = 0.9
    foreign_ip_share: float = 0.75
    new_card_share: float = 0.5  # else the customer's stored card
    amount_multiplier: tuple[float, float] = (2.0, 8.0)  # × the customer's typical basket
    subtle_share: float = 0.2  # per campaign: home-country IP, stored card, 1-2× amount
    decline_rate: float = 0.15


@dataclass(frozen=True)
class VelocityBurstParams:
    fraud_share: float = 0.20
    attempts: tuple[int, int] = (5, 20)
    span: tuple[int, int] = (600, 3_600)  # seconds the burst lasts
    amount_multiplier: tuple[float, float] = (0.3, 5.0)  # × merchant median, log-uniform
    known_card_share: float = 0.3  # a card stolen from one of the merchant's customers
    guest_share: float = 0.6
    same_device_share: float = 0.7  # else a fresh device id per attempt
    ips: tuple[int, int] = (1, 2)
    decline_base: float = 0.1  # the issuer grows suspicious: + step per attempt, capped
    decline_step: float = 0.05
    decline_cap: float = 0.8
    subtle_share: float = 0.2  # per campaign: 3-5 attempts over 3-8 hours
    subtle_attempts: tuple[int, int] = (3, 5)
    subtle_span: tuple[int, int] = (10_800, 28_800)
    billing_is_card_country_share: float = 0.6


@dataclass(frozen=True)
class GeographyMismatchParams:
    fraud_share: float = 0.15
    attempts: tuple[int, int] = (1, 3)
    gap: tuple[int, int] = (60, 900)
    new_card_on_retry_share: float = 0.5
    amount_median_multiplier: float = 1.5  # × merchant median, log-normal
    amount_sigma: float = 0.5
    subtle_share: float = 0.2  # per campaign: billing = card country (only the IP differs)
    guest_share: float = 0.3
    decline_rate: float = 0.2


@dataclass(frozen=True)
class HighValueParams:
    fraud_share: float = 0.15
    attempts: tuple[int, int] = (1, 2)
    gap: tuple[int, int] = (60, 1_800)
    amount_multiplier: tuple[float, float] = (8.0, 40.0)  # × merchant median
    subtle_share: float = 0.2  # per campaign: 3-6× only
    subtle_multiplier: tuple[float, float] = (3.0, 6.0)
    existing_customer_share: float = 0.4  # else a new customer or a guest
    new_card_share: float = 0.8
    new_device_share: float = 0.7
    foreign_ip_share: float = 0.4
    decline_rate: float = 0.25


@dataclass(frozen=True)
class LabelNoise:
    # Fraud that is never disputed or reviewed reaches the training set labelled legitimate.
    missed_fraud: float = 0.05
    # Legitimate payments labelled fraud: "friendly fraud" disputes and reviewers' mistakes.
    false_fraud: float = 0.0015


@dataclass(frozen=True)
class SimulatorConfig:
    legitimate: LegitimateParams = field(default_factory=LegitimateParams)
    card_testing: CardTestingParams = field(default_factory=CardTestingParams)
    account_takeover: AccountTakeoverParams = field(default_factory=AccountTakeoverParams)
    velocity_burst: VelocityBurstParams = field(default_factory=VelocityBurstParams)
    geography_mismatch: GeographyMismatchParams = field(default_factory=GeographyMismatchParams)
    high_value: HighValueParams = field(default_factory=HighValueParams)
    label_noise: LabelNoise = field(default_factory=LabelNoise)
