"""Back-test counts on a small hand-made history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bastionpay.risk.rules import (
    Action,
    InMemoryListStore,
    Mode,
    PastPayment,
    RuleSet,
    RuleSetError,
    backtest,
    make_rule,
    summary,
)

LISTS = InMemoryListStore()


def paid(
    pid: str, score: int | None, amount: int, currency: str = "usd", **labels: bool
) -> dict[str, Any]:
    features = {} if score is None else {"risk_score": score}
    return {"id": pid, "features": features, "amount": amount, "currency": currency, **labels}


HISTORY: list[dict[str, Any]] = [
    paid("pi_1", 90, 10_000, fraud=True, disputed=True),
    paid("pi_2", 80, 5_000, fraud=True),
    paid("pi_3", 85, 2_000, "eur", fraud=False, refunded=True),
    paid("pi_4", 78, 1_000),  # unlabelled
    paid("pi_5", 40, 7_000, fraud=False),
    paid("pi_6", 20, 3_000, fraud=True),
    paid("pi_7", None, 500, fraud=False),  # no score recorded
    paid("pi_8", 60, 900, fraud=False),
]


def test_a_rule_alone() -> None:
    rule = make_rule("block if :risk_score: > 75", mode=Mode.SHADOW)  # tested as if live
    report = backtest(rule, HISTORY, LISTS)
    assert report.payments == 8
    assert report.matched.count == 4
    assert report.matched_ids == ["pi_1", "pi_2", "pi_3", "pi_4"]
    assert not report.matched_ids_truncated
    assert report.matched.amount == {"usd": 16_000, "eur": 2_000}
    assert (report.matched.fraud, report.matched.legitimate, report.matched.unlabelled) == (2, 1, 1)
    assert (report.matched.disputed, report.matched.refunded) == (1, 1)
    assert report.precision == pytest.approx(2 / 3)
    assert report.history.fraud == 3
    assert report.recall == pytest.approx(2 / 3)
    assert report.blocked.count == 4
    assert report.blocked.amount == {"usd": 16_000, "eur": 2_000}
    assert report.by_action[Action.ALLOW].count == 4
    assert report.comparison is None
    assert report.errors == 0


def test_change_against_the_current_rule_set() -> None:
    current = RuleSet(
        "acct_1",
        3,
        (
            make_rule("block if :risk_score: > 85", rule_id="rule_hi"),
            make_rule("review if :risk_score: > 50", rule_id="rule_mid"),
        ),
    )
    candidate = make_rule("block if :risk_score: > 75", rule_id="rule_new")
    report = backtest(candidate, iter(HISTORY), LISTS, baseline=current)
    comparison = report.comparison
    assert comparison is not None
    # Baseline: pi_1 blocked; pi_2, pi_3, pi_4, pi_8 in review; the rest allowed.
    assert comparison.baseline[Action.BLOCK].count == 1
    assert comparison.baseline[Action.REVIEW].count == 4
    # Candidate: pi_1-4 blocked, pi_8 still in review.
    assert comparison.candidate[Action.BLOCK].count == 4
    assert dict(comparison.changed) == {(Action.REVIEW, Action.BLOCK): 3}
    assert comparison.newly_blocked.count == 3
    assert comparison.newly_blocked.amount == {"usd": 6_000, "eur": 2_000}
    assert (comparison.newly_blocked.fraud, comparison.newly_blocked.legitimate) == (1, 1)
    assert comparison.no_longer_blocked.count == 0
    data = summary(report)
    assert data["comparison"]["changed"] == [{"from": "review", "to": "block", "count": 3}]
    assert data["matched"]["precision"] == pytest.approx(2 / 3)


def test_editing_a_rule_replaces_it_in_the_comparison() -> None:
    current = RuleSet("acct_1", 3, (make_rule("block if :risk_score: > 50", rule_id="rule_x"),))
    looser = make_rule("block if :risk_score: > 85", rule_id="rule_x")
    report = backtest(looser, HISTORY, LISTS, baseline=current)
    assert report.comparison is not None
    assert report.comparison.no_longer_blocked.count == 4  # pi_2, pi_3, pi_4, pi_8
    assert dict(report.comparison.changed) == {(Action.BLOCK, Action.ALLOW): 4}


def test_a_whole_rule_set() -> None:
    candidate = RuleSet(
        "acct_1",
        4,
        (
            make_rule("allow if :risk_score: < 30"),
            make_rule("review if :risk_score: >= 60 and :risk_score: <= 80"),
            make_rule("block if :risk_score: > 80", mode=Mode.SHADOW),  # does not act
        ),
    )
    report = backtest(candidate, HISTORY, LISTS)
    # Matched: a live rule matched. pi_6 by the allow rule; pi_2, pi_4, pi_8 by the review rule.
    assert report.matched_ids == ["pi_2", "pi_4", "pi_6", "pi_8"]
    assert report.by_action[Action.REVIEW].count == 3
    # pi_1 and pi_3 only match the shadow block rule: allowed, like pi_5, pi_6 and pi_7.
    assert report.by_action[Action.ALLOW].count == 5
    assert Action.BLOCK not in report.by_action


def test_streaming_bounded_sample_and_callback() -> None:
    def payments() -> Iterator[PastPayment]:
        for index in range(5_000):
            yield PastPayment(f"pi_{index}", {"amount": index}, 100, "usd", fraud=index % 2 == 0)

    seen: list[str] = []
    report = backtest(
        make_rule("block if :amount: >= 100"),
        payments(),
        LISTS,
        on_match=lambda payment, decision: seen.append(payment.id),
        max_sample=10,
    )
    assert report.payments == 5_000
    assert report.matched.count == 4_900
    assert len(report.matched_ids) == 10
    assert report.matched_ids_truncated
    assert len(seen) == 4_900
    assert report.precision == pytest.approx(0.5)


def test_bad_recorded_features_are_counted_not_fatal() -> None:
    history = [
        {"id": "pi_ok", "features": {"amount": 5}, "amount": 1, "currency": "usd"},
        {"id": "pi_bad", "features": {"amount": "five"}, "amount": 1, "currency": "usd"},
    ]
    report = backtest(make_rule("block if :amount: > 1"), history, LISTS)
    assert report.errors == 1
    assert report.error_ids == ["pi_bad"]
    assert report.matched.count == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"features": {}, "amount": 1, "currency": "usd"},
        {"id": "pi", "features": {}, "amount": 1.5, "currency": "usd"},
        {"id": "pi", "features": {}, "amount": True, "currency": "usd"},
        {"id": "pi", "features": {}, "amount": 1, "currency": "usd", "fraud": "yes"},
        {"id": "pi", "features": [], "amount": 1, "currency": "usd"},
    ],
)
def test_malformed_history_rows(bad: dict[str, Any]) -> None:
    with pytest.raises(RuleSetError):
        backtest(make_rule("block if :amount: > 1"), [bad], LISTS)


def test_a_time_budget_stops_the_replay_and_says_so() -> None:
    """One request must not replay for as long as the largest history takes (review M3)."""
    ticks = iter(range(100))
    rule = make_rule("block if :risk_score: > 75")
    report = backtest(rule, HISTORY, LISTS, time_budget=3, monotonic=lambda: float(next(ticks)))
    # Started at 0, the deadline is 3: payments at ticks 1, 2 and 3 are replayed, then it stops.
    assert report.truncated and report.payments == 3
    assert summary(report)["truncated"] is True
    whole = backtest(rule, HISTORY, LISTS, time_budget=60)
    assert not whole.truncated and whole.payments == len(HISTORY)
