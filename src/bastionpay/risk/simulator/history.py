"""The reference implementation of every risk feature, over an in-memory 30-day history.

`History` computes the features of `feature_schema.FEATURES` for one payment attempt from the
attempts observed before it. It is the definition the api's SQL implementation (`risk.features`)
is checked against in a parity test: feed both the same event sequence, compare feature by
feature. docs/risk-simulator.md lists every choice the SQL side must mirror; the short form:

* Everything is per merchant: a card, customer, email, IP or device seen at another merchant is
  unknown here.
* A window of W seconds for an attempt at time t holds the earlier observed attempts with
  `time > t - W` (so one exactly W seconds old is out, one W-1 seconds old is in). "Earlier" means
  observed before, so an attempt in the same second that was observed first counts; the attempt
  being scored never counts itself. hourly = 3,600 s, daily = 86,400 s, history = 30 days.
* Attempts are all confirmations whatever their outcome; declines are attempts whose outcome
  was `declined` or `blocked`.
* Everything "first seen", "new" or "mean" looks at the same 30-day history (`time > t -
  HISTORY`), never further back: that is what keeps memory bounded here and the index scans
  bounded in SQL.
* `cards_per_ip_daily` and `cards_per_customer_daily` count distinct fingerprints in the daily
  window *including the attempt's own card* (so they are at least 1 when the key is present).
* A feature whose key (customer, email, IP, device) is missing is None, not 0.

Memory is bounded by the attempts of the last 30 days: each attempt is held once in a time-ordered
log and appended to one small series per key; when it falls out of the 30-day history the log
evicts it from every series it joined and drops keys left empty. Lookups are O(log n) bisections
over per-key time lists plus amortised O(1) window bookkeeping.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections import deque
from collections.abc import Mapping
from typing import Final
from zoneinfo import ZoneInfo

from bastionpay.risk.feature_schema import DAILY, FEATURES, HISTORY, HOURLY, NIGHT_HOURS
from bastionpay.risk.fx import to_usd_cents
from bastionpay.risk.simulator.events import DECLINED_OUTCOMES, PaymentEvent

# Features that are None in the documented cases (docs/risk-simulator.md, "Missing values");
# every other feature always has a value.
NULLABLE_FEATURES: Final = frozenset(
    {
        "card_country",
        "customer",
        "email",
        "email_domain",
        "ip_address",
        "ip_country",
        "billing_country",
        "device_id",
        "card_country_mismatch_ip",
        "card_country_mismatch_billing",
        "ip_country_mismatch_billing",
        "is_new_card_for_customer",
        "seconds_since_customer_first_seen",
        "is_new_device",
        "attempts_per_customer_hourly",
        "attempts_per_customer_daily",
        "attempts_per_email_daily",
        "attempts_per_ip_hourly",
        "attempts_per_ip_daily",
        "attempts_per_device_daily",
        "declines_per_ip_daily",
        "cards_per_ip_daily",
        "cards_per_customer_daily",
        "amount_to_customer_mean",
        "amount_to_merchant_mean",
    }
)

FEATURE_NAMES: Final = tuple(f.name for f in FEATURES)

# Ratios are rounded so that the SQL side, which gets the same integer sum and count from the
# database, reproduces them bit for bit without a tolerance.
RATIO_DIGITS: Final = 4

# Compact a series' lists once this many entries have been evicted from its front (and they are
# at least half of it): amortised O(1) eviction without a deque's O(n) middle indexing.
_COMPACT_AFTER: Final = 1_024

_SeriesKey = tuple[str, str, str]  # (kind, merchant, value)
_PairKey = tuple[str, str, str, str]  # (kind, merchant, a, b)


class _Series:
    """The attempts of one key (a card, customer, email, IP, device or the merchant), oldest first.

    `times[head:]` are the retained attempt times; `declines` and `cents` are prefix sums
    (`declines[i]` = declines among `times[:i]`), so a window's count of declines or total amount
    is one subtraction after one bisection. When `fps` is kept, `cards` counts the fingerprints of
    the daily window that starts at `cards_head` (advanced lazily as time moves on).
    """

    __slots__ = ("cards", "cards_head", "cents", "declines", "fps", "head", "key", "times")

    def __init__(self, key: _SeriesKey, *, track_cards: bool) -> None:
        self.key = key
        self.times: list[int] = []
        self.head = 0
        self.declines: list[int] = [0]
        self.cents: list[int] = [0]
        self.fps: list[str] | None = [] if track_cards else None
        self.cards: dict[str, int] = {}
        self.cards_head = 0

    def append(self, time: int, declined: bool, cents: int, fingerprint: str) -> None:
        self.times.append(time)
        self.declines.append(self.declines[-1] + declined)
        self.cents.append(self.cents[-1] + cents)
        if self.fps is not None:
            self.fps.append(fingerprint)
            self.cards[fingerprint] = self.cards.get(fingerprint, 0) + 1

    def size(self) -> int:
        return len(self.times) - self.head

    def first_time(self) -> int:
        return self.times[self.head]

    def start_of_window(self, cutoff: int) -> int:
        """Index of the first retained attempt with time > cutoff."""
        return bisect_right(self.times, cutoff, self.head)

    def count_from(self, index: int) -> int:
        return len(self.times) - index

    def declines_from(self, index: int) -> int:
        return self.declines[-1] - self.declines[index]

    def cents_total(self) -> int:
        return self.cents[-1] - self.cents[self.head]

    def distinct_cards(self, cutoff: int, current: str) -> int:
        """Distinct fingerprints with time > cutoff, the current attempt's card included."""
        fps = self.fps
        if fps is None:
            raise TypeError("this series does not track cards")
        times = self.times
        while self.cards_head < len(times) and times[self.cards_head] <= cutoff:
            self._forget_card(fps[self.cards_head])
            self.cards_head += 1
        return len(self.cards) + (current not in self.cards)

    def pop_oldest(self) -> None:
        if self.fps is not None and self.cards_head == self.head:
            self._forget_card(self.fps[self.head])
            self.cards_head += 1
        self.head += 1
        if self.head >= _COMPACT_AFTER and 2 * self.head >= len(self.times):
            head = self.head
            del self.times[:head]
            del self.declines[:head]
            del self.cents[:head]
            if self.fps is not None:
                del self.fps[:head]
            self.cards_head -= head
            self.head = 0

    def _forget_card(self, fingerprint: str) -> None:
        left = self.cards[fingerprint] - 1
        if left:
            self.cards[fingerprint] = left
        else:
            del self.cards[fingerprint]


def _upper(country: str | None) -> str | None:
    return country.upper() if country else None


def _differs(a: str | None, b: str | None) -> bool | None:
    return None if a is None or b is None else a != b


def _ratio(cents: int, total: int, count: int) -> float | None:
    # cents ÷ (total ÷ count), computed as one correctly rounded division of two exact integers.
    if count == 0 or total <= 0:
        return None
    return round(cents * count / total, RATIO_DIGITS)


class History:
    """Risk features of each attempt from the attempts before it (see the module docstring).

    Call `features_for(event)` when the attempt is scored, then `observe(event)` once its outcome
    is known. Both require non-decreasing event times (the api scores in arrival order; an
    out-of-order replay would silently change every window, so it raises instead).
    `timezones` maps a merchant id to its IANA zone for `hour_of_day_local`; merchants not in it
    are on UTC.
    """

    def __init__(self, timezones: Mapping[str, str] | None = None) -> None:
        self._zones: dict[str, ZoneInfo] = {m: ZoneInfo(z) for m, z in (timezones or {}).items()}
        self._series: dict[_SeriesKey, _Series] = {}
        self._pairs: dict[_PairKey, int] = {}
        self._log: deque[tuple[int, tuple[_Series, ...], tuple[_PairKey, ...]]] = deque()
        self._now: int | None = None

    @property
    def retained_events(self) -> int:
        """Attempts currently held (those of the last 30 days)."""
        return len(self._log)

    @property
    def tracked_keys(self) -> int:
        """Keys (series and pairs) currently held; falls to 0 once all attempts are evicted."""
        return len(self._series) + len(self._pairs)

    def features_for(self, event: PaymentEvent) -> dict[str, object]:
        """The features of `event` from the attempts observed before it (not recorded)."""
        t = event.time
        self._advance(t)
        cents = to_usd_cents(event.amount, event.currency)
        email = event.email.lower() if event.email else None
        card_country = _upper(event.card_country)
        ip_country = _upper(event.ip_country)
        billing_country = _upper(event.billing_country)
        # An empty string is no key at all, as in the api (`if not s.customer_id`).
        customer = event.customer or None
        ip_address = event.ip_address or None
        device = event.device_id or None
        f: dict[str, object] = {
            "amount": event.amount,
            "amount_in_usd": round(cents / 100, 2),
            "currency": event.currency.lower(),
            "card_fingerprint": event.card_fingerprint,
            "card_brand": event.card_brand,
            "card_funding": event.card_funding,
            "card_country": card_country,
            "customer": customer,
            "email": email,
            "email_domain": email.rsplit("@", 1)[1] if email and "@" in email else None,
            "ip_address": ip_address,
            "ip_country": ip_country,
            "billing_country": billing_country,
            "device_id": device,
            "card_country_mismatch_ip": _differs(card_country, ip_country),
            "card_country_mismatch_billing": _differs(card_country, billing_country),
            "ip_country_mismatch_billing": _differs(ip_country, billing_country),
        }
        m, fp = event.merchant, event.card_fingerprint
        self._card_features(f, m, fp, t)
        self._customer_features(f, m, customer, fp, t, cents)
        f["attempts_per_email_daily"] = (
            self._count(("email", m, email), t - DAILY) if email else None
        )
        self._ip_features(f, m, ip_address, fp, t)
        self._device_features(f, m, device, customer, fp, t)
        merchant = self._series.get(("merchant", m, ""))
        f["attempts_per_merchant_hourly"] = self._count(("merchant", m, ""), t - HOURLY)
        f["amount_to_merchant_mean"] = (
            None if merchant is None else _ratio(cents, merchant.cents_total(), merchant.size())
        )
        hour = dt.datetime.fromtimestamp(t, self._zones.get(m, dt.UTC)).hour
        f["hour_of_day_local"] = hour
        f["is_night_time"] = hour in NIGHT_HOURS
        return {name: f[name] for name in FEATURE_NAMES}  # the schema's order, every time

    def _count(self, key: _SeriesKey, cutoff: int) -> int:
        s = self._series.get(key)
        return 0 if s is None else s.count_from(s.start_of_window(cutoff))

    def _card_features(self, f: dict[str, object], m: str, fp: str, t: int) -> None:
        card = self._series.get(("card", m, fp))
        if card is None:
            f["seconds_since_card_first_seen"] = 0
            for name in (
                "attempts_per_card_fingerprint_hourly",
                "attempts_per_card_fingerprint_daily",
                "declines_per_card_fingerprint_hourly",
                "declines_per_card_fingerprint_daily",
            ):
                f[name] = 0
            return
        hour_i = card.start_of_window(t - HOURLY)
        day_i = card.start_of_window(t - DAILY)
        f["seconds_since_card_first_seen"] = t - card.first_time()
        f["attempts_per_card_fingerprint_hourly"] = card.count_from(hour_i)
        f["attempts_per_card_fingerprint_daily"] = card.count_from(day_i)
        f["declines_per_card_fingerprint_hourly"] = card.declines_from(hour_i)
        f["declines_per_card_fingerprint_daily"] = card.declines_from(day_i)

    def _customer_features(
        self, f: dict[str, object], m: str, customer: str | None, fp: str, t: int, cents: int
    ) -> None:
        names = (
            "is_new_card_for_customer",
            "seconds_since_customer_first_seen",
            "attempts_per_customer_hourly",
            "attempts_per_customer_daily",
            "cards_per_customer_daily",
            "amount_to_customer_mean",
        )
        if customer is None:
            f.update(dict.fromkeys(names))
            return
        f["is_new_card_for_customer"] = ("card@customer", m, customer, fp) not in self._pairs
        cust = self._series.get(("customer", m, customer))
        if cust is None:
            f.update(zip(names[1:], (0, 0, 0, 1, None), strict=True))
            return
        f["seconds_since_customer_first_seen"] = t - cust.first_time()
        f["attempts_per_customer_hourly"] = cust.count_from(cust.start_of_window(t - HOURLY))
        f["attempts_per_customer_daily"] = cust.count_from(cust.start_of_window(t - DAILY))
        f["cards_per_customer_daily"] = cust.distinct_cards(t - DAILY, fp)
        f["amount_to_customer_mean"] = _ratio(cents, cust.cents_total(), cust.size())

    def _ip_features(
        self, f: dict[str, object], m: str, ip_address: str | None, fp: str, t: int
    ) -> None:
        names = (
            "attempts_per_ip_hourly",
            "attempts_per_ip_daily",
            "declines_per_ip_daily",
            "cards_per_ip_daily",
        )
        if ip_address is None:
            f.update(dict.fromkeys(names))
            return
        ip = self._series.get(("ip", m, ip_address))
        if ip is None:
            f.update(zip(names, (0, 0, 0, 1), strict=True))
            return
        day_i = ip.start_of_window(t - DAILY)
        f["attempts_per_ip_hourly"] = ip.count_from(ip.start_of_window(t - HOURLY))
        f["attempts_per_ip_daily"] = ip.count_from(day_i)
        f["declines_per_ip_daily"] = ip.declines_from(day_i)
        f["cards_per_ip_daily"] = ip.distinct_cards(t - DAILY, fp)

    def _device_features(
        self,
        f: dict[str, object],
        m: str,
        device: str | None,
        customer: str | None,
        fp: str,
        t: int,
    ) -> None:
        if device is None:
            f["is_new_device"] = None
            f["attempts_per_device_daily"] = None
            return
        pairs = self._pairs
        seen = ("device@card", m, fp, device) in pairs or (
            customer is not None and ("device@customer", m, customer, device) in pairs
        )
        f["is_new_device"] = not seen
        f["attempts_per_device_daily"] = self._count(("device", m, device), t - DAILY)

    def observe(self, event: PaymentEvent) -> None:
        """Record an attempt (with its outcome) so that later attempts count it."""
        t = event.time
        self._advance(t)
        m = event.merchant
        fp = event.card_fingerprint
        declined = event.outcome in DECLINED_OUTCOMES
        cents = to_usd_cents(event.amount, event.currency)
        keys: list[tuple[str, str, bool]] = [("card", fp, False), ("merchant", "", False)]
        pairs: list[_PairKey] = []
        customer = event.customer or None
        if customer:
            keys.append(("customer", customer, True))
            pairs.append(("card@customer", m, customer, fp))
        if event.email:
            keys.append(("email", event.email.lower(), False))
        if event.ip_address:
            keys.append(("ip", event.ip_address, True))
        device = event.device_id
        if device:
            keys.append(("device", device, False))
            pairs.append(("device@card", m, fp, device))
            if customer:
                pairs.append(("device@customer", m, customer, device))

        joined: list[_Series] = []
        for kind, value, track_cards in keys:
            key = (kind, m, value)
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = _Series(key, track_cards=track_cards)
            s.append(t, declined, cents, fp)
            joined.append(s)
        for pair in pairs:
            self._pairs[pair] = self._pairs.get(pair, 0) + 1
        self._log.append((t, tuple(joined), tuple(pairs)))

    def _advance(self, t: int) -> None:
        if self._now is not None and t < self._now:
            raise ValueError(f"attempt at {t} is older than one already seen at {self._now}")
        self._now = t
        cutoff = t - HISTORY
        log = self._log
        while log and log[0][0] <= cutoff:
            _, joined, pairs = log.popleft()
            # Each series holds its attempts in log order, so this attempt is its oldest.
            for s in joined:
                s.pop_oldest()
                if s.size() == 0:
                    del self._series[s.key]
            for pair in pairs:
                left = self._pairs[pair] - 1
                if left:
                    self._pairs[pair] = left
                else:
                    del self._pairs[pair]
