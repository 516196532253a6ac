"""The transaction simulator, the reference feature implementation (`History`) and the FX table."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from bastionpay.kernel.money import CURRENCY_EXPONENTS, UnknownCurrency
from bastionpay.risk import fx
from bastionpay.risk.feature_schema import (
    CATEGORICAL_MODEL_FEATURES,
    DAILY,
    FEATURES,
    HISTORY,
    HOURLY,
    MODEL_FEATURES,
)
from bastionpay.risk.simulator import (
    CSV_COLUMNS,
    FRAUD_SCENARIOS,
    NULLABLE_FEATURES,
    History,
    PaymentEvent,
    SimulatedPayment,
    merchant_timezones,
    simulate,
    write_csv,
)
from bastionpay.risk.simulator.__main__ import main
from bastionpay.risk.simulator.params import LabelNoise

T0 = 1_717_200_000  # 2024-06-01T00:00:00Z
M = "acct_test"


def ev(t: int, **changes: object) -> PaymentEvent:
    """A hand-built attempt: one card, customer, email, IP and device unless overridden."""
    base = PaymentEvent(
        time=t,
        merchant=M,
        amount=2_000,
        currency="usd",
        card_fingerprint="fp_a",
        card_brand="visa",
        card_funding="credit",
        card_country="US",
        customer="cus_a",
        email="A@Example.com",
        ip_address="11.0.0.1",
        ip_country="US",
        billing_country="US",
        device_id="dev_a",
        outcome="authorized",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def replay(history: History, events: list[PaymentEvent]) -> list[dict[str, object]]:
    out = []
    for e in events:
        out.append(history.features_for(e))
        history.observe(e)
    return out


# ---------------------------------------------------------------- a shared simulated stream


@pytest.fixture(scope="module")
def stream() -> list[SimulatedPayment]:
    return list(simulate(20_000, seed=0))


def by_scenario(stream: list[SimulatedPayment], scenario: str) -> list[dict[str, object]]:
    return [p.features for p in stream if p.scenario == scenario]


def share(rows: list[dict[str, object]], predicate: Callable[[dict[str, object]], bool]) -> float:
    return sum(1 for r in rows if predicate(r)) / len(rows)


def mean_of(rows: list[dict[str, object]], name: str) -> float:
    return statistics.fmean(float(r[name]) for r in rows if r[name] is not None)  # type: ignore[arg-type]


# ---------------------------------------------------------------- determinism and shape


def test_same_seed_same_stream_and_other_seed_another() -> None:
    first = list(simulate(1_500, seed=7))
    assert first == list(simulate(1_500, seed=7))
    other = list(simulate(1_500, seed=8))
    assert [p.event for p in first] != [p.event for p in other]


def test_exact_count_time_order_and_fraud_budget(stream: list[SimulatedPayment]) -> None:
    assert len(stream) == 20_000
    times = [p.event.time for p in stream]
    assert times == sorted(times)
    fraud = [p for p in stream if p.scenario != "legitimate"]
    assert len(fraud) == round(20_000 * 0.015)  # exactly the budget, before label noise
    assert {p.scenario for p in fraud} == set(FRAUD_SCENARIOS)
    assert len({p.event.merchant for p in stream}) == 3


def test_label_rate_within_tolerance_of_prevalence_and_noise(
    stream: list[SimulatedPayment],
) -> None:
    noise = LabelNoise()
    expected = 0.015 * (1 - noise.missed_fraud) + 0.985 * noise.false_fraud
    observed = sum(p.label for p in stream) / len(stream)
    assert abs(observed - expected) < 0.003
    for p in stream:
        assert p.label == int(p.scenario != "legitimate") ^ int(p.label_flipped)
    flipped_fraud = sum(1 for p in stream if p.label_flipped and p.scenario != "legitimate")
    assert 0 < flipped_fraud < 0.15 * 300


def test_fraud_rate_parameter_and_validation() -> None:
    none = list(simulate(500, seed=1, fraud_rate=0.0))
    assert all(p.scenario == "legitimate" for p in none)
    lots = list(simulate(1_000, seed=1, fraud_rate=0.2, merchants=1))
    assert sum(p.scenario != "legitimate" for p in lots) == 200
    assert {p.event.merchant for p in lots} == {"acct_sim_books"}
    for bad in ({"fraud_rate": 0.9}, {"fraud_rate": -0.1}, {"merchants": 0}):
        with pytest.raises(ValueError):
            simulate(10, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        simulate(-1)


def test_every_feature_present_with_its_type(stream: list[SimulatedPayment]) -> None:
    names = [f.name for f in FEATURES]
    seen_none: set[str] = set()
    for p in stream:
        assert list(p.features) == names
        for f in FEATURES:
            value = p.features[f.name]
            if value is None:
                assert f.name in NULLABLE_FEATURES, f.name
                seen_none.add(f.name)
            elif f.type == "number":
                assert isinstance(value, int | float) and not isinstance(value, bool), f.name
            elif f.type == "boolean":
                assert isinstance(value, bool), f.name
            else:
                assert isinstance(value, str) and value, f.name
    # The simulator exercises the missing-value paths (guests, no device, no IP, no billing).
    assert {"customer", "device_id", "ip_address", "billing_country", "is_new_device"} <= seen_none
    assert {"amount_to_customer_mean", "cards_per_customer_daily"} <= seen_none


def test_replaying_the_raw_events_reproduces_the_features(
    stream: list[SimulatedPayment],
) -> None:
    # The shape of the api's parity test: the same events through another implementation.
    history = History(merchant_timezones(3))
    sample = stream[:5_000]
    assert replay(history, [p.event for p in sample]) == [p.features for p in sample]


# ---------------------------------------------------------------- windows, exactly


def test_hourly_window_boundary_and_the_attempt_never_counts_itself() -> None:
    h = History()
    first = h.features_for(ev(T0))
    assert first["attempts_per_card_fingerprint_hourly"] == 0
    assert first["attempts_per_merchant_hourly"] == 0
    assert first["seconds_since_card_first_seen"] == 0
    h.observe(ev(T0))
    h.observe(ev(T0 + 1))
    f = h.features_for(ev(T0 + HOURLY))  # T0 is exactly 3,600 s earlier: out; T0 + 1 is in
    assert f["attempts_per_card_fingerprint_hourly"] == 1
    assert f["attempts_per_customer_hourly"] == 1
    assert f["attempts_per_ip_hourly"] == 1
    assert f["attempts_per_merchant_hourly"] == 1
    assert f["attempts_per_card_fingerprint_daily"] == 2
    assert f["seconds_since_card_first_seen"] == HOURLY


def test_daily_window_boundary() -> None:
    h = History()
    replay(h, [ev(T0), ev(T0 + 1, outcome="declined")])
    at_boundary = h.features_for(ev(T0 + DAILY))
    for name in (
        "attempts_per_card_fingerprint_daily",
        "attempts_per_customer_daily",
        "attempts_per_email_daily",
        "attempts_per_ip_daily",
        "attempts_per_device_daily",
    ):
        assert at_boundary[name] == 1, name
    assert at_boundary["declines_per_card_fingerprint_daily"] == 1
    assert at_boundary["declines_per_ip_daily"] == 1
    assert at_boundary["declines_per_card_fingerprint_hourly"] == 0
    later = h.features_for(ev(T0 + DAILY + 1))
    assert later["attempts_per_card_fingerprint_daily"] == 0
    assert later["declines_per_ip_daily"] == 0


def test_same_second_attempts_observed_earlier_count() -> None:
    h = History()
    replay(h, [ev(T0), ev(T0)])
    assert h.features_for(ev(T0))["attempts_per_card_fingerprint_hourly"] == 2


def test_declines_come_from_earlier_outcomes_only() -> None:
    h = History()
    assert h.features_for(ev(T0, outcome="declined"))["declines_per_card_fingerprint_hourly"] == 0
    replay(h, [ev(T0, outcome="declined"), ev(T0 + 5, outcome="blocked"), ev(T0 + 9)])
    f = h.features_for(ev(T0 + 10, card_fingerprint="fp_b"))
    assert f["declines_per_ip_daily"] == 2  # declined and blocked both count
    assert f["declines_per_card_fingerprint_hourly"] == 0  # another card
    assert h.features_for(ev(T0 + 10))["declines_per_card_fingerprint_hourly"] == 2


def test_velocity_is_per_merchant() -> None:
    h = History()
    replay(h, [ev(T0, merchant="acct_other")])
    f = h.features_for(ev(T0 + 1))
    assert f["attempts_per_card_fingerprint_hourly"] == 0
    assert f["attempts_per_merchant_hourly"] == 0
    assert f["is_new_card_for_customer"] is True


def test_distinct_cards_include_the_current_card() -> None:
    h = History()
    assert h.features_for(ev(T0))["cards_per_ip_daily"] == 1
    replay(h, [ev(T0), ev(T0 + 1, card_fingerprint="fp_b"), ev(T0 + 2)])
    assert h.features_for(ev(T0 + 3))["cards_per_ip_daily"] == 2  # fp_a again: counted once
    f = h.features_for(ev(T0 + 3, card_fingerprint="fp_c"))
    assert f["cards_per_ip_daily"] == 3
    assert f["cards_per_customer_daily"] == 3
    # A day later fp_a (T0) and fp_b (T0 + 1) have left the window, the T0 + 2 use of fp_a not.
    assert h.features_for(ev(T0 + DAILY + 1, card_fingerprint="fp_c"))["cards_per_ip_daily"] == 2
    assert h.features_for(ev(T0 + DAILY + 2))["cards_per_ip_daily"] == 1


def test_new_card_new_device_and_first_seen() -> None:
    h = History()
    first = h.features_for(ev(T0))
    assert first["is_new_card_for_customer"] is True
    assert first["is_new_device"] is True
    assert first["seconds_since_customer_first_seen"] == 0
    replay(h, [ev(T0)])
    again = h.features_for(ev(T0 + 60))
    assert again["is_new_card_for_customer"] is False
    assert again["is_new_device"] is False
    assert again["seconds_since_customer_first_seen"] == 60
    # The device is known through the customer even with a new card, and through the card even
    # for a guest checkout.
    assert h.features_for(ev(T0 + 60, card_fingerprint="fp_b"))["is_new_device"] is False
    assert h.features_for(ev(T0 + 60, customer=None))["is_new_device"] is False
    stranger = h.features_for(ev(T0 + 60, card_fingerprint="fp_b", customer="cus_b"))
    assert stranger["is_new_device"] is True
    assert stranger["is_new_card_for_customer"] is True
    assert h.features_for(ev(T0 + 60, device_id="dev_b"))["is_new_device"] is True


def test_missing_inputs_give_none_not_zero() -> None:
    h = History()
    replay(h, [ev(T0)])
    f = h.features_for(
        ev(
            T0 + 1,
            customer=None,
            email=None,
            ip_address=None,
            ip_country=None,
            billing_country=None,
            device_id=None,
            card_country=None,
        )
    )
    for name in (
        "is_new_card_for_customer",
        "seconds_since_customer_first_seen",
        "attempts_per_customer_hourly",
        "attempts_per_customer_daily",
        "cards_per_customer_daily",
        "amount_to_customer_mean",
        "attempts_per_email_daily",
        "email_domain",
        "attempts_per_ip_hourly",
        "attempts_per_ip_daily",
        "declines_per_ip_daily",
        "cards_per_ip_daily",
        "is_new_device",
        "attempts_per_device_daily",
        "card_country_mismatch_ip",
        "card_country_mismatch_billing",
        "ip_country_mismatch_billing",
    ):
        assert f[name] is None, name
    assert f["attempts_per_card_fingerprint_hourly"] == 1
    assert f["amount_to_merchant_mean"] == 1.0


def test_geography_normalisation_and_mismatch() -> None:
    f = History().features_for(ev(T0, card_country="us", ip_country="FR", billing_country="Us"))
    assert (f["card_country"], f["ip_country"], f["billing_country"]) == ("US", "FR", "US")
    assert f["card_country_mismatch_ip"] is True
    assert f["card_country_mismatch_billing"] is False
    assert f["ip_country_mismatch_billing"] is True
    assert (f["email"], f["email_domain"]) == ("a@example.com", "example.com")


def test_amount_ratios_over_thirty_days_of_attempts() -> None:
    h = History()
    assert h.features_for(ev(T0))["amount_to_customer_mean"] is None  # no history yet
    replay(h, [ev(T0, amount=1_000), ev(T0 + 1, amount=3_000, outcome="declined")])
    f = h.features_for(ev(T0 + 2, amount=3_000))
    assert f["amount_to_customer_mean"] == 1.5  # mean of every attempt, whatever its outcome
    assert f["amount_to_merchant_mean"] == 1.5
    odd = h.features_for(ev(T0 + 2, amount=1_001, currency="eur"))
    assert odd["amount_in_usd"] == 10.81
    assert odd["amount_to_customer_mean"] == round(1_081 * 2 / 4_000, 4)
    # 30 days later (exactly) the first attempt is out of the history.
    assert h.features_for(ev(T0 + HISTORY, amount=3_000))["amount_to_customer_mean"] == 1.0


def test_first_seen_and_new_look_back_thirty_days_only() -> None:
    h = History()
    replay(h, [ev(T0)])
    just_inside = h.features_for(ev(T0 + HISTORY - 1))
    assert just_inside["seconds_since_card_first_seen"] == HISTORY - 1
    assert just_inside["is_new_card_for_customer"] is False
    expired = h.features_for(ev(T0 + HISTORY))
    assert expired["seconds_since_card_first_seen"] == 0
    assert expired["is_new_card_for_customer"] is True
    assert expired["is_new_device"] is True


def test_memory_is_bounded_to_thirty_days() -> None:
    h = History()
    step = 600
    per_month = HISTORY // step
    for i in range(2 * per_month):
        e = ev(
            T0 + i * step,
            card_fingerprint=f"fp{i}",
            customer=f"cus{i}",
            email=f"e{i}@x.test",
            ip_address=f"11.0.{i // 256 % 256}.{i % 256}",
            device_id=f"dev{i}",
        )
        h.features_for(e)
        h.observe(e)
        assert h.retained_events <= per_month
    assert h.retained_events == per_month
    # Per attempt: 6 series (card, customer, email, IP, device; the merchant is shared) + 3 pairs.
    assert h.tracked_keys <= per_month * 8 + 1
    h.features_for(ev(T0 + 3 * HISTORY))
    assert (h.retained_events, h.tracked_keys) == (0, 0)


def test_hot_key_survives_compaction() -> None:
    # One card every minute for 35 days: its series is compacted many times over and its
    # windows must stay exact.
    h = History()
    events = [ev(T0 + 60 * i) for i in range(35 * 1_440)]
    replay(h, events)
    f = h.features_for(ev(events[-1].time + 60))
    # One minute after the last attempt: the one exactly an hour (a day) earlier is out.
    assert f["attempts_per_card_fingerprint_hourly"] == 59
    assert f["attempts_per_card_fingerprint_daily"] == 1_439
    assert f["cards_per_ip_daily"] == 1
    assert f["seconds_since_card_first_seen"] == HISTORY - 60
    assert h.retained_events == HISTORY // 60 - 1


def test_local_time_in_the_merchant_zone() -> None:
    h = History({M: "Asia/Tokyo"})
    tokyo = h.features_for(ev(T0))  # 00:00 UTC is 09:00 in Tokyo
    assert (tokyo["hour_of_day_local"], tokyo["is_night_time"]) == (9, False)
    utc = h.features_for(ev(T0, merchant="acct_unknown"))
    assert (utc["hour_of_day_local"], utc["is_night_time"]) == (0, True)
    assert h.features_for(ev(T0 + 5 * HOURLY + 3_599, merchant="x"))["is_night_time"] is True
    assert h.features_for(ev(T0 + 6 * HOURLY, merchant="x"))["is_night_time"] is False


def test_out_of_order_attempts_are_refused() -> None:
    h = History()
    h.observe(ev(T0))
    with pytest.raises(ValueError, match="older"):
        h.features_for(ev(T0 - 1))
    with pytest.raises(ValueError, match="older"):
        h.observe(ev(T0 - 1))


# ---------------------------------------------------------------- scenario signatures


def test_card_testing_signature(stream: list[SimulatedPayment]) -> None:
    legit = by_scenario(stream, "legitimate")
    testing = by_scenario(stream, "card_testing")
    assert mean_of(testing, "cards_per_ip_daily") > 4 * mean_of(legit, "cards_per_ip_daily")
    assert mean_of(testing, "declines_per_ip_daily") > 20 * mean_of(legit, "declines_per_ip_daily")
    assert mean_of(testing, "amount_in_usd") < 5
    assert share(testing, lambda f: f["is_night_time"] is True) > 0.3
    declined = [p for p in stream if p.scenario == "card_testing" and p.event.outcome == "declined"]
    assert len(declined) > 0.5 * len(testing)


def test_account_takeover_signature(stream: list[SimulatedPayment]) -> None:
    returning = [
        f
        for f in by_scenario(stream, "legitimate")
        if f["seconds_since_customer_first_seen"] not in (None, 0)
    ]
    ato = by_scenario(stream, "account_takeover")
    assert all(f["customer"] is not None for f in ato)

    def new_device(f: dict[str, object]) -> bool:
        return f["is_new_device"] is True

    def mismatch(f: dict[str, object]) -> bool:
        return f["ip_country_mismatch_billing"] is True

    assert share(ato, new_device) > 2 * share(returning, new_device)
    assert share(ato, mismatch) > 5 * share(returning, mismatch)
    assert mean_of(ato, "amount_to_customer_mean") > 1.5 * mean_of(
        returning, "amount_to_customer_mean"
    )


def test_high_value_signature(stream: list[SimulatedPayment]) -> None:
    legit = by_scenario(stream, "legitimate")
    high = by_scenario(stream, "high_value")

    def median(rows: list[dict[str, object]], name: str) -> float:
        return statistics.median(float(r[name]) for r in rows if r[name] is not None)  # type: ignore[arg-type]

    def known(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        # Customers with history from before the campaign (its attempts are < 1 h apart);
        # new customers have no mean, or one made of the campaign's own first attempt.
        return [r for r in rows if (r["seconds_since_customer_first_seen"] or 0) > HOURLY]

    assert len(known(high)) >= 5
    assert median(known(high), "amount_to_customer_mean") > 3 * median(
        known(legit), "amount_to_customer_mean"
    )
    assert median(high, "amount_to_merchant_mean") > 5 * median(legit, "amount_to_merchant_mean")


def test_velocity_burst_and_geography_signatures(stream: list[SimulatedPayment]) -> None:
    legit = by_scenario(stream, "legitimate")
    burst = by_scenario(stream, "velocity_burst")
    name = "attempts_per_card_fingerprint_hourly"
    assert mean_of(burst, name) > 20 * mean_of(legit, name)
    geo = by_scenario(stream, "geography_mismatch")

    def all_differ(f: dict[str, object]) -> bool:
        return f["card_country_mismatch_ip"] is True and f["ip_country_mismatch_billing"] is True

    assert share(geo, all_differ) > 0.6
    assert share(legit, all_differ) < 0.05


def test_learnable_but_not_trivial(stream: list[SimulatedPayment]) -> None:
    """A small gradient-boosting model on a time-ordered split: ROC-AUC within [0.8, 0.995].

    Below 0.8 the scenarios would leave too little trace in the features for the bootstrap model
    to be worth shipping (or a feature is broken, e.g. constant). Above 0.995 the data would be
    trivially separable: a leak (a column that encodes the scenario) or scenarios too clean to
    resemble real fraud, and a model trained on it would be overconfident on real traffic. The
    label noise alone caps a perfect ranking near 0.95.
    """
    np = pytest.importorskip("numpy")
    ensemble = pytest.importorskip("sklearn.ensemble")
    metrics = pytest.importorskip("sklearn.metrics")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    codes: dict[str, dict[object, int]] = {name: {} for name in CATEGORICAL_MODEL_FEATURES}

    def encode(name: str, value: object) -> float:
        if value is None:
            return float("nan")
        if name in codes:
            return float(codes[name].setdefault(value, len(codes[name])))
        return float(value)  # type: ignore[arg-type]

    x = np.array([[encode(n, p.features[n]) for n in MODEL_FEATURES] for p in stream])
    y = np.array([p.label for p in stream])
    cut = int(len(stream) * 0.7)  # train on the past, test on the future, as in production
    model = ensemble.HistGradientBoostingClassifier(
        max_iter=40,
        categorical_features=[n in codes for n in MODEL_FEATURES],
        random_state=0,
    )
    # One thread: OpenMP's spinning workers cost ten times more than they save on shared cores.
    with threadpoolctl.threadpool_limits(limits=1):
        model.fit(x[:cut], y[:cut])
        auc = metrics.roc_auc_score(y[cut:], model.predict_proba(x[cut:])[:, 1])
    assert 0.8 <= auc <= 0.995, auc


# ---------------------------------------------------------------- the training file


def test_csv_has_the_model_features_label_and_time(tmp_path: Path) -> None:
    path = tmp_path / "sim.csv"
    assert write_csv(path, 800, seed=3) == 800
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS == ("time", *MODEL_FEATURES, "label")
    assert "scenario" not in rows[0] and "card_fingerprint" not in rows[0]
    assert len(rows) == 801
    header = rows[0]
    expected = list(simulate(800, seed=3))
    for row, p in zip(rows[1:], expected, strict=True):
        record = dict(zip(header, row, strict=True))
        assert int(record["time"]) == p.event.time
        assert int(record["label"]) == p.label
        assert record["is_night_time"] in ("0", "1")
        for name in MODEL_FEATURES:
            assert (record[name] == "") == (p.features[name] is None), name


def test_command_line_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "cli.csv"
    assert main([str(out), "--events", "300", "--seed", "4", "--merchants", "2"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 301


# ---------------------------------------------------------------- FX


def test_fx_uses_the_currency_exponent() -> None:
    assert fx.to_usd_cents(3_000, "jpy") == 2_010  # 3,000 yen (no minor unit) × 0.0067
    assert fx.to_usd_cents(3_000, "eur") == 3_240  # 30.00 euros × 1.08
    assert fx.to_usd_cents(1_000, "kwd") == 326  # 1.000 dinar (three decimals) × 3.26
    assert fx.to_usd_cents(1_999, "USD") == 1_999
    assert fx.amount_in_usd(150_000, "jpy") == 1_005.0
    assert fx.amount_in_usd(1, "jpy") == 0.01  # 0.67 cents rounds half up to 1 cent


def test_fx_rounds_half_up_and_keeps_the_sign() -> None:
    assert fx.to_usd_cents(50, "jpy") == 34  # 33.5 cents
    assert fx.to_usd_cents(-50, "jpy") == -34
    assert fx.to_usd_cents(0, "gbp") == 0


def test_fx_covers_every_accepted_currency_and_refuses_unknown_ones() -> None:
    for code in CURRENCY_EXPONENTS:
        assert fx.usd_per_unit(code) > 0
        assert fx.to_usd_cents(10 ** CURRENCY_EXPONENTS[code], code) >= 0
    assert str(fx.usd_per_unit("eur")) == "1.08"
    with pytest.raises(UnknownCurrency):
        fx.to_usd_cents(100, "xyz")
