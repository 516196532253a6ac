"""The five fraud scenarios; each turns one planned campaign into its attempts.

A scenario function gets the world, the merchant under attack, the moment the campaign starts,
how many attempts it must produce and whether it is a *subtle* variant (one that looks much more
like legitimate traffic). docs/risk-simulator.md describes each with its rates and signature.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from bastionpay.risk.simulator.events import PaymentEvent, Scenario
from bastionpay.risk.simulator.world import Merchant, World


def card_testing(
    w: World, merchant: Merchant, t: int, size: int, subtle: bool
) -> list[PaymentEvent]:
    rng = w.rng
    p = w.cfg.card_testing
    if not subtle and rng.random() < p.night_share:
        t = w.night(merchant, t)
    ip_country = w.attacker_country()
    ips = [w.ip(ip_country) for _ in range(rng.randint(*p.ips))]
    device = None if rng.random() < p.no_device_share else w.device()
    customer = None if rng.random() < p.guest_share else w.customer_id(merchant)
    email = w.email(attacker=True)
    mean_gap = p.subtle_mean_gap if subtle else p.mean_gap
    card = w.stolen_card()
    events = []
    for i in range(size):
        if i:
            t += 1 + int(rng.expovariate(1.0 / mean_gap))
            if rng.random() >= p.reuse_card_share:
                card = w.stolen_card()
        billing = card.country if rng.random() < p.billing_is_card_country_share else ip_country
        currency = merchant.profile.currency
        events.append(
            w.event(
                t,
                merchant,
                w.minor(rng.uniform(*p.amount_usd), currency),
                currency,
                card,
                customer=customer,
                email=email,
                ip=ips[i % len(ips)],
                ip_country=ip_country,
                billing=billing,
                device=device,
                declined=rng.random() < p.decline_rate,
            )
        )
    return events


def account_takeover(
    w: World, merchant: Merchant, t: int, size: int, subtle: bool
) -> list[PaymentEvent]:
    rng = w.rng
    p = w.cfg.account_takeover
    victim = w.victim(merchant)
    device = (
        w.device() if subtle or rng.random() < p.new_device_share else rng.choice(victim.devices)
    )
    if not subtle and rng.random() < p.foreign_ip_share:
        ip_country = w.attacker_country(victim.home)
    else:
        ip_country = victim.home  # a proxy in the victim's country
    ip = w.ip(ip_country)
    stolen = not subtle and rng.random() < p.new_card_share
    card = w.stolen_card() if stolen else rng.choice(victim.cards)
    low, high = (1.0, 2.0) if subtle else p.amount_multiplier
    currency = w.currency(merchant)
    events = []
    for i in range(size):
        if i:
            t += 1 + int(rng.expovariate(1.0 / p.mean_gap))
        usd = victim.basket_usd * rng.uniform(low, high)
        events.append(
            w.event(
                t,
                merchant,
                w.minor(usd, currency),
                currency,
                card,
                customer=victim.id,
                email=victim.email,
                ip=ip,
                ip_country=ip_country,
                billing=victim.billing,
                device=device,
                declined=rng.random() < p.decline_rate,
            )
        )
    return events


def velocity_burst(
    w: World, merchant: Merchant, t: int, size: int, subtle: bool
) -> list[PaymentEvent]:
    rng = w.rng
    p = w.cfg.velocity_burst
    if merchant.customers and rng.random() < p.known_card_share:
        card = rng.choice(w.victim(merchant).cards)
    else:
        card = w.stolen_card()
    customer = None if rng.random() < p.guest_share else w.customer_id(merchant)
    email = w.email(attacker=True)
    device = w.device() if rng.random() < p.same_device_share else None
    ip_country = w.attacker_country()
    ips = [w.ip(ip_country) for _ in range(rng.randint(*p.ips))]
    billing = card.country if rng.random() < p.billing_is_card_country_share else ip_country
    span = rng.randint(*(p.subtle_span if subtle else p.span))
    times = sorted(t + rng.randint(0, span) for _ in range(size))
    low, high = (math.log(m) for m in p.amount_multiplier)
    currency = w.currency(merchant)
    events = []
    for i, when in enumerate(times):
        usd = merchant.profile.median_usd * math.exp(rng.uniform(low, high))
        decline = min(p.decline_cap, p.decline_base + p.decline_step * i)
        events.append(
            w.event(
                when,
                merchant,
                w.minor(usd, currency),
                currency,
                card,
                customer=customer,
                email=email,
                ip=ips[i % len(ips)],
                ip_country=ip_country,
                billing=billing,
                device=device or w.device(),
                declined=rng.random() < decline,
            )
        )
    return events


def geography_mismatch(
    w: World, merchant: Merchant, t: int, size: int, subtle: bool
) -> list[PaymentEvent]:
    rng = w.rng
    p = w.cfg.geography_mismatch
    card = w.stolen_card()
    ip_country = w.attacker_country(card.country)
    ip = w.ip(ip_country)
    customer = None if rng.random() < p.guest_share else w.customer_id(merchant)
    email = w.email(attacker=True)
    device = w.device()
    currency = w.currency(merchant)
    median = merchant.profile.median_usd * p.amount_median_multiplier
    events = []
    for i in range(size):
        if i:
            t += rng.randint(*p.gap)
            if rng.random() < p.new_card_on_retry_share:
                card = w.stolen_card()
        billing = card.country if subtle else w.other_country(card.country, ip_country)
        usd = median * rng.lognormvariate(0.0, p.amount_sigma)
        events.append(
            w.event(
                t,
                merchant,
                w.minor(usd, currency),
                currency,
                card,
                customer=customer,
                email=email,
                ip=ip,
                ip_country=ip_country,
                billing=billing,
                device=device,
                declined=rng.random() < p.decline_rate,
            )
        )
    return events


def high_value(w: World, merchant: Merchant, t: int, size: int, subtle: bool) -> list[PaymentEvent]:
    rng = w.rng
    p = w.cfg.high_value
    foreign = rng.random() < p.foreign_ip_share
    if merchant.customers and rng.random() < p.existing_customer_share:
        victim = w.victim(merchant)
        customer, email, billing = victim.id, victim.email, victim.billing
        card = w.stolen_card() if rng.random() < p.new_card_share else victim.cards[0]
        device = w.device() if rng.random() < p.new_device_share else victim.devices[0]
        ip_country = w.attacker_country(victim.home) if foreign else victim.home
    else:
        card = w.stolen_card()
        customer = None if rng.random() < 0.5 else w.customer_id(merchant)
        email, billing, device = w.email(attacker=True), card.country, w.device()
        ip_country = w.attacker_country(card.country) if foreign else card.country
    ip = w.ip(ip_country)
    low, high = p.subtle_multiplier if subtle else p.amount_multiplier
    usd = merchant.profile.median_usd * rng.uniform(low, high)
    currency = w.currency(merchant)
    events = []
    for i in range(size):
        if i:
            t += rng.randint(*p.gap)
            usd *= 0.8  # a second try a little lower, after the first was refused or held
        events.append(
            w.event(
                t,
                merchant,
                w.minor(usd, currency),
                currency,
                card,
                customer=customer,
                email=email,
                ip=ip,
                ip_country=ip_country,
                billing=billing,
                device=device,
                declined=rng.random() < p.decline_rate,
            )
        )
    return events


SCENARIOS: dict[Scenario, Callable[[World, Merchant, int, int, bool], list[PaymentEvent]]] = {
    "card_testing": card_testing,
    "account_takeover": account_takeover,
    "velocity_burst": velocity_burst,
    "geography_mismatch": geography_mismatch,
    "high_value": high_value,
}
