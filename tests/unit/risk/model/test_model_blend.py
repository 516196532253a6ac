"""The blend's non-tree parts: the design matrix, the logistic regression, the neural network;
trained, saved, loaded and scored together with the trees. Synthetic data only."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from bastionpay.risk.model import neural, store
from bastionpay.risk.model.cli import _training_config
from bastionpay.risk.model.dataset import load_table, split_table
from bastionpay.risk.model.design import Design
from bastionpay.risk.model.errors import ModelLoadError
from bastionpay.risk.model.linear import C_PER_ROW, LinearPart, blend, fit_linear
from bastionpay.risk.model.neural import NeuralPart, fit_neural
from bastionpay.risk.model.schema import infer_schema
from bastionpay.risk.model.scorer import ModelScorer
from bastionpay.risk.model.training import (
    TrainedModel,
    TrainingConfig,
    calibrated_probability,
    train,
)


@pytest.fixture(scope="module")
def blended(synthetic_csv: Path) -> TrainedModel:
    config = TrainingConfig(
        max_iter=40,
        iteration_step=20,
        max_leaf_nodes=(15,),
        l2_regularization=(1.0,),
        positive_weights=("sqrt",),
        linear_blend=True,
        neural_blend=True,
    )
    return train(synthetic_csv, "label", "time", config=config)


@pytest.fixture(scope="module")
def encoded(synthetic_csv: Path, blended: TrainedModel) -> tuple[Any, Any]:
    table = load_table(synthetic_csv, label="label", time_column="time")
    return blended.schema.encode_frame(table.frame), table.y


def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [10.0, np.nan, 30.0, 50.0, 20.0, 40.0],
            "country": ["FR", "US", "FR", "NG", "US", "FR"],
            "label": [0, 0, 1, 0, 1, 0],
        }
    )


def test_design_fills_flags_one_hot_encodes_and_standardises() -> None:
    frame = small_frame()
    schema = infer_schema(frame, label="label", time_column=None)
    x = schema.encode_frame(frame)
    design = Design.fit(x, schema)
    raw = design.raw(x)
    # amount (missing → median 30), "amount was missing", one column per country code.
    assert raw.shape == (6, 2 + len(schema.features[1].categories))
    assert raw[1, 0] == 30.0
    assert raw[:, 1].tolist() == [0, 1, 0, 0, 0, 0]
    assert (raw[:, 2:].sum(axis=1) == 1).all()
    z = design.standardised(x)
    assert np.allclose(z.mean(axis=0), 0.0)
    assert np.allclose(z.std(axis=0), 1.0)
    # An unknown or missing category is all zeros before standardisation, not an error.
    unknown = schema.encode_rows([{"amount": 5.0, "country": "ZZ"}, {"amount": 5.0}])
    assert (design.raw(unknown)[:, 2:] == 0).all()
    again = Design.from_arrays(design.to_arrays())
    assert np.array_equal(again.standardised(x), z)


def test_design_arrays_with_inconsistent_shapes_are_refused() -> None:
    frame = small_frame()
    schema = infer_schema(frame, label="label", time_column=None)
    arrays = Design.fit(schema.encode_frame(frame), schema).to_arrays()
    with pytest.raises(ValueError, match="inconsistent"):
        Design.from_arrays(arrays | {"scale": arrays["scale"][:-1]})
    with pytest.raises(ValueError, match="inconsistent"):
        Design.from_arrays(arrays | {"scale": np.zeros_like(arrays["scale"])})


def test_the_linear_part_is_sklearns_regression_and_keeps_its_file_layout(
    blended: TrainedModel, encoded: tuple[Any, Any]
) -> None:
    x, y = encoded
    part = fit_linear(x[:2000], y[:2000], blended.schema)
    z = part.design.standardised(x[:2000])
    reference = LogisticRegression(C=C_PER_ROW / 2000, max_iter=2000).fit(z, y[:2000])
    assert np.allclose(
        part.decision_function(x), reference.decision_function(part.design.standardised(x))
    )
    # The layout models saved before the neural part existed use: they must still load.
    assert set(part.to_arrays()) == {
        "numeric", "fill", "indicator", "categorical", "levels", "mean", "scale", "coef",
        "intercept",
    }  # fmt: skip
    again = LinearPart.from_arrays(part.to_arrays())
    assert np.array_equal(again.decision_function(x), part.decision_function(x))
    with pytest.raises(ValueError, match="inconsistent"):
        LinearPart.from_arrays(part.to_arrays() | {"coef": part.coef[:-1]})


def test_the_neural_part_computes_what_sklearns_network_predicts(
    blended: TrainedModel, encoded: tuple[Any, Any]
) -> None:
    x, y = encoded
    part = fit_neural(x[:2000], y[:2000], blended.schema, seed=3)
    reference = neural.classifier(2000, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(neural.network_input(part.design, x[:2000]), y[:2000])
    p = reference.predict_proba(neural.network_input(part.design, x))[:, 1]
    assert np.allclose(part.decision_function(x), np.log(p / (1 - p)), atol=1e-6)
    # Inputs beyond the clip count as the clip: no unbounded extrapolation.
    extreme = x[:5].copy()
    extreme[:, 0] = 1e12
    at_clip = x[:5].copy()
    column = part.design.numeric.tolist().index(0)
    at_clip[:, 0] = part.design.mean[column] + neural.CLIP * part.design.scale[column]
    assert np.allclose(part.decision_function(extreme), part.decision_function(at_clip))
    again = NeuralPart.from_arrays(part.to_arrays())
    assert np.array_equal(again.decision_function(x), part.decision_function(x))
    with pytest.raises(ValueError, match="inconsistent"):
        NeuralPart.from_arrays(part.to_arrays() | {"output_weights": part.output_weights[:-1]})
    with pytest.raises(ValueError, match="expected set"):
        NeuralPart.from_arrays(part.design.to_arrays())


def test_training_blends_the_three_parts_and_records_them(
    blended: TrainedModel, synthetic_csv: Path, encoded: tuple[Any, Any]
) -> None:
    assert blended.linear is not None
    assert blended.neural is not None
    model = blended.manifest["model"]
    figures = model["neural_blend"]["calibration_part_average_precision"]
    assert set(figures) == {"trees", "linear", "neural", "blend"}
    assert all(0.0 < v <= 1.0 for v in figures.values())
    assert model["neural_blend"]["hidden_units"] == neural.HIDDEN_UNITS
    assert blended.manifest["config"]["neural_blend"] is True
    # The probability is the calibrated mean of the three log-odds.
    x, _ = encoded
    mean = blend(
        blended.trees.decision_function(x),
        blended.linear.decision_function(x),
        blended.neural.decision_function(x),
    )
    expected = blended.calibrator.predict(mean)
    assert np.allclose(blended.predict_probability(x), expected)
    # The test part was scored with all three (the stored evaluation is that probability).
    table = load_table(synthetic_csv, label="label", time_column="time")
    test = split_table(table, test_fraction=0.2, calibration_fraction=0.2, seed=0).test
    assert blended.evaluation is not None
    assert np.allclose(blended.evaluation.probability, blended.predict_probability(x[test]))


def test_a_blended_model_saves_loads_and_scores_the_same(
    blended: TrainedModel, synthetic_csv: Path, tmp_path: Path
) -> None:
    store.save(blended, tmp_path, activate=True)
    loaded = store.load_active(tmp_path)
    assert loaded.neural is not None
    assert loaded.linear is not None
    frame = load_table(synthetic_csv, label="label", time_column="time").frame
    rows = [{str(k): v for k, v in r.items()} for r in frame.head(60).to_dict(orient="records")]
    x = loaded.schema.encode_rows(rows)
    expected = calibrated_probability(
        loaded.trees, loaded.calibrator, x, loaded.linear, loaded.neural
    )
    assert np.allclose(expected, blended.predict_probability(x))
    fast = ModelScorer(loaded)
    assert fast.fast_path
    plain = ModelScorer(loaded, fast_path=False)
    assert np.allclose(fast.probability_batch(rows[:10]), expected[:10], rtol=1e-9)
    assert np.allclose(plain.probability_batch(rows), expected, rtol=1e-9)
    assert np.allclose([fast.score_one(r) for r in rows[:10]], plain.score_batch(rows[:10]))


def _rewrite(directory: Path, content: dict[str, Any]) -> None:
    blob = sio.dumps(content)
    (directory / "model.skops").write_bytes(blob)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["model_file"]["sha256"] = hashlib.sha256(blob).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_models_without_the_neural_part_still_load(trained: TrainedModel, tmp_path: Path) -> None:
    """Files written before the neural part existed: trees + calibrator (+ linear arrays)."""
    directory = store.save(trained, tmp_path, activate=True)
    assert store.load_active(tmp_path).neural is None
    linear = fit_linear(
        np.zeros((4, len(trained.schema.features))), np.array([0, 1, 0, 1]), trained.schema
    )
    content = {"trees": trained.trees, "calibrator": trained.calibrator}
    _rewrite(directory, content | {"linear": linear.to_arrays()})
    loaded = store.load_active(tmp_path)
    assert loaded.linear is not None
    assert loaded.neural is None


def test_bad_or_unknown_parts_are_refused_clearly(blended: TrainedModel, tmp_path: Path) -> None:
    assert blended.neural is not None
    directory = store.save(blended, tmp_path, activate=True)
    content = {"trees": blended.trees, "calibrator": blended.calibrator}
    broken = blended.neural.to_arrays() | {"hidden_bias": np.zeros(3)}
    _rewrite(directory, content | {"neural": broken})
    with pytest.raises(ModelLoadError, match="neural part's arrays have inconsistent shapes"):
        store.load_active(tmp_path)
    _rewrite(directory, content | {"forest": np.zeros(2)})
    with pytest.raises(ModelLoadError, match=r"unknown parts \['forest'\].*newer version"):
        store.load_active(tmp_path)
    # A neural part reading a column the schema does not have.
    design = replace(blended.neural.design, numeric=blended.neural.design.numeric + 100)
    far = replace(blended.neural, design=design)
    _rewrite(directory, content | {"neural": far.to_arrays()})
    with pytest.raises(ModelLoadError, match="neural part reads columns the schema lacks"):
        store.load_active(tmp_path)


def test_cli_options_choose_the_parts() -> None:
    base: dict[str, Any] = {
        "calibration": "sigmoid",
        "seed": 0,
        "max_iter": 250,
        "min_positives": 20,
        "time_features": False,
        "exclude": (),
        "elevated_probability": 0.1,
        "highest_probability": 0.5,
        "threads": 1,
        "linear_blend": True,
        "neural_blend": True,
        "trees_only": False,
    }
    both = _training_config(base)
    assert (both.linear_blend, both.neural_blend) == (True, True)
    no_net = _training_config(base | {"neural_blend": False})
    assert (no_net.linear_blend, no_net.neural_blend) == (True, False)
    alone = _training_config(base | {"trees_only": True})
    assert (alone.linear_blend, alone.neural_blend) == (False, False)
