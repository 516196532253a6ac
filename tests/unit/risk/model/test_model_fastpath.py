"""The compiled trees give scikit-learn's decision function, and the scorer falls back safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastionpay.risk.model import fastpath, store
from bastionpay.risk.model.fastpath import CompiledTrees, FastPathUnavailable, compile_checked
from bastionpay.risk.model.scorer import FAST_PATH_MAX_ROWS, ModelScorer
from bastionpay.risk.model.training import TrainedModel, TrainingConfig, train


def random_rows(n: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "amount": str(a),
            "country": c,
            "device_score": d,
            "is_new_card": f,
        }
        for a, c, d, f in zip(
            rng.lognormal(3.5, 1.5, n),
            rng.choice(["FR", "US", "NG", "BR", "ZZ", "", None], n),
            rng.choice(["-3", "-0.5", "0", "0.7", "2.5", "", None], n),
            rng.choice(["true", "false", None], n),
            strict=True,
        )
    ]


@pytest.mark.parametrize("exclude", [(), ("country",)], ids=["categorical", "numeric-only"])
def test_compiled_trees_equal_sklearn(synthetic_csv: Path, exclude: tuple[str, ...]) -> None:
    config = TrainingConfig(
        max_iter=80,
        iteration_step=80,
        max_leaf_nodes=(31,),
        l2_regularization=(1.0,),
        positive_weights=("sqrt",),
        exclude=exclude,
        baseline=False,
    )
    model = train(synthetic_csv, "label", "time", config=config)
    compiled = compile_checked(model.trees)
    assert (compiled.n_categorical > 0) == (not exclude)
    x = model.schema.encode_rows(random_rows(3000))
    assert np.isnan(x).any()
    np.testing.assert_allclose(
        compiled.decision_function(x), model.trees.decision_function(x), rtol=0, atol=1e-12
    )
    one = compiled.decision_function(x[:1])
    assert one.shape == (1,)
    assert one[0] == compiled.decision_function(x[:50])[0]  # a row's result is its own


def test_a_disagreeing_compilation_is_refused(
    trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = CompiledTrees._compile

    def off_by_one_threshold(self: CompiledTrees, trees: Any) -> None:
        original(self, trees)
        self.threshold = self.threshold + 1.0

    monkeypatch.setattr(CompiledTrees, "_compile", off_by_one_threshold)
    with pytest.raises(FastPathUnavailable, match="differ from sklearn"):
        compile_checked(trained.trees)


def test_the_scorer_uses_the_fast_path_for_small_batches_only(
    trained: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(trained, tmp_path, activate=True)
    scorer = ModelScorer(store.load_active(tmp_path))
    assert scorer.fast_path
    rows = random_rows(FAST_PATH_MAX_ROWS + 1)
    calls: list[int] = []
    compiled = scorer._compiled
    assert compiled is not None
    original = compiled.decision_function

    def counting(x: Any) -> Any:
        calls.append(len(x))
        return original(x)

    monkeypatch.setattr(compiled, "decision_function", counting)
    single = scorer.score_one(rows[0])
    small = scorer.score_batch(rows[:FAST_PATH_MAX_ROWS])
    large = scorer.score_batch(rows)  # one row too many: scikit-learn's path
    assert calls == [1, FAST_PATH_MAX_ROWS]
    assert small[0] == single
    np.testing.assert_allclose(large[:FAST_PATH_MAX_ROWS], small, rtol=0, atol=1e-7)


def test_the_scorer_falls_back_when_compilation_fails(
    trained: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(trained, tmp_path, activate=True)
    loaded = store.load_active(tmp_path)
    reference = ModelScorer(loaded).score_batch(random_rows(20))

    def unavailable(trees: Any) -> CompiledTrees:
        raise FastPathUnavailable("not today")

    monkeypatch.setattr("bastionpay.risk.model.scorer.compile_checked", unavailable)
    fallback = ModelScorer(loaded)
    assert not fallback.fast_path
    np.testing.assert_allclose(fallback.score_batch(random_rows(20)), reference, atol=1e-7)
    assert not ModelScorer(loaded, fast_path=False).fast_path
    assert fastpath.PROBE_ROWS >= 256
