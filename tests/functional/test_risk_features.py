"""Online features from the database (issue 7, item 1): windows, velocity, history, geography, time.

Rows are written straight into `risk_assessments` at chosen times, so every boundary is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session

from bastionpay.db.engine import Database
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.ids import new_id
from bastionpay.risk.feature_schema import FEATURES
from bastionpay.risk.features import PaymentSignals, compute
from bastionpay.risk.models import RiskAssessment

NOW = 1_800_000_000  # 2027-01-15 08:00:00 UTC
M = "acct_features"


def _past(session: Session, seconds_ago: int, outcome: str = "authorized", **keys: Any) -> None:
    session.add(
        RiskAssessment(
            id=new_id("rsk"),
            merchant_id=keys.pop("merchant_id", M),
            livemode=False,
            created=NOW - seconds_ago,
            payment_intent_id=new_id("pi"),
            amount_usd_cents=keys.pop("cents", 1000),
            outcome=outcome,
            level="normal",
            action="allow",
            reasons=[],
            features={},
            shadow=[],
            **keys,
        )
    )


def _signals(**overrides: Any) -> PaymentSignals:
    base: dict[str, Any] = {
        "merchant_id": M,
        "livemode": False,
        "now": NOW,
        "amount": 5000,
        "currency": "usd",
        "card_fingerprint": "fp_current",
        "card_brand": "visa",
        "card_funding": "credit",
        "card_country": "US",
        "customer_id": "cus_1",
        "email": "Buyer@Example.com",
        "ip_address": "203.0.113.7",
        "ip_country": "FR",
        "billing_country": "US",
        "device_id": "dev_1",
    }
    return PaymentSignals(**{**base, **overrides})


@pytest.fixture
def db(fresh_db_url: str) -> Iterator[Database]:
    database = Database(fresh_db_url)
    yield database
    database.dispose()


def _features(db: Database, signals: PaymentSignals) -> dict[str, Any]:
    with unit_of_work(db, write=False) as session:
        return compute(session, signals)


def test_every_declared_feature_is_computed(db: Database) -> None:
    features = _features(db, _signals())
    assert set(features) == {f.name for f in FEATURES}


def test_a_first_payment_has_empty_history(db: Database) -> None:
    f = _features(db, _signals())
    assert f["attempts_per_card_fingerprint_hourly"] == 0
    assert f["seconds_since_card_first_seen"] == 0
    assert f["seconds_since_customer_first_seen"] == 0
    assert f["is_new_card_for_customer"] is True and f["is_new_device"] is True
    assert f["cards_per_ip_daily"] == 1 and f["cards_per_customer_daily"] == 1
    assert f["amount_to_customer_mean"] is None and f["amount_to_merchant_mean"] is None
    assert f["amount_in_usd"] == 50.0 and f["email"] == "buyer@example.com"
    assert f["email_domain"] == "example.com"
    assert f["card_country_mismatch_ip"] is True
    assert f["card_country_mismatch_billing"] is False
    assert f["ip_country_mismatch_billing"] is True


def test_windows_exclude_an_event_exactly_one_window_old(db: Database) -> None:
    with unit_of_work(db, write=True) as session:
        _past(session, 3600, card_fingerprint="fp_current")  # out of the hour, in the day
        _past(session, 3599, card_fingerprint="fp_current")  # in both
        _past(session, 86_400, card_fingerprint="fp_current")  # out of both
        _past(session, 0, card_fingerprint="fp_current")  # same second, earlier: counts
    f = _features(db, _signals())
    assert f["attempts_per_card_fingerprint_hourly"] == 2
    assert f["attempts_per_card_fingerprint_daily"] == 3
    assert f["seconds_since_card_first_seen"] == 86_400
    with unit_of_work(db, write=True) as session:
        _past(session, 40 * 86_400, card_fingerprint="fp_current")  # beyond 30 days: ignored
    assert _features(db, _signals())["seconds_since_card_first_seen"] == 86_400


def test_declines_and_card_testing_signals(db: Database) -> None:
    with unit_of_work(db, write=True) as session:
        for i in range(4):
            _past(
                session,
                60 * (i + 1),
                outcome="declined" if i < 3 else "blocked",
                card_fingerprint=f"fp_{i}",
                ip_address="203.0.113.7",
            )
        _past(session, 30, card_fingerprint="fp_current", ip_address="203.0.113.7")
        _past(session, 20, outcome="declined", card_fingerprint="fp_current")
        _past(session, 10, card_fingerprint="fp_x", ip_address="198.51.100.1")  # another IP
    f = _features(db, _signals())
    assert f["attempts_per_ip_hourly"] == 5 and f["declines_per_ip_daily"] == 4
    assert f["cards_per_ip_daily"] == 5  # fp_0..fp_3 and the current card, counted once
    assert f["declines_per_card_fingerprint_hourly"] == 1


def test_customer_device_and_amount_history(db: Database) -> None:
    with unit_of_work(db, write=True) as session:
        _past(session, 10 * 86_400, customer_id="cus_1", card_fingerprint="fp_old", cents=2000)
        _past(session, 3 * 86_400, customer_id="cus_1", card_fingerprint="fp_old", cents=3000)
        _past(session, 100, device_id="dev_1", card_fingerprint="fp_someone_else")
        _past(session, 31 * 86_400, customer_id="cus_1", cents=999_999)  # beyond 30 days
        _past(session, 50, merchant_id="acct_other", customer_id="cus_1", cents=1)  # isolated
    f = _features(db, _signals())
    assert f["seconds_since_customer_first_seen"] == 10 * 86_400  # 31 days ago is forgotten
    assert f["is_new_card_for_customer"] is True  # fp_current never used by cus_1
    assert f["amount_to_customer_mean"] == 2.0  # 5000 ÷ mean(2000, 3000) within 30 days
    assert f["is_new_device"] is True  # dev_1 seen, but neither with this card nor customer
    assert f["attempts_per_device_daily"] == 1
    assert f["attempts_per_customer_daily"] == 0


def test_missing_inputs_give_none_not_zero(db: Database) -> None:
    f = _features(
        db,
        _signals(
            customer_id=None,
            email=None,
            ip_address=None,
            ip_country=None,
            device_id=None,
            billing_country=None,
        ),
    )
    for name in (
        "attempts_per_customer_daily",
        "is_new_card_for_customer",
        "attempts_per_email_daily",
        "cards_per_ip_daily",
        "is_new_device",
        "card_country_mismatch_ip",
        "ip_country_mismatch_billing",
    ):
        assert f[name] is None, name


def test_night_time_in_the_merchant_zone(db: Database) -> None:
    assert _features(db, _signals())["hour_of_day_local"] == 8  # UTC
    tokyo = _features(db, _signals(timezone="Asia/Tokyo"))
    assert tokyo["hour_of_day_local"] == 17 and tokyo["is_night_time"] is False
    la = _features(db, _signals(timezone="America/Los_Angeles"))
    assert la["hour_of_day_local"] == 0 and la["is_night_time"] is True
    assert _features(db, _signals(timezone="Not/AZone"))["hour_of_day_local"] == 8


def test_amounts_in_other_currencies(db: Database) -> None:
    assert _features(db, _signals(amount=3000, currency="jpy"))["amount_in_usd"] == 20.1
