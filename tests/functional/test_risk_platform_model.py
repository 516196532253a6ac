"""The platform model end to end (issue 7, items 2 and 3): trained on the simulator at first start,
loaded by the api, scoring real payments with reasons for risky ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import pay

from bastionpay import bootstrap
from bastionpay.risk import platform
from bastionpay.risk.model import store
from bastionpay.risk.simulator import simulate
from bastionpay.runtime import risk_engine


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    platform.train_simulated_model(directory, events=8_000)
    return directory


def test_first_start_trains_and_activates_a_simulator_model(models_dir: Path) -> None:
    version = store.active_version(models_dir)
    assert version is not None
    assert platform.ensure_platform_model(models_dir) == version  # no second training
    manifest = store.read_manifest(models_dir, version)
    assert manifest["metrics"]["test"]["roc_auc"] > 0.8  # learnt something from the simulator


def test_fraud_scores_higher_than_legitimate_and_risky_scores_are_explained(
    models_dir: Path,
) -> None:
    scorer = platform.load_scorer(models_dir)
    fraud, legit = [], []
    for payment in simulate(3_000, seed=11):
        scored = scorer.score(payment.features)
        assert 0 <= scored.score <= 100 and scored.model_version == scorer.version
        (fraud if payment.scenario != "legitimate" else legit).append(scored)
        if scored.score < platform.EXPLAIN_FROM:
            assert scored.reasons == []
    assert sum(s.score for s in fraud) / len(fraud) > sum(s.score for s in legit) / len(legit)
    explained = [s for s in fraud if s.score >= platform.EXPLAIN_FROM]
    assert explained and all(s.reasons for s in explained)
    assert all(": " in reason for s in explained for reason in s.reasons)


def test_the_api_scores_payments_with_the_active_model(
    models_dir: Path, db_url: str, tmp_path: Path
) -> None:
    runtime = make_runtime(db_url, tmp_path, risk_enabled=False)
    settings = runtime.settings.model_copy(update={"risk_time_budget_ms": 5000})
    engine = risk_engine(settings.model_copy(update={"data_dir": tmp_path}), models_dir)
    runtime = type(runtime)(**{**runtime.__dict__, "risk": engine})
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        intent = pay(api, 2500).json()
        outcome = api.get(f"/v1/charges/{intent['latest_charge']}").json()["outcome"]
    assert isinstance(outcome["risk_score"], int)
    assert outcome["risk_level"] in ("normal", "elevated", "highest")
    runtime.db.dispose()
