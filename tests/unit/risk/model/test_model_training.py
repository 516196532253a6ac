"""The training pipeline: splits, column handling, the search and what `train` returns."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import average_precision_score, roc_auc_score

from bastionpay.risk.model.dataset import load_table, split_table
from bastionpay.risk.model.errors import DatasetError
from bastionpay.risk.model.schema import MAX_CATEGORIES, OTHER, infer_schema
from bastionpay.risk.model.training import TrainedModel, TrainingConfig, train


def test_time_split_is_time_ordered(synthetic_csv: Path) -> None:
    table = load_table(synthetic_csv, label="label", time_column="time")
    raw = pd.read_csv(synthetic_csv)
    assert not raw["time"].is_monotonic_increasing  # the file itself is shuffled
    assert table.times is not None
    split = split_table(table, test_fraction=0.2, calibration_fraction=0.2, seed=0)
    times = table.times
    assert split.kind == "time"
    # No test row is older than any training row; no calibration row older than a fitting row.
    assert times[split.test].min() >= times[split.train].max()
    assert times[split.calibration].min() >= times[split.fit].max()
    assert len(split.test) == 600
    assert len(split.calibration) == 480
    everything = np.concatenate([split.fit, split.calibration, split.test])
    assert sorted(everything.tolist()) == list(range(len(table.y)))
    # The rows moved with their labels: the table's label order matches the file's rows by time.
    by_time = raw.sort_values("time", kind="stable")["label"].to_numpy()
    assert (table.y == by_time).all()


def test_stratified_split_without_time(synthetic_csv: Path) -> None:
    table = load_table(synthetic_csv, label="label")
    split = split_table(table, test_fraction=0.2, calibration_fraction=0.2, seed=0)
    assert split.kind == "stratified"
    assert not set(split.test.tolist()) & set(split.train.tolist())
    rate = table.y.mean()
    assert abs(table.y[split.test].mean() - rate) < 0.01  # stratified: same fraud rate
    again = split_table(table, test_fraction=0.2, calibration_fraction=0.2, seed=0)
    assert (again.test == split.test).all()  # fixed seed, same split


def test_columns_kinds_categories_and_missing_values(synthetic_csv: Path) -> None:
    table = load_table(synthetic_csv, label="label", time_column="time")
    schema = infer_schema(table.frame, label="label", time_column="time")
    kinds = {f.name: f.kind for f in schema.features}
    assert kinds == {
        "amount": "numeric",
        "country": "categorical",
        "device_score": "numeric",
        "is_new_card": "numeric",  # true/false words are a flag
    }
    assert ("txn_id", "mostly unique values (an identifier?)") in schema.dropped
    assert "time" not in kinds  # orders the rows; not a feature unless asked for
    x = schema.encode_frame(table.frame)
    device = schema.names.index("device_score")
    assert np.isnan(x[:, device]).sum() == table.frame["device_score"].isna().sum() > 0
    country = schema.features[schema.names.index("country")]
    assert set(country.categories) == {"FR", "US", "DE", "GB", "NG", "BR"}
    # The serving path encodes dicts exactly as the training path encodes the table.
    records = table.frame.head(300).to_dict(orient="records")
    np.testing.assert_array_equal(schema.encode_rows(records), x[:300])
    unknown = schema.encode_rows([{"country": "ZZ", "amount": "n/a", "is_new_card": True}])[0]
    assert math.isnan(unknown[schema.names.index("country")])  # never seen, no "other" code
    assert math.isnan(unknown[schema.names.index("amount")])
    assert unknown[schema.names.index("is_new_card")] == 1.0


def test_time_features_are_derived_the_same_way_on_both_paths(synthetic_csv: Path) -> None:
    table = load_table(synthetic_csv, label="label", time_column="time")
    schema = infer_schema(table.frame, label="label", time_column="time", time_features=True)
    assert schema.names[-1] == "hour_of_day"
    x = schema.encode_frame(table.frame)
    row = table.frame.iloc[0].to_dict()
    assert x[0, -1] == pytest.approx((row["time"] % 86_400) / 3600)
    np.testing.assert_array_equal(schema.encode_rows([row])[0], x[0])
    iso = pd.DataFrame({"t": ["2026-11-28T13:30:00+00:00", "2026-11-30T01:00:00Z"], "v": [1, 2]})
    iso_schema = infer_schema(iso, label="none", time_column="t", time_features=True)
    encoded = iso_schema.encode_frame(iso)
    assert encoded[:, iso_schema.names.index("hour_of_day")].tolist() == [13.5, 1.0]
    assert encoded[:, iso_schema.names.index("day_of_week")].tolist() == [5.0, 0.0]  # Sat, Mon
    assert iso_schema.encode_rows([{"t": "2026-11-28T13:30:00+00:00"}])[0].tolist()[1:] == [
        13.5,
        5.0,
    ]


def test_many_categories_share_an_other_code() -> None:
    values = [f"m{i % 400}" for i in range(4000)]
    frame = pd.DataFrame({"merchant": values, "y": [0, 1] * 2000})
    schema = infer_schema(frame, label="y", time_column=None)
    (feature,) = schema.features
    assert len(feature.categories) == MAX_CATEGORIES
    assert feature.categories[-1] == OTHER
    codes = schema.encode_rows([{"merchant": "m1"}, {"merchant": "never-seen"}])[:, 0]
    assert codes[0] < MAX_CATEGORIES - 1
    assert codes[1] == MAX_CATEGORIES - 1  # the "other" code


def test_train_returns_a_calibrated_model_with_its_figures(trained: TrainedModel) -> None:
    manifest = trained.manifest
    assert manifest["split"]["kind"] == "time"
    assert manifest["split"]["test"]["time_min"] >= manifest["split"]["calibration"]["time_max"]
    assert len(manifest["search"]) == 2
    assert manifest["model"]["calibration"] == "sigmoid"
    assert manifest["dataset"]["rows"] == 3000
    assert len(manifest["dataset"]["sha256"]) == 64
    evaluation = trained.evaluation
    assert evaluation is not None
    test = manifest["metrics"]["test"]
    # The recorded figures are the test part's, recomputed here independently.
    assert test["roc_auc"] == pytest.approx(roc_auc_score(evaluation.y, evaluation.probability))
    assert test["average_precision"] == pytest.approx(
        average_precision_score(evaluation.y, evaluation.probability)
    )
    assert test["roc_auc"] > 0.7  # the planted signal is learned
    assert manifest["metrics"]["baseline"]["rows"] == test["rows"] == len(evaluation.y)
    # Calibrated: the mean probability is close to the observed fraud rate of the test part.
    assert abs(evaluation.probability.mean() - evaluation.y.mean()) < 0.03


def test_calibration_is_sklearns_on_out_of_time_predictions(synthetic_csv: Path) -> None:
    """Without the refit, probabilities are CalibratedClassifierCV's, fitted on the calibration
    part for trees fitted on the fitting part; with it, the same calibrator on refitted trees."""
    config = TrainingConfig(
        max_iter=40,
        iteration_step=20,
        max_leaf_nodes=(15,),
        l2_regularization=(1.0,),
        positive_weights=("sqrt",),
        refit=False,
        baseline=False,
    )
    held_out = train(synthetic_csv, "label", "time", config=config)
    refitted = train(synthetic_csv, "label", "time", config=replace(config, refit=True))
    table = load_table(synthetic_csv, label="label", time_column="time")
    split = split_table(table, test_fraction=0.2, calibration_fraction=0.2, seed=0)
    x = held_out.schema.encode_frame(table.frame)
    reference = CalibratedClassifierCV(FrozenEstimator(held_out.trees), method="sigmoid")
    reference.fit(x[split.calibration], table.y[split.calibration])
    np.testing.assert_allclose(
        held_out.predict_probability(x), reference.predict_proba(x)[:, 1], rtol=0, atol=1e-12
    )
    assert held_out.manifest["model"]["trained_on"] == "fit part"
    assert refitted.manifest["model"]["trained_on"] == "fit + calibration parts"
    assert refitted.manifest["search"] == [
        {**r, "seconds": c["seconds"]}
        for r, c in zip(held_out.manifest["search"], refitted.manifest["search"], strict=True)
    ]
    # Same settings and calibrator, different trees (they saw the calibration rows too).
    assert refitted.trees.get_params() == held_out.trees.get_params()
    assert vars(refitted.calibrator) == vars(held_out.calibrator)
    assert not np.allclose(refitted.trees.decision_function(x), held_out.trees.decision_function(x))


def test_search_never_sees_the_test_part(
    synthetic_csv: Path, tmp_path: Path, fast_config: TrainingConfig
) -> None:
    """Changing only the test part's labels changes no choice made in training."""
    raw = pd.read_csv(synthetic_csv).sort_values("time", kind="stable")
    flipped = raw.copy()
    test_rows = flipped.index[-600:]
    flipped.loc[test_rows, "label"] = 1 - flipped.loc[test_rows, "label"]
    path = tmp_path / "flipped.csv"
    flipped.to_csv(path, index=False)
    original = train(synthetic_csv, "label", "time", config=fast_config)
    changed = train(path, "label", "time", config=fast_config)
    assert changed.manifest["search"] == [
        {**r, "seconds": c["seconds"]}
        for r, c in zip(original.manifest["search"], changed.manifest["search"], strict=True)
    ]
    x = original.schema.encode_frame(load_table(synthetic_csv, label="label").frame.head(50))
    np.testing.assert_allclose(original.predict_probability(x), changed.predict_probability(x))


def test_isotonic_calibration_and_exclusions(synthetic_csv: Path) -> None:
    config = TrainingConfig(
        max_iter=20,
        iteration_step=10,
        max_leaf_nodes=(15,),
        l2_regularization=(1.0,),
        positive_weights=("none",),
        calibration="isotonic",
        exclude=("country",),
        baseline=False,
    )
    model = train(synthetic_csv, "label", "time", config=config)
    assert "country" not in model.schema.names
    assert model.manifest["metrics"]["baseline"] is None
    assert model.manifest["model"]["calibration"] == "isotonic"
    with pytest.raises(DatasetError, match="cannot exclude 'nope'"):
        train(synthetic_csv, "label", "time", config=TrainingConfig(exclude=("nope",)))
