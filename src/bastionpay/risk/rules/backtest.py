"""Back-testing: replay a rule or a rule set over past payments and count what it would have done.

Streaming: payments are read one at a time from any iterable (a database cursor, a CSV reader) and
only counters and a bounded sample of ids are kept, so a year of history costs constant memory.
Pass `on_match` to receive every matched payment (to write them somewhere) instead.

Semantics. A *rule* is tested as if it were live and enabled, whatever its current mode: matched
means its condition is true for the payment. The change against the current rule set compares,
per payment, the baseline decision with the decision of the baseline plus this rule (replacing a
rule of the same id, so editing a rule back-tests the edit). A *rule set* candidate is evaluated
as configured; matched means any of its live rules matched. Features are those recorded at payment
time; named lists are read as they are now. Labels: `fraud` True is known fraud, False is known
legitimate, absent is unlabelled; precision is fraud ÷ (fraud + legitimate) among matched payments
that carry a label, None when none do.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from bastionpay.risk.rules.decision import ACTION_ORDER, Action, Decision, Mode
from bastionpay.risk.rules.engine import Rule, RuleSet, evaluate_rules
from bastionpay.risk.rules.errors import RuleEvaluationError, RuleSetError
from bastionpay.risk.rules.predicate import FeatureView, ListLookup

MAX_SAMPLE: Final = 1_000


@dataclass(frozen=True, slots=True)
class PastPayment:
    id: str
    features: Mapping[str, object]
    amount: int  # minor units
    currency: str
    fraud: bool | None = None
    disputed: bool | None = None
    refunded: bool | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PastPayment:
        """From `{"id", "features", "amount", "currency", "fraud"?, "disputed"?, "refunded"?}`."""
        pid, features, amount, currency = (
            data.get("id"),
            data.get("features"),
            data.get("amount"),
            data.get("currency"),
        )
        if not isinstance(pid, str) or not isinstance(features, Mapping):
            raise RuleSetError("a past payment needs an 'id' and a 'features' mapping")
        if not isinstance(amount, int) or isinstance(amount, bool) or not isinstance(currency, str):
            raise RuleSetError("a past payment needs an integer 'amount' and a 'currency'")
        return cls(
            pid,
            features,
            amount,
            currency.lower(),
            _label(data, "fraud"),
            _label(data, "disputed"),
            _label(data, "refunded"),
        )


def _label(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise RuleSetError(f"past payment label {key!r} must be true, false or absent")


@dataclass(slots=True)
class OutcomeStats:
    count: int = 0
    amount: dict[str, int] = field(default_factory=dict)  # currency → minor units
    fraud: int = 0
    legitimate: int = 0
    unlabelled: int = 0
    disputed: int = 0
    refunded: int = 0

    def add(self, payment: PastPayment) -> None:
        self.count += 1
        self.amount[payment.currency] = self.amount.get(payment.currency, 0) + payment.amount
        if payment.fraud is True:
            self.fraud += 1
        elif payment.fraud is False:
            self.legitimate += 1
        else:
            self.unlabelled += 1
        self.disputed += payment.disputed is True
        self.refunded += payment.refunded is True

    @property
    def precision(self) -> float | None:
        labelled = self.fraud + self.legitimate
        return self.fraud / labelled if labelled else None


@dataclass(slots=True)
class Comparison:
    """Baseline (the current rule set) against the candidate, payment by payment."""

    baseline: dict[Action, OutcomeStats] = field(default_factory=dict)
    candidate: dict[Action, OutcomeStats] = field(default_factory=dict)
    changed: Counter[tuple[Action, Action]] = field(default_factory=Counter)  # (from, to) → n
    newly_blocked: OutcomeStats = field(default_factory=OutcomeStats)
    no_longer_blocked: OutcomeStats = field(default_factory=OutcomeStats)


@dataclass(slots=True)
class BacktestReport:
    payments: int = 0
    history: OutcomeStats = field(default_factory=OutcomeStats)  # all payments read
    matched: OutcomeStats = field(default_factory=OutcomeStats)
    matched_ids: list[str] = field(default_factory=list)  # first MAX_SAMPLE
    by_action: dict[Action, OutcomeStats] = field(default_factory=dict)  # candidate's decisions
    comparison: Comparison | None = None
    errors: int = 0  # payments whose recorded features could not be evaluated
    error_ids: list[str] = field(default_factory=list)
    # The time budget ran out before every payment was replayed: the figures cover `payments`.
    truncated: bool = False

    @property
    def matched_ids_truncated(self) -> bool:
        return self.matched.count > len(self.matched_ids)

    @property
    def precision(self) -> float | None:
        return self.matched.precision

    @property
    def recall(self) -> float | None:
        """Share of all known fraud in the history that the candidate matched."""
        return self.matched.fraud / self.history.fraud if self.history.fraud else None

    @property
    def blocked(self) -> OutcomeStats:
        return self.by_action.get(Action.BLOCK, OutcomeStats())


def _stats(table: dict[Action, OutcomeStats], action: Action) -> OutcomeStats:
    if action not in table:
        table[action] = OutcomeStats()
    return table[action]


def backtest(
    candidate: Rule | RuleSet,
    payments: Iterable[PastPayment | Mapping[str, Any]],
    lists: ListLookup,
    *,
    baseline: RuleSet | None = None,
    three_ds_completed: bool = False,
    on_match: Callable[[PastPayment, Decision], None] | None = None,
    max_sample: int = MAX_SAMPLE,
    time_budget: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> BacktestReport:
    """Replay `candidate` over `payments`; with `time_budget` (seconds), stop when it runs out and
    mark the report `truncated` — one request must not hold a worker and the database for as long
    as the largest rule set times the longest history takes (security review M3)."""
    deadline = None if time_budget is None else monotonic() + time_budget
    report = BacktestReport(comparison=Comparison() if baseline is not None else None)
    rule = candidate if isinstance(candidate, Rule) else None
    if isinstance(candidate, Rule):
        live = replace(candidate, mode=Mode.LIVE, enabled=True)
        others = baseline.rules if baseline is not None else ()
        candidate_rules: tuple[Rule, ...] = (*(r for r in others if r.id != live.id), live)
        candidate_version = None
    else:
        candidate_rules = candidate.rules
        candidate_version = candidate.version
    for item in payments:
        if deadline is not None and monotonic() > deadline:
            report.truncated = True
            break
        payment = item if isinstance(item, PastPayment) else PastPayment.from_mapping(item)
        report.payments += 1
        report.history.add(payment)
        try:
            view = FeatureView(payment.features)
            decision = _decide(candidate_rules, view, lists, three_ds_completed, candidate_version)
            matched = (
                rule.predicate.matches(view, lists) if rule is not None else bool(decision.matches)
            )
            before = (
                baseline.evaluate(view, lists, three_ds_completed=three_ds_completed)
                if baseline is not None
                else None
            )
        except RuleEvaluationError:
            report.errors += 1
            if len(report.error_ids) < max_sample:
                report.error_ids.append(payment.id)
            continue
        _stats(report.by_action, decision.action).add(payment)
        if matched:
            report.matched.add(payment)
            if len(report.matched_ids) < max_sample:
                report.matched_ids.append(payment.id)
            if on_match is not None:
                on_match(payment, decision)
        if report.comparison is not None and before is not None:
            _compare(report.comparison, payment, before.action, decision.action)
    return report


def _decide(
    rules: tuple[Rule, ...],
    view: FeatureView,
    lists: ListLookup,
    three_ds_completed: bool,
    version: int | None,
) -> Decision:
    return evaluate_rules(
        rules, view, lists, three_ds_completed=three_ds_completed, ruleset_version=version
    )


def _compare(comparison: Comparison, payment: PastPayment, before: Action, after: Action) -> None:
    _stats(comparison.baseline, before).add(payment)
    _stats(comparison.candidate, after).add(payment)
    if before is after:
        return
    comparison.changed[(before, after)] += 1
    if after is Action.BLOCK:
        comparison.newly_blocked.add(payment)
    elif before is Action.BLOCK:
        comparison.no_longer_blocked.add(payment)


def summary(report: BacktestReport) -> dict[str, Any]:
    """The report as JSON-safe data (for the API and CLI)."""

    def stats(s: OutcomeStats) -> dict[str, Any]:
        return {
            "count": s.count,
            "amount": dict(sorted(s.amount.items())),
            "fraud": s.fraud,
            "legitimate": s.legitimate,
            "unlabelled": s.unlabelled,
            "disputed": s.disputed,
            "refunded": s.refunded,
            "precision": s.precision,
        }

    out: dict[str, Any] = {
        "payments": report.payments,
        "truncated": report.truncated,
        "errors": report.errors,
        "history": stats(report.history),
        "matched": stats(report.matched),
        "matched_ids": list(report.matched_ids),
        "matched_ids_truncated": report.matched_ids_truncated,
        "recall": report.recall,
        "by_action": {
            a.value: stats(report.by_action[a]) for a in ACTION_ORDER if a in report.by_action
        },
    }
    if report.comparison is not None:
        c = report.comparison
        out["comparison"] = {
            "baseline": {a.value: stats(c.baseline[a]) for a in ACTION_ORDER if a in c.baseline},
            "candidate": {a.value: stats(c.candidate[a]) for a in ACTION_ORDER if a in c.candidate},
            "changed": [
                {"from": before.value, "to": after.value, "count": n}
                for (before, after), n in sorted(c.changed.items())
            ],
            "newly_blocked": stats(c.newly_blocked),
            "no_longer_blocked": stats(c.no_longer_blocked),
        }
    return out
