"""Online features at payment time (issue 7, item 1), computed in the payment's own transaction.

The velocity counters are aggregate queries over `risk_assessments`, each answered from one
(merchant, mode, key, time) index: at most six small queries per payment, no counter rows to
lock (ARCHITECTURE: no row that every payment must lock), and nothing kept in process memory.

Semantics follow `feature_schema` and the simulator's reference implementation exactly (a parity
test runs both on the same event sequence): windows end just before the payment and exclude it
(`created > now - window`, so an event exactly one window ago is out); "declines" are attempts
whose outcome was `declined` or `blocked`; everything that looks back ("first seen", new card,
new device, means) stops at 30 days, so a card unused for 31 days is new again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Select, case, func, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bastionpay.risk.feature_schema import DAILY, HISTORY, HOURLY, NIGHT_HOURS
from bastionpay.risk.fx import to_usd_cents
from bastionpay.risk.models import RiskAssessment as R

DECLINED = ("declined", "blocked")


@dataclass(frozen=True)
class PaymentSignals:
    """What is known about a payment attempt; plain values, no card number (C1)."""

    merchant_id: str
    livemode: bool
    now: int
    amount: int
    currency: str
    card_fingerprint: str | None = None
    card_brand: str | None = None
    card_funding: str | None = None
    card_country: str | None = None
    customer_id: str | None = None
    email: str | None = None
    ip_address: str | None = None
    ip_country: str | None = None
    billing_country: str | None = None
    device_id: str | None = None
    timezone: str | None = None

    @property
    def amount_usd_cents(self) -> int:
        return to_usd_cents(self.amount, self.currency)


# Every query below is bounded by its longest window on the indexed `created` column (the indexes
# end in `created`): a card, address or customer with a long history costs an index range scan of
# the window, not of all its rows (a card-testing burst must not make scoring slower and slower).


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _scoped(signals: PaymentSignals, *columns: Any) -> Select[Any]:
    return select(*columns).where(
        R.merchant_id == signals.merchant_id, R.livemode.is_(signals.livemode)
    )


def _mismatch(a: str | None, b: str | None) -> bool | None:
    return None if not a or not b else a.upper() != b.upper()


def _ratio(amount_cents: int, total: object, count: object) -> float | None:
    # c × n ÷ S with integers, as the simulator's reference computes it (one rounding only);
    # PostgreSQL's SUM of a bigint is a NUMERIC, hence the int(str()).
    if not count or not total:
        return None
    return round(amount_cents * int(str(count)) / int(str(total)), 4)


def _local_hour(now: int, timezone: str | None) -> int:
    try:
        zone = ZoneInfo(timezone) if timezone else dt.UTC
    except (ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC  # an unknown zone is stored as text by an operator: fall back, never fail
    return dt.datetime.fromtimestamp(now, zone).hour


def _none(f: dict[str, Any], *names: str) -> None:
    for name in names:
        f[name] = None


def _card(session: Session, s: PaymentSignals, f: dict[str, Any], w: _Windows) -> None:
    if not s.card_fingerprint:
        _none(
            f,
            "attempts_per_card_fingerprint_hourly",
            "attempts_per_card_fingerprint_daily",
            "declines_per_card_fingerprint_hourly",
            "declines_per_card_fingerprint_daily",
            "seconds_since_card_first_seen",
        )
        return
    declined = R.outcome.in_(DECLINED)
    row = session.execute(
        _scoped(
            s,
            _count(R.created > w.hour),
            _count(R.created > w.day),
            _count((R.created > w.hour) & declined),
            _count((R.created > w.day) & declined),
            func.min(case((R.created > w.month, R.created))),
        ).where(R.card_fingerprint == s.card_fingerprint, R.created > w.month)
    ).one()
    f["attempts_per_card_fingerprint_hourly"] = int(row[0])
    f["attempts_per_card_fingerprint_daily"] = int(row[1])
    f["declines_per_card_fingerprint_hourly"] = int(row[2])
    f["declines_per_card_fingerprint_daily"] = int(row[3])
    f["seconds_since_card_first_seen"] = 0 if row[4] is None else s.now - row[4]


def _distinct_cards(previous: int, current_seen: int, s: PaymentSignals) -> int:
    """Distinct cards in the window, the current one included."""
    if not s.card_fingerprint or current_seen > 0:
        return previous
    return previous + 1


def _customer(session: Session, s: PaymentSignals, f: dict[str, Any], w: _Windows) -> None:
    if not s.customer_id:
        _none(
            f,
            "attempts_per_customer_hourly",
            "attempts_per_customer_daily",
            "seconds_since_customer_first_seen",
            "is_new_card_for_customer",
            "cards_per_customer_daily",
            "amount_to_customer_mean",
        )
        return
    card = literal(s.card_fingerprint)
    row = session.execute(
        _scoped(
            s,
            _count(R.created > w.hour),
            _count(R.created > w.day),
            func.min(case((R.created > w.month, R.created))),
            _count((R.created > w.month) & (R.card_fingerprint == card)),
            func.count(func.distinct(case((R.created > w.day, R.card_fingerprint)))),
            _count((R.created > w.day) & (R.card_fingerprint == card)),
            func.sum(case((R.created > w.month, R.amount_usd_cents), else_=0)),
            _count(R.created > w.month),
        ).where(R.customer_id == s.customer_id, R.created > w.month)
    ).one()
    f["attempts_per_customer_hourly"] = int(row[0])
    f["attempts_per_customer_daily"] = int(row[1])
    f["seconds_since_customer_first_seen"] = 0 if row[2] is None else s.now - row[2]
    f["is_new_card_for_customer"] = None if not s.card_fingerprint else int(row[3]) == 0
    f["cards_per_customer_daily"] = _distinct_cards(int(row[4]), int(row[5]), s)
    f["amount_to_customer_mean"] = _ratio(s.amount_usd_cents, row[6], row[7])


def _ip(session: Session, s: PaymentSignals, f: dict[str, Any], w: _Windows) -> None:
    if not s.ip_address:
        _none(
            f,
            "attempts_per_ip_hourly",
            "attempts_per_ip_daily",
            "declines_per_ip_daily",
            "cards_per_ip_daily",
        )
        return
    row = session.execute(
        _scoped(
            s,
            _count(R.created > w.hour),
            _count(R.created > w.day),
            _count((R.created > w.day) & R.outcome.in_(DECLINED)),
            func.count(func.distinct(case((R.created > w.day, R.card_fingerprint)))),
            _count((R.created > w.day) & (R.card_fingerprint == literal(s.card_fingerprint))),
        ).where(R.ip_address == s.ip_address, R.created > w.day)
    ).one()
    f["attempts_per_ip_hourly"] = int(row[0])
    f["attempts_per_ip_daily"] = int(row[1])
    f["declines_per_ip_daily"] = int(row[2])
    f["cards_per_ip_daily"] = _distinct_cards(int(row[3]), int(row[4]), s)


def _device(session: Session, s: PaymentSignals, f: dict[str, Any], w: _Windows) -> None:
    if not s.device_id:
        _none(f, "attempts_per_device_daily", "is_new_device")
        return
    known = (R.created > w.month) & (
        (R.card_fingerprint == literal(s.card_fingerprint))
        | (R.customer_id == literal(s.customer_id))
    )
    row = session.execute(
        _scoped(s, _count(R.created > w.day), _count(known)).where(
            R.device_id == s.device_id, R.created > w.month
        )
    ).one()
    f["attempts_per_device_daily"] = int(row[0])
    f["is_new_device"] = int(row[1]) == 0


def _merchant(session: Session, s: PaymentSignals, f: dict[str, Any], w: _Windows) -> None:
    row = session.execute(
        _scoped(
            s,
            _count(R.created > w.hour),
            func.sum(R.amount_usd_cents),
            func.count(),
        ).where(R.created > w.month)
    ).one()
    f["attempts_per_merchant_hourly"] = int(row[0])
    f["amount_to_merchant_mean"] = _ratio(s.amount_usd_cents, row[1], row[2])


@dataclass(frozen=True)
class _Windows:
    hour: int
    day: int
    month: int


def compute(session: Session, s: PaymentSignals) -> dict[str, Any]:
    """Every feature of FEATURES for this attempt (None where the input is missing)."""
    w = _Windows(s.now - HOURLY, s.now - DAILY, s.now - HISTORY)
    email = s.email.lower() if s.email else None
    card_country, ip_country, billing_country = (
        c.upper() if c else None for c in (s.card_country, s.ip_country, s.billing_country)
    )
    f: dict[str, Any] = {
        "amount": s.amount,
        "amount_in_usd": round(s.amount_usd_cents / 100, 2),
        "currency": s.currency.lower(),
        "card_fingerprint": s.card_fingerprint,
        "card_brand": s.card_brand,
        "card_funding": s.card_funding,
        "card_country": card_country,
        "customer": s.customer_id,
        "email": email,
        "email_domain": email.rsplit("@", 1)[1] if email and "@" in email else None,
        "ip_address": s.ip_address,
        "ip_country": ip_country,
        "billing_country": billing_country,
        "device_id": s.device_id,
        "card_country_mismatch_ip": _mismatch(card_country, ip_country),
        "card_country_mismatch_billing": _mismatch(card_country, billing_country),
        "ip_country_mismatch_billing": _mismatch(ip_country, billing_country),
    }
    _card(session, s, f, w)
    _customer(session, s, f, w)
    f["attempts_per_email_daily"] = (
        int(
            session.execute(
                _scoped(s, _count(R.created > w.day)).where(R.email == email, R.created > w.day)
            ).scalar_one()
        )
        if email
        else None
    )
    _ip(session, s, f, w)
    _device(session, s, f, w)
    _merchant(session, s, f, w)
    local = _local_hour(s.now, s.timezone)
    f["hour_of_day_local"] = local
    f["is_night_time"] = local in NIGHT_HOURS
    return f
