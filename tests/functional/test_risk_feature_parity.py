"""Train/serve parity (issue 7, item 1): the SQL features equal the simulator's reference ones.

The model is trained on features the simulator computes in memory and served features the api
computes in SQL. Both run here over one simulated stream — card testing, takeovers, bursts and
all — and must agree on every feature of every attempt, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from bastionpay.db.engine import Database
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.ids import new_id
from bastionpay.risk.features import PaymentSignals, compute
from bastionpay.risk.models import RiskAssessment
from bastionpay.risk.simulator import History, merchant_timezones, simulate

EVENTS = 600


@pytest.fixture
def db(fresh_db_url: str) -> Iterator[Database]:
    database = Database(fresh_db_url)
    yield database
    database.dispose()


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), abs_tol=1e-4)  # type: ignore[arg-type]
    return a == b


def test_sql_features_match_the_reference_on_a_simulated_stream(db: Database) -> None:
    zones = merchant_timezones(3)
    reference = History(zones)
    mismatches: list[str] = []
    for n, simulated in enumerate(simulate(EVENTS, seed=7, merchants=3, fraud_rate=0.1)):
        e = simulated.event
        expected = reference.features_for(e)
        signals = PaymentSignals(
            merchant_id=e.merchant,
            livemode=False,
            now=e.time,
            amount=e.amount,
            currency=e.currency,
            card_fingerprint=e.card_fingerprint,
            card_brand=e.card_brand,
            card_funding=e.card_funding,
            card_country=e.card_country,
            customer_id=e.customer,
            email=e.email,
            ip_address=e.ip_address,
            ip_country=e.ip_country,
            billing_country=e.billing_country,
            device_id=e.device_id,
            timezone=zones.get(e.merchant),
        )
        with unit_of_work(db, write=True) as session:
            actual = compute(session, signals)
            session.add(
                RiskAssessment(
                    id=new_id("rsk"),
                    merchant_id=e.merchant,
                    livemode=False,
                    created=e.time,
                    payment_intent_id=new_id("pi"),
                    card_fingerprint=e.card_fingerprint,
                    customer_id=e.customer,
                    email=e.email.lower() if e.email else None,
                    ip_address=e.ip_address,
                    device_id=e.device_id,
                    amount_usd_cents=signals.amount_usd_cents,
                    outcome=e.outcome,
                    level="normal",
                    action="allow",
                    reasons=[],
                    features={},
                    shadow=[],
                )
            )
        reference.observe(e)
        mismatches.extend(
            f"event {n} {name}: sql={actual.get(name)!r} reference={value!r}"
            for name, value in expected.items()
            if not _same(actual.get(name), value)
        )
    assert mismatches == [], "\n".join(mismatches[:20])
