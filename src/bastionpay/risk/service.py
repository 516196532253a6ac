"""Risk decisions in the payment path (issue 7, items 2 and 5).

`RiskEngine.assess` runs inside the confirmation's unit of work, before the authorization:
features (SQL) → score (the active model, in a worker thread under the time budget) → rules →
one of `allow`, `review`, `block`, `request_3ds`. The assessment row records the decision and its
inputs in the same transaction as the payment (P2), and becomes the velocity counters' history.

Failure policy (P3, per merchant, default `closed`): when features or scoring raise or overrun
`risk_time_budget_ms`, a `closed` merchant's payment is not processed (503 `risk_unavailable`,
retryable: nothing is committed), an `open` merchant's proceeds with `risk_level: not_assessed`
and the error recorded. Either way the failure is counted and logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.kernel.errors import ServiceUnavailable
from bastionpay.kernel.ids import new_id
from bastionpay.observability.metrics import METRICS
from bastionpay.risk import features as feature_sql
from bastionpay.risk.features import PaymentSignals
from bastionpay.risk.models import RiskAssessment
from bastionpay.risk.rules.errors import RuleEvaluationError

log = logging.getLogger("bastionpay.risk")

Action = Literal["allow", "review", "block", "request_3ds"]
Level = Literal["normal", "elevated", "highest", "not_assessed"]
TestRisk = Literal["block", "highest", "elevated"]


@dataclass(frozen=True)
class Scored:
    score: int  # 0–100
    reasons: list[str]
    model_version: str


class Scorer(Protocol):
    def score(self, features: dict[str, Any]) -> Scored: ...


@dataclass(frozen=True)
class RuleOutcome:
    action: Action
    rule: dict[str, Any] | None = None  # {"id", "predicate", "action"} of the deciding rule
    shadow: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


class Rules(Protocol):
    def decide(
        self,
        session: Session,
        merchant_id: str,
        livemode: bool,
        now: int,
        attributes: dict[str, Any],
        *,
        three_ds_completed: bool = False,
    ) -> RuleOutcome: ...


@dataclass(frozen=True)
class Thresholds:
    elevated: int = 65
    highest: int = 75

    def level(self, score: int) -> Level:
        if score >= self.highest:
            return "highest"
        return "elevated" if score >= self.elevated else "normal"


@dataclass(frozen=True)
class Assessment:
    id: str
    score: int | None
    level: Level
    action: Action
    reasons: list[str]
    rule: dict[str, Any] | None
    shadow: list[dict[str, Any]]
    model_version: str | None
    error: str | None = None
    # The recorded row, so the outcome can be settled without another query.
    row: RiskAssessment | None = field(default=None, compare=False, repr=False)

    def charge_outcome(self) -> dict[str, Any]:
        """The risk part of Stripe's `charge.outcome`."""
        return {
            "risk_level": self.level,
            "risk_score": self.score,
            "rule": self.rule,
            "reasons": self.reasons,  # BastionPay: the top reasons in plain words
        }


# Stripe's test cards force a risk evaluation (shared/reference: "Fraud (Radar-like) test cards").
_TEST_SCORES: dict[TestRisk, int] = {"block": 99, "highest": 90, "elevated": 70}


class RiskEngine:
    def __init__(
        self,
        scorer: Scorer,
        rules: Rules,
        *,
        thresholds: Thresholds | None = None,
        budget_ms: int = 50,
        default_policy: Literal["open", "closed"] = "closed",
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.scorer = scorer
        self.rules = rules
        self.thresholds = thresholds or Thresholds()
        self.budget_s = budget_ms / 1000
        self.default_policy = default_policy
        self._monotonic = monotonic
        # Scoring runs here so a slow model can be abandoned at the deadline; one thread per
        # concurrent payment is plenty (the pipeline itself runs api_concurrency at once).
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="risk-score")

    def assess(
        self,
        session: Session,
        signals: PaymentSignals,
        *,
        payment_intent_id: str,
        charge_id: str | None,
        policy: str | None = None,
        test_risk: TestRisk | None = None,
    ) -> Assessment:
        started = self._monotonic()
        effective_policy = policy or self.default_policy
        try:
            # A savepoint, so a failed feature query leaves the payment's transaction usable
            # when the policy is to go on (PostgreSQL aborts the whole transaction otherwise).
            with session.begin_nested():
                features = feature_sql.compute(session, signals)
            scored = self._score(features, started, test_risk)
            level = self.thresholds.level(scored.score)
            attributes = {**features, "risk_score": scored.score, "risk_level": level}
            # The rules read lists from the database and may meet a bad feature value or a list
            # deleted under them: inside the policy too, never an unhandled 500 (P3).
            with session.begin_nested():
                ruled = self.rules.decide(
                    session, signals.merchant_id, signals.livemode, signals.now, attributes
                )
        except Exception as exc:  # noqa: BLE001 - every failure of risk meets the policy (P3)
            reason = "timeout" if isinstance(exc, FutureTimeout) else type(exc).__name__
            METRICS.risk_failures.labels(reason, effective_policy).inc()
            log.warning("risk assessment failed (%s); policy %s", reason, effective_policy)
            # A rule that cannot evaluate its inputs fails closed whatever the policy: failing
            # open would let input, not an outage, switch off block lists (security review M2).
            if effective_policy == "closed" or isinstance(exc, RuleEvaluationError):
                raise ServiceUnavailable(
                    "Risk assessment is temporarily unavailable, so this payment was not "
                    "processed. Retry with the same idempotency key.",
                    code="risk_unavailable",
                ) from None
            assessment = Assessment(
                id=new_id("rsk"),
                score=None,
                level="not_assessed",
                action="allow",
                reasons=[],
                rule=None,
                shadow=[],
                model_version=None,
                error=reason,
            )
            row = self._record(session, signals, {}, assessment, payment_intent_id, charge_id)
            return replace(assessment, row=row)
        if test_risk == "block":
            ruled = RuleOutcome(
                "block",
                {"id": "test_card_always_blocked", "predicate": "test card", "action": "block"},
                ruled.shadow,
                ["this test card is always blocked"],
            )
        assessment = Assessment(
            id=new_id("rsk"),
            score=scored.score,
            level=level,
            action=ruled.action,
            reasons=(ruled.reasons + scored.reasons)[:5],
            rule=ruled.rule,
            shadow=ruled.shadow,
            model_version=scored.model_version,
        )
        METRICS.risk_decisions.labels(assessment.action, (ruled.rule or {}).get("id", "")).inc()
        METRICS.risk_scores.observe(scored.score)
        METRICS.risk_latency.observe(self._monotonic() - started)
        row = self._record(session, signals, features, assessment, payment_intent_id, charge_id)
        return replace(assessment, row=row)

    def _score(
        self, features: dict[str, Any], started: float, test_risk: TestRisk | None
    ) -> Scored:
        remaining = self.budget_s - (self._monotonic() - started)
        if remaining <= 0:
            raise FutureTimeout
        scored = self._pool.submit(self.scorer.score, features).result(timeout=remaining)
        if test_risk is not None:
            scored = replace(
                scored,
                score=_TEST_SCORES[test_risk],
                reasons=[f"test card with risk level {test_risk}", *scored.reasons],
            )
        return scored

    def _record(
        self,
        session: Session,
        s: PaymentSignals,
        features: dict[str, Any],
        a: Assessment,
        payment_intent_id: str,
        charge_id: str | None,
    ) -> RiskAssessment:
        row = RiskAssessment(
            id=a.id,
            merchant_id=s.merchant_id,
            livemode=s.livemode,
            created=s.now,
            payment_intent_id=payment_intent_id,
            charge_id=charge_id,
            card_fingerprint=s.card_fingerprint,
            customer_id=s.customer_id,
            email=s.email.lower() if s.email else None,
            ip_address=s.ip_address,
            device_id=s.device_id,
            amount_usd_cents=s.amount_usd_cents,
            outcome="pending",
            score=a.score,
            level=a.level,
            action=a.action,
            rule=a.rule,
            reasons=a.reasons,
            features=features,
            shadow=a.shadow,
            model_version=a.model_version,
            error=a.error,
        )
        session.add(row)
        return row

    def reassess(
        self,
        session: Session,
        assessment_id: str,
        *,
        now: int,
        authenticated: bool,
        policy: str | None = None,
    ) -> Assessment | None:
        """The rules again after 3-D Secure, on the features and score recorded before it.

        `three_ds_completed=True` keeps `request_3ds` rules from acting a second time (no loop),
        and `:is_3ds_authenticated:` is set (rules/decision.py). Features are not recomputed: the
        payment is the same, and counting its first assessment would inflate its own velocity.
        The recorded row is updated in place. A failing rule meets the failure policy (P3).
        """
        row = session.scalar(select(RiskAssessment).where(RiskAssessment.id == assessment_id))
        if row is None:
            return None
        attributes = {
            **(row.features or {}),
            "risk_score": row.score,
            "risk_level": row.level,
            "is_3ds_authenticated": authenticated,
        }
        effective_policy = policy or self.default_policy
        try:
            with session.begin_nested():
                ruled = self.rules.decide(
                    session, row.merchant_id, row.livemode, now, attributes, three_ds_completed=True
                )
        except Exception as exc:  # noqa: BLE001 - every failure of risk meets the policy (P3)
            reason = type(exc).__name__
            METRICS.risk_failures.labels(reason, effective_policy).inc()
            log.warning("risk re-assessment failed (%s); policy %s", reason, effective_policy)
            # A rule that cannot evaluate its inputs fails closed whatever the policy: failing
            # open would let input, not an outage, switch off block lists (security review M2).
            if effective_policy == "closed" or isinstance(exc, RuleEvaluationError):
                raise ServiceUnavailable(
                    "Risk assessment is temporarily unavailable, so this payment was not "
                    "processed. Retry.",
                    code="risk_unavailable",
                ) from None
            ruled = RuleOutcome("allow")
        if ruled.action == "request_3ds":  # pragma: no cover - resolve() skips it once completed
            ruled = RuleOutcome("allow", shadow=ruled.shadow)
        row.action = ruled.action
        row.rule = ruled.rule
        row.shadow = ruled.shadow
        row.reasons = (ruled.reasons + list(row.reasons or []))[:5]
        METRICS.risk_decisions.labels(ruled.action, (ruled.rule or {}).get("id", "")).inc()
        return Assessment(
            id=row.id,
            score=row.score,
            level=row.level,  # type: ignore[arg-type]  # a Level when it was recorded
            action=ruled.action,
            reasons=list(row.reasons),
            rule=ruled.rule,
            shadow=ruled.shadow,
            model_version=row.model_version,
            error=row.error,
            row=row,
        )

    @staticmethod
    def settle(assessment: Assessment, outcome: str) -> None:
        """Record how the attempt ended (authorized, declined, blocked, review)."""
        if assessment.row is not None:
            assessment.row.outcome = outcome
