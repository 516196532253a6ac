"""The simulated world: merchants, their customers, cards, devices and addresses.

`World` owns the random generator and everything a scenario draws from; the legitimate buyers
live here too (`legitimate`, `retry`), the fraud scenarios in `fraud.py`, the stream that merges
them in `generator.py`. Numbers come from `params.py`.
"""

from __future__ import annotations

import datetime as dt
import random
from bisect import bisect_right
from dataclasses import dataclass, replace
from itertools import accumulate
from zoneinfo import ZoneInfo

from bastionpay.kernel.money import MAXIMUM_AMOUNT, exponent, minimum_amount
from bastionpay.risk.fx import usd_per_unit
from bastionpay.risk.simulator.events import Outcome, PaymentEvent
from bastionpay.risk.simulator.params import (
    ATTACKER_EMAIL_DOMAINS,
    ATTACKER_IP_COUNTRIES,
    CARD_BRANDS,
    CARD_BRANDS_BY_COUNTRY,
    CARD_FUNDING,
    COUNTRIES,
    EMAIL_DOMAINS,
    IP_FIRST_OCTET,
    MERCHANT_PROFILES,
    STOLEN_CARD_COUNTRIES,
    STOLEN_CARD_FUNDING,
    MerchantProfile,
    SimulatorConfig,
    Weights,
)


class Choice:
    """A weighted choice with precomputed cumulative weights (random.choices re-sums each call)."""

    __slots__ = ("cum", "names", "total")

    def __init__(self, weights: Weights) -> None:
        self.names = [name for name, _ in weights]
        self.cum = list(accumulate(w for _, w in weights))
        self.total = self.cum[-1]

    def __call__(self, rng: random.Random) -> str:
        return self.names[bisect_right(self.cum, rng.random() * self.total)]


@dataclass(frozen=True, slots=True)
class Card:
    fingerprint: str
    brand: str
    funding: str
    country: str


@dataclass(slots=True)
class Customer:
    id: str | None  # None: a guest checkout
    email: str
    home: str
    billing: str
    cards: list[Card]
    devices: list[str]
    ips: list[str]
    traveller: bool
    basket_usd: float  # this customer's typical basket


@dataclass(slots=True)
class Merchant:
    index: int
    id: str
    profile: MerchantProfile
    zone: ZoneInfo
    buyers: Choice
    customers: list[Customer]
    next_customer: int = 0


def merchant_ids(merchants: int) -> list[str]:
    """The simulated merchants' ids, in profile order (cycling with a suffix beyond five)."""
    ids = []
    for i in range(merchants):
        name = MERCHANT_PROFILES[i % len(MERCHANT_PROFILES)].name
        rounds = i // len(MERCHANT_PROFILES)
        ids.append(f"acct_sim_{name}" + (f"_{rounds}" if rounds else ""))
    return ids


def merchant_timezones(merchants: int) -> dict[str, str]:
    """Merchant id → IANA zone, as `History` needs it to replay a simulated stream."""
    return {
        mid: MERCHANT_PROFILES[i % len(MERCHANT_PROFILES)].timezone
        for i, mid in enumerate(merchant_ids(merchants))
    }


class World:
    """The simulated merchants and their buyers, and the building blocks of every attempt."""

    def __init__(self, seed: int, merchants: int) -> None:
        self.cfg = SimulatorConfig()
        # A seeded, reproducible simulation: nothing here is a secret.
        self.rng = random.Random(seed)  # noqa: S311
        self.merchants = [
            Merchant(
                index=i,
                id=mid,
                profile=(profile := MERCHANT_PROFILES[i % len(MERCHANT_PROFILES)]),
                zone=ZoneInfo(profile.timezone),
                buyers=Choice(profile.buyer_countries),
                customers=[],
            )
            for i, mid in enumerate(merchant_ids(merchants))
        ]
        self.pick_stolen_country = Choice(STOLEN_CARD_COUNTRIES)
        self.pick_attacker_country = Choice(ATTACKER_IP_COUNTRIES)
        self.pick_email_domain = Choice(EMAIL_DOMAINS)
        self.pick_attacker_domain = Choice(ATTACKER_EMAIL_DOMAINS)
        self.pick_funding = Choice(CARD_FUNDING)
        self.pick_stolen_funding = Choice(STOLEN_CARD_FUNDING)
        self.pick_brand = {c: Choice(w) for c, w in CARD_BRANDS_BY_COUNTRY.items()}
        self.pick_default_brand = Choice(CARD_BRANDS)

    def fingerprint(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def device(self) -> str:
        return f"dev_{self.rng.getrandbits(48):012x}"

    def ip(self, country: str) -> str:
        x = self.rng.getrandbits(24)
        return f"{IP_FIRST_OCTET[country]}.{x >> 16}.{(x >> 8) & 255}.{x & 255}"

    def email(self, attacker: bool = False) -> str:
        domain = (self.pick_attacker_domain if attacker else self.pick_email_domain)(self.rng)
        return f"u{self.rng.getrandbits(40):010x}@{domain}"

    def card(self, country: str, *, stolen: bool = False) -> Card:
        brand = self.pick_brand.get(country, self.pick_default_brand)(self.rng)
        funding = (self.pick_stolen_funding if stolen else self.pick_funding)(self.rng)
        return Card(self.fingerprint(), brand, funding, country)

    def stolen_card(self) -> Card:
        return self.card(self.pick_stolen_country(self.rng), stolen=True)

    def other_country(self, *avoid: str) -> str:
        while True:
            country = COUNTRIES[self.rng.randrange(len(COUNTRIES))]
            if country not in avoid:
                return country

    def attacker_country(self, *avoid: str) -> str:
        for _ in range(8):
            country = self.pick_attacker_country(self.rng)
            if country not in avoid:
                return country
        return self.other_country(*avoid)

    def customer_id(self, merchant: Merchant) -> str:
        merchant.next_customer += 1
        return f"cus_sim{merchant.index}x{merchant.next_customer:07d}"

    def minor(self, usd: float, currency: str) -> int:
        """USD → the currency's minor units (simulation input only: floats never touch money)."""
        minor = round(usd / float(usd_per_unit(currency)) * float(10 ** exponent(currency)))
        return min(MAXIMUM_AMOUNT, max(minimum_amount(currency), minor))

    def currency(self, merchant: Merchant) -> str:
        p = merchant.profile
        return p.secondary_currency if self.rng.random() < p.secondary_share else p.currency

    def night(self, merchant: Merchant, t: int) -> int:
        """A random moment of the merchant's next night (00:00-05:59 local) at or after t."""
        rng = self.rng
        local = dt.datetime.fromtimestamp(t, merchant.zone)
        hour, minute = rng.randrange(6), rng.randrange(60)
        for days in (0, 1, 2):
            day = local.date() + dt.timedelta(days=days)
            moment = dt.datetime(
                day.year, day.month, day.day, hour, minute, tzinfo=merchant.zone
            ).timestamp()
            if moment >= t:
                return int(moment)
        return t  # unreachable: two days ahead is always later

    @staticmethod
    def event(
        t: int,
        merchant: Merchant,
        amount: int,
        currency: str,
        card: Card,
        *,
        customer: str | None,
        email: str | None,
        ip: str | None,
        ip_country: str | None,
        billing: str | None,
        device: str | None,
        declined: bool,
    ) -> PaymentEvent:
        outcome: Outcome = "declined" if declined else "authorized"
        return PaymentEvent(
            t,
            merchant.id,
            amount,
            currency,
            card.fingerprint,
            card.brand,
            card.funding,
            card.country,
            customer,
            email,
            ip,
            ip_country,
            billing,
            device,
            outcome,
        )

    def victim(self, merchant: Merchant) -> Customer:
        if merchant.customers:
            return merchant.customers[self.rng.randrange(len(merchant.customers))]
        return self.new_customer(merchant, guest=False)  # too early in the stream: no history

    def new_customer(self, merchant: Merchant, *, guest: bool) -> Customer:
        rng = self.rng
        p = self.cfg.legitimate
        home = merchant.buyers(rng)
        n_cards = 1 + bisect_right(list(accumulate(p.cards_per_customer)), rng.random())
        n_devices = 1 + bisect_right(list(accumulate(p.devices_per_customer)), rng.random())
        cards = [
            self.card(self.other_country(home) if rng.random() < p.foreign_card_share else home)
            for _ in range(min(n_cards, len(p.cards_per_customer)))
        ]
        billing = self.other_country(home) if rng.random() < p.foreign_billing_share else home
        profile = merchant.profile
        return Customer(
            id=None if guest else self.customer_id(merchant),
            email=self.email(),
            home=home,
            billing=billing,
            cards=cards,
            devices=[self.device() for _ in range(min(n_devices, len(p.devices_per_customer)))],
            ips=[self.ip(home)],
            traveller=rng.random() < p.traveller_share,
            basket_usd=profile.median_usd * rng.lognormvariate(0.0, p.spend_sigma),
        )

    def legitimate(self, merchant: Merchant, t: int) -> tuple[PaymentEvent, Customer]:
        rng = self.rng
        p = self.cfg.legitimate
        returning = False
        if rng.random() < p.guest_share:
            customer = self.new_customer(merchant, guest=True)
        elif merchant.customers and rng.random() < p.returning_share:
            customer = merchant.customers[rng.randrange(len(merchant.customers))]
            returning = True
        else:
            customer = self.new_customer(merchant, guest=False)
            if len(merchant.customers) < p.customer_pool:
                merchant.customers.append(customer)
            else:  # a random customer churns out, bounding the simulator's memory too
                merchant.customers[rng.randrange(p.customer_pool)] = customer

        if returning and rng.random() < p.new_card_share:
            customer.cards.append(self.card(customer.home))
            card = customer.cards[-1]
        else:
            card = customer.cards[0] if rng.random() < 0.7 else rng.choice(customer.cards)
        if returning and rng.random() < p.new_device_share:
            customer.devices.append(self.device())
            device: str | None = customer.devices[-1]
        else:
            device = rng.choice(customer.devices)
        if rng.random() < p.missing_device_share:
            device = None

        ip_country: str | None
        if customer.traveller and rng.random() < p.abroad_share:
            ip_country = self.other_country(customer.home)
            ip: str | None = self.ip(ip_country)
        else:
            ip_country = customer.home
            if returning and rng.random() < p.new_ip_share:
                customer.ips.append(self.ip(customer.home))
            ip = rng.choice(customer.ips)
        if rng.random() < p.missing_ip_share:
            ip, ip_country = None, None
        billing = None if rng.random() < p.missing_billing_share else customer.billing

        usd = customer.basket_usd * rng.lognormvariate(0.0, merchant.profile.sigma)
        big = rng.random() < p.big_basket_share
        if big:
            usd *= rng.uniform(*p.big_basket_multiplier)
        decline = p.prepaid_decline_rate if card.funding == "prepaid" else p.decline_rate
        if big:
            decline *= 2  # large honest orders hit limits more often
        currency = self.currency(merchant)
        event = self.event(
            t,
            merchant,
            self.minor(usd, currency),
            currency,
            card,
            customer=customer.id,
            email=customer.email,
            ip=ip,
            ip_country=ip_country,
            billing=billing,
            device=device,
            declined=rng.random() < decline,
        )
        return event, customer

    def retry(self, declined: PaymentEvent, customer: Customer) -> PaymentEvent:
        rng = self.rng
        p = self.cfg.legitimate
        card: Card | None = None
        others = [c for c in customer.cards if c.fingerprint != declined.card_fingerprint]
        if others and rng.random() < p.retry_other_card_share:
            card = rng.choice(others)
        outcome: Outcome = "declined" if rng.random() < p.decline_rate * 2 else "authorized"
        retried = replace(declined, time=declined.time + rng.randint(*p.retry_delay))
        if card is None:
            return replace(retried, outcome=outcome)
        return replace(
            retried,
            card_fingerprint=card.fingerprint,
            card_brand=card.brand,
            card_funding=card.funding,
            card_country=card.country,
            outcome=outcome,
        )
