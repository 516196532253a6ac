"""Scoring: 0–100, monotone in the probability, batch = one by one, one ML thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from bastionpay.risk.model import store
from bastionpay.risk.model.dataset import load_table
from bastionpay.risk.model.scorer import FAST_PATH_MAX_ROWS, ModelScorer
from bastionpay.risk.model.training import TrainedModel


@pytest.fixture
def scorer(trained: TrainedModel, tmp_path: Path) -> ModelScorer:
    store.save(trained, tmp_path, activate=True)
    return ModelScorer(store.load_active(tmp_path))


@pytest.fixture
def rows(synthetic_csv: Path) -> list[dict[str, Any]]:
    frame = load_table(synthetic_csv, label="label", time_column="time").frame
    return frame.head(400).to_dict(orient="records")


def test_scores_are_0_to_100_and_monotone_in_probability(
    scorer: ModelScorer, rows: list[dict[str, Any]]
) -> None:
    scores = np.array(scorer.score_batch(rows))
    probabilities = np.array(scorer.probability_batch(rows))
    assert ((scores >= 0) & (scores <= 100)).all()
    assert len(set(scores.round(6))) > 50  # a spread, not a constant
    order = np.argsort(probabilities, kind="stable")
    assert (np.diff(scores[order]) >= 0).all()
    assert (np.diff(probabilities[np.argsort(scores, kind="stable")]) >= 0).all()


def test_scorer_gives_the_trained_models_probabilities(
    scorer: ModelScorer, trained: TrainedModel, rows: list[dict[str, Any]]
) -> None:
    expected = trained.predict_probability(trained.schema.encode_rows(rows))
    np.testing.assert_allclose(scorer.probability_batch(rows), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        scorer.score_batch(rows), trained.mapping.scores(expected), rtol=0, atol=1e-9
    )


def test_batch_equals_one_by_one(scorer: ModelScorer, rows: list[dict[str, Any]]) -> None:
    sample = rows[:200]
    one_by_one = [scorer.score_one(r) for r in sample]
    # Small batches take the same (compiled) path as single rows: identical to the last bit.
    size = FAST_PATH_MAX_ROWS // 2
    small = [s for i in range(0, 200, size) for s in scorer.score_batch(sample[i : i + size])]
    assert small == one_by_one
    # Large batches go through scikit-learn: the trees' sums are added in another order.
    np.testing.assert_allclose(scorer.score_batch(sample), one_by_one, rtol=0, atol=1e-9)
    assert scorer.score_batch([]) == []


def test_missing_unknown_and_extra_keys(scorer: ModelScorer) -> None:
    assert scorer.inputs == ["amount", "country", "device_score", "is_new_card"]
    scores = scorer.score_batch(
        [
            {},
            {"amount": None, "country": "XX", "device_score": "", "is_new_card": None},
            {"amount": 40.0, "unrelated": object()},
        ]
    )
    assert all(0 <= s <= 100 for s in scores)
    assert scores[0] == scores[1]  # all missing either way
    assert scorer.level(74.9) == "elevated"
    assert scorer.level(75) == "highest"
    assert scorer.level(64.99) == "normal"


def test_scoring_runs_on_one_thread(
    scorer: ModelScorer, rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside every prediction, single or batched, all OpenMP and BLAS pools have one thread."""
    seen: list[tuple[str, list[int]]] = []

    def spy(name: str, original: Any) -> Any:
        def call(x: Any) -> Any:
            seen.append((name, [pool["num_threads"] for pool in threadpool_info()]))
            return original(x)

        return call

    trees, calibrator = scorer._trees, scorer._calibrator  # the two calls that compute
    monkeypatch.setattr(trees, "decision_function", spy("trees", trees.decision_function))
    monkeypatch.setattr(calibrator, "predict", spy("calibrator", calibrator.predict))
    with threadpool_limits(limits=2):  # the process default on this machine, made explicit
        scorer.score_one(rows[0])  # the compiled path
        scorer.score_batch(rows[:200])  # scikit-learn's path
        after = [pool["num_threads"] for pool in threadpool_info()]
    assert [name for name, _ in seen] == ["calibrator", "trees", "calibrator"]
    assert all(threads and threads == [1] * len(threads) for _, threads in seen)
    assert set(after) == {2}  # restored after each call
