"""Risk decisions through the API (issue 7, items 2, 5, 6): allow, block, review, failure policy.

The model is replaced here by scorers with known answers, so each decision path is driven on
purpose; the real model's scoring is covered in tests/unit/risk and by `make bench-risk`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import assert_ledger_ok, pay

from bastionpay import bootstrap
from bastionpay.db.uow import unit_of_work
from bastionpay.ledger.models import LedgerTransaction
from bastionpay.merchants import service as merchants
from bastionpay.observability.metrics import METRICS
from bastionpay.payments.interfaces import AuthorizationRequest, AuthorizationResult
from bastionpay.payments.sandbox import SandboxConnector
from bastionpay.risk.models import Review, RiskAssessment, RiskLabel
from bastionpay.risk.rule_store import MerchantRules
from bastionpay.risk.rules.errors import FeatureValueError
from bastionpay.risk.service import RiskEngine, RuleOutcome, Scored
from bastionpay.runtime import Runtime


class FixedScorer:
    def __init__(self, score: int = 12, delay: float = 0.0) -> None:
        self.value = score
        self.delay = delay

    def score(self, features: dict[str, Any]) -> Scored:
        time.sleep(self.delay)
        return Scored(self.value, ["a fixed score for this test"], "test-fixed")


class ReviewEverything:
    RULE: ClassVar[dict[str, str]] = {
        "id": "rule_review_all",
        "predicate": ":amount_in_usd: > 0",
        "action": "review",
    }

    def decide(
        self,
        session: Session,
        merchant_id: str,
        livemode: bool,
        now: int,
        attributes: dict[str, Any],
    ) -> RuleOutcome:
        return RuleOutcome("review", dict(self.RULE), reasons=["every payment is reviewed"])


class CountingConnector(SandboxConnector):
    def __init__(self) -> None:
        self.authorizations = 0

    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult:
        self.authorizations += 1
        return super().authorize(request)


def _runtime(db_url: str, tmp_path: Path, engine: RiskEngine, **settings: Any) -> Runtime:
    runtime = make_runtime(db_url, tmp_path, connector=CountingConnector(), **settings)
    return Runtime(**{**runtime.__dict__, "risk": engine})


@pytest.fixture
def risky(db_url: str, tmp_path: Path) -> Iterator[tuple[Runtime, TestClient]]:
    runtime = _runtime(db_url, tmp_path, RiskEngine(FixedScorer(), MerchantRules(), budget_ms=5000))
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        yield runtime, api
    runtime.db.dispose()


def _assessments(runtime: Runtime, intent_id: str) -> list[RiskAssessment]:
    with unit_of_work(runtime.db, write=False) as session:
        return list(
            session.scalars(
                select(RiskAssessment).where(RiskAssessment.payment_intent_id == intent_id)
            )
        )


def _charge(api: TestClient, intent: dict[str, Any]) -> dict[str, Any]:
    charge: dict[str, Any] = api.get(f"/v1/charges/{intent['latest_charge']}").json()
    return charge


def test_an_allowed_payment_carries_its_score_and_the_decision_is_recorded(
    risky: tuple[Runtime, TestClient],
) -> None:
    runtime, api = risky
    response = pay(api, 2500, **{"radar_options[ip_address]": "203.0.113.9"})
    assert response.status_code == 200
    intent = response.json()
    outcome = _charge(api, intent)["outcome"]
    assert outcome["type"] == "authorized"
    assert outcome["risk_level"] == "normal" and outcome["risk_score"] == 12
    assert outcome["reasons"] == ["a fixed score for this test"]
    [row] = _assessments(runtime, intent["id"])
    assert row.outcome == "authorized" and row.action == "allow" and row.score == 12
    assert row.ip_address == "203.0.113.9" and row.model_version == "test-fixed"
    assert row.features["amount_in_usd"] == 25.0
    assert row.features["card_brand"] == "visa"


def test_radar_block_test_card_is_blocked_before_the_network(
    risky: tuple[Runtime, TestClient],
) -> None:
    runtime, api = risky
    connector = runtime.connector
    assert isinstance(connector, CountingConnector)
    before = connector.authorizations
    decisions = METRICS.risk_decisions.labels("block", "test_card_always_blocked")._value.get()
    response = pay(api, pm="pm_card_radarBlock")
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "card_declined" and error["decline_code"] == "fraudulent"
    intent = error["payment_intent"]
    assert intent["status"] == "requires_payment_method"
    outcome = _charge(api, intent)["outcome"]
    assert outcome["type"] == "blocked" and outcome["network_status"] == "not_sent_to_network"
    assert outcome["risk_level"] == "highest"
    assert connector.authorizations == before  # never sent to the network
    assert _assessments(runtime, intent["id"])[0].outcome == "blocked"
    assert (
        METRICS.risk_decisions.labels("block", "test_card_always_blocked")._value.get()
        == decisions + 1
    )
    with unit_of_work(runtime.db, write=False) as session:
        postings = session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.source_id == intent["latest_charge"])
        )
    assert postings == 0
    assert_ledger_ok(runtime)


def test_highest_risk_is_blocked_by_the_default_rule_and_elevated_passes(
    risky: tuple[Runtime, TestClient],
) -> None:
    _, api = risky
    highest = pay(api, pm="pm_card_riskLevelHighest")
    assert highest.status_code == 402
    outcome = _charge(api, highest.json()["error"]["payment_intent"])["outcome"]
    assert outcome["reason"] == "highest_risk_level"
    assert outcome["rule"]["id"] == "rule_default_block_highest_risk"
    elevated = pay(api, pm="pm_card_riskLevelElevated")
    assert elevated.status_code == 200 and elevated.json()["status"] == "succeeded"
    assert _charge(api, elevated.json())["outcome"]["risk_level"] == "elevated"


@pytest.fixture
def reviewing(db_url: str, tmp_path: Path) -> Iterator[tuple[Runtime, TestClient]]:
    runtime = _runtime(
        db_url, tmp_path, RiskEngine(FixedScorer(40), ReviewEverything(), budget_ms=5000)
    )
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        yield runtime, api
    runtime.db.dispose()


def _labels(runtime: Runtime, intent_id: str) -> list[tuple[str, str]]:
    with unit_of_work(runtime.db, write=False) as session:
        rows = session.scalars(select(RiskLabel).where(RiskLabel.payment_intent_id == intent_id))
        return [(r.label, r.source) for r in rows]


def test_review_holds_the_money_until_approved(reviewing: tuple[Runtime, TestClient]) -> None:
    runtime, api = reviewing
    intent = pay(api, 5000).json()
    assert intent["status"] == "requires_capture" and intent["review"].startswith("prv_")
    assert _charge(api, intent)["outcome"]["type"] == "manual_review"
    refused = api.post(f"/v1/payment_intents/{intent['id']}/capture")
    assert refused.status_code == 400 and "held for review" in refused.json()["error"]["message"]
    listed = api.get("/v1/reviews").json()["data"]
    assert [r["id"] for r in listed] == [intent["review"]] and listed[0]["open"] is True
    approved = api.post(f"/v1/reviews/{intent['review']}/approve")
    assert approved.status_code == 200
    assert approved.json()["open"] is False and approved.json()["closed_reason"] == "approved"
    after = api.get(f"/v1/payment_intents/{intent['id']}").json()
    assert after["status"] == "succeeded" and after["amount_received"] == 5000
    assert after["review"] is None
    assert _labels(runtime, intent["id"]) == [("legit", "review")]
    again = api.post(f"/v1/reviews/{intent['review']}/approve")
    assert again.status_code == 400
    assert_ledger_ok(runtime)


def test_rejecting_a_review_voids_and_labels_fraud(reviewing: tuple[Runtime, TestClient]) -> None:
    runtime, api = reviewing
    intent = pay(api, 7000).json()
    rejected = api.post(f"/v1/reviews/{intent['review']}/reject")
    assert rejected.status_code == 200
    assert rejected.json()["closed_reason"] == "refunded_as_fraud"
    after = api.get(f"/v1/payment_intents/{intent['id']}").json()
    assert after["status"] == "canceled" and after["cancellation_reason"] == "fraudulent"
    assert _labels(runtime, intent["id"]) == [("fraud", "cancel")]
    balance = api.get("/v1/balance").json()
    assert all(entry["amount"] == 0 for entry in balance["pending"] + balance["available"])
    assert_ledger_ok(runtime)


def test_manual_capture_after_an_approved_review(reviewing: tuple[Runtime, TestClient]) -> None:
    _, api = reviewing
    intent = pay(api, 3000, capture_method="manual").json()
    api.post(f"/v1/reviews/{intent['review']}/approve")
    assert api.get(f"/v1/payment_intents/{intent['id']}").json()["status"] == "requires_capture"
    captured = api.post(f"/v1/payment_intents/{intent['id']}/capture")
    assert captured.status_code == 200 and captured.json()["status"] == "succeeded"


def test_reviews_need_the_review_permission(reviewing: tuple[Runtime, TestClient]) -> None:
    runtime, api = reviewing
    intent = pay(api, 3000).json()
    with unit_of_work(runtime.db, write=True) as session:
        reader = merchants.issue_key(
            session,
            runtime.api_keys,
            merchant_id=_merchant_of(runtime, intent["id"]),
            kind="restricted",
            livemode=False,
            now=runtime.clock.now(),
            permissions=frozenset({"risk:read"}),
        )
    with api_client(runtime, reader.plaintext) as limited:
        assert limited.get(f"/v1/reviews/{intent['review']}").status_code == 200
        denied = limited.post(f"/v1/reviews/{intent['review']}/approve")
        assert denied.status_code == 403


def _merchant_of(runtime: Runtime, intent_id: str) -> str:
    with unit_of_work(runtime.db, write=False) as session:
        review = session.scalar(select(Review).where(Review.payment_intent_id == intent_id))
        assert review is not None
        return review.merchant_id


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_a_scoring_timeout_follows_the_failure_policy(
    db_url: str, tmp_path: Path, policy: str
) -> None:
    engine = RiskEngine(
        FixedScorer(delay=0.5), MerchantRules(), budget_ms=50, default_policy="closed"
    )
    runtime = _runtime(db_url, tmp_path, engine)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    if policy == "open":
        with unit_of_work(runtime.db, write=True) as session:
            merchants.set_risk_policy(session, merchant["id"], "open")
    failures = METRICS.risk_failures.labels("timeout", policy)._value.get()
    with api_client(runtime, merchant["secret_key"]) as api:
        response = pay(api, 1000)
        if policy == "closed":
            # P3: not processed, nothing committed, safe to retry with the same key.
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "risk_unavailable"
            assert api.get("/v1/payment_intents").json()["data"] == []
        else:
            assert response.status_code == 200 and response.json()["status"] == "succeeded"
            outcome = _charge(api, response.json())["outcome"]
            assert outcome["risk_level"] == "not_assessed" and outcome["risk_score"] is None
            [row] = _assessments(runtime, response.json()["id"])
            assert row.error == "timeout" and row.outcome == "authorized"
    assert METRICS.risk_failures.labels("timeout", policy)._value.get() == failures + 1
    runtime.db.dispose()


def test_radar_options_are_validated(risky: tuple[Runtime, TestClient]) -> None:
    _, api = risky
    bad_country = pay(api, **{"radar_options[ip_country]": "USA"})
    assert bad_country.status_code == 400
    assert bad_country.json()["error"]["param"] == "radar_options[ip_country]"
    unknown = pay(api, **{"radar_options[shoe_size]": "42"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "parameter_unknown"
    # Values that fit no kind are the caller's 400, never a rule-set failure (review M2).
    for name, value in (("ip_address", "not-an-ip"), ("ip_address", "1.2.3"), ("ip_country", "1!")):
        refused = pay(api, **{f"radar_options[{name}]": value})
        assert refused.status_code == 400, (name, value)
        assert refused.json()["error"]["param"] == f"radar_options[{name}]"
    accepted = pay(
        api, **{"radar_options[ip_address]": "2001:DB8::1", "radar_options[ip_country]": "us"}
    )
    assert accepted.status_code == 200


class BrokenRules:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or RuntimeError("a list was deleted under a live rule")

    def decide(
        self,
        session: Session,
        merchant_id: str,
        livemode: bool,
        now: int,
        attributes: dict[str, Any],
    ) -> RuleOutcome:
        raise self.error


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_a_failing_rules_step_follows_the_failure_policy(
    db_url: str, tmp_path: Path, policy: str
) -> None:
    engine = RiskEngine(FixedScorer(), BrokenRules(), budget_ms=5000, default_policy="closed")
    runtime = _runtime(db_url, tmp_path, engine)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    if policy == "open":
        with unit_of_work(runtime.db, write=True) as session:
            merchants.set_risk_policy(session, merchant["id"], "open")
    with api_client(runtime, merchant["secret_key"]) as api:
        response = pay(api, 1000)
        if policy == "closed":
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "risk_unavailable"
        else:
            assert response.status_code == 200
            [row] = _assessments(runtime, response.json()["id"])
            assert row.error == "RuntimeError" and row.level == "not_assessed"
    runtime.db.dispose()


def test_a_rule_that_cannot_evaluate_its_inputs_fails_closed_even_under_an_open_policy(
    db_url: str, tmp_path: Path
) -> None:
    """Fail-open is for outages; letting a bad input switch off block lists is not (review M2)."""
    broken = BrokenRules(FeatureValueError("ip_address", "not an IPv4 or IPv6 address"))
    engine = RiskEngine(FixedScorer(), broken, budget_ms=5000, default_policy="open")
    runtime = _runtime(db_url, tmp_path, engine)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        response = pay(api, 1000)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "risk_unavailable"
    runtime.db.dispose()
