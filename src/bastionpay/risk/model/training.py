"""The training pipeline: a labelled CSV in, a calibrated gradient-boosting model out.

Steps (each on its own part of the data, see `dataset.py` for the splits):

1. infer the columns' kinds and categories from the fitting rows (`schema.py`);
2. a bounded search over a few `HistGradientBoostingClassifier` settings: each candidate is fitted
   on the fitting rows and its AUPRC measured on the calibration rows after every
   `iteration_step` boosting iterations; the best (candidate, iterations) wins, ties going to
   fewer iterations (cheaper to score). The test rows are never looked at;
3. calibration: the winner, fitted on the fitting rows only, is frozen and calibrated on the
   calibration rows (`CalibratedClassifierCV(FrozenEstimator(...))`), rows that are later in time
   than every fitting row when there is a time column: out-of-time predictions, as in production;
   With `linear_blend` (the CLI's and the platform's default), a regularised logistic regression
   (`linear.py`) is fitted on the same rows, and with `neural_blend` (also their default) a small
   neural network (`neural.py`); the model's log-odds are the mean of the parts', and the
   calibrator is fitted on that mean;
4. refit: the winner's settings (and the other parts) are fitted again on the whole training part
   (fitting + calibration rows) and the calibrator from step 3 is applied to that model's
   decision function;
5. the test rows (the most recent 20 %) are scored once, and so is an untuned baseline.

Choices and why:
- Gradient boosting with histogram bins handles missing values and categories natively; no scaling
  or imputation stage to get wrong.
- The refit (step 4, `refit=True`) because recent data matters: on the ULB data, leaving out the
  most recent fifth of the fitting rows costs 0.03 AUPRC on the calibration rows (0.787 → 0.756
  for the chosen settings; measured inside the training part, see docs/risk-model.md). Without the
  refit the model that scores tomorrow would never have seen the latest frauds. The calibrator
  then maps the refitted model's log-odds with parameters estimated on the first model's
  out-of-time log-odds: same settings, same number of iterations, 25 % more rows, so the scale
  barely moves; the test part's Brier score and mean probability (in every report) show how
  well it holds. `refit=False` keeps the strictly held-out calibration.
- Calibration is `sigmoid` (Platt) by default: it is strictly increasing, so the ranking (ROC-AUC,
  AUPRC) is exactly the boosted trees', and its two parameters are estimable from the few dozen
  frauds a calibration part usually has, where isotonic regression's steps would overfit them. It
  also undoes the odds shift that up-weighting frauds introduces (weight w multiplies the model's
  odds by about w; Platt's intercept divides it back). `isotonic` is available.
- Class imbalance: candidates with frauds weighted by sqrt(negatives/positives) compete with
  unweighted ones. Full balancing (×580 on the ULB data) lets a handful of frauds dominate every
  leaf; no weighting and no regularisation leaves Newton leaf values resting on tiny hessians
  (sklearn's defaults do poorly on the ULB data: early stopping halts them after ~10 iterations,
  and without it the unregularised steps diverge). The square root is the usual middle ground;
  the search decides, and l2 regularisation is always on.
- Boosting iterations are chosen on the calibration part, not by sklearn's early stopping, whose
  validation rows are a random sample of the fitting rows (not time-respecting; with a few hundred
  frauds it also stops after ~10 iterations).
- The calibration rows also served for model selection: a small optimism in the calibration, the
  price of not taking a third slice from scarce frauds. The test figures are untouched by both.
"""

from __future__ import annotations

import math
import platform
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Final, Literal

import numpy as np
import numpy.typing as npt
from sklearn.calibration import CalibratedClassifierCV, _SigmoidCalibration
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score
from threadpoolctl import threadpool_limits

from bastionpay.kernel.clock import Clock, SystemClock
from bastionpay.risk.model import neural
from bastionpay.risk.model.dataset import (
    LabelledTable,
    Split,
    check_enough_positives,
    load_table,
    split_table,
)
from bastionpay.risk.model.errors import DatasetError
from bastionpay.risk.model.linear import C_PER_ROW, LinearPart, blend, fit_linear
from bastionpay.risk.model.metrics import classification_metrics
from bastionpay.risk.model.neural import NeuralPart, fit_neural
from bastionpay.risk.model.schema import FloatMatrix, Schema, infer_schema
from bastionpay.risk.model.scoremap import ScoreMapping

Progress = Callable[[str], None]
PositiveWeight = Literal["none", "sqrt"]
Calibration = Literal["sigmoid", "isotonic"]

MANIFEST_FORMAT: Final = "bastionpay-risk-model/1"
# The baseline the issue quotes (AUPRC 0.787 on ULB): sklearn's HistGradientBoostingClassifier with
# its defaults except l2_regularization=1 (without it, Newton steps on ~400 frauds diverge) and
# without early stopping (which stops it after ~10 iterations), on the raw columns.
BASELINE_PARAMS: Final[dict[str, Any]] = {"l2_regularization": 1.0, "early_stopping": False}
LIBRARIES: Final = ("scikit-learn", "numpy", "scipy", "pandas", "skops", "threadpoolctl")


@dataclass(frozen=True)
class Candidate:
    learning_rate: float
    max_leaf_nodes: int
    l2_regularization: float
    positive_weight: PositiveWeight


@dataclass(frozen=True)
class TrainingConfig:
    test_fraction: float = 0.2
    calibration_fraction: float = 0.2  # of the training part: its most recent rows
    calibration: Calibration = "sigmoid"
    seed: int = 0
    # The search: the grid below × iterations 25, 50, …, max_iter. Bounded: 8 fits by default.
    max_iter: int = 250
    iteration_step: int = 25
    learning_rates: tuple[float, ...] = (0.1,)
    max_leaf_nodes: tuple[int, ...] = (15, 31)
    l2_regularization: tuple[float, ...] = (1.0, 10.0)
    positive_weights: tuple[PositiveWeight, ...] = ("none", "sqrt")
    min_samples_leaf: int = 20
    min_positives: int = 20
    refit: bool = True  # refit on the whole training part after choosing (see the docstring)
    time_features: bool = False  # add hour_of_day (and day_of_week) from the time column
    exclude: tuple[str, ...] = ()  # columns never used as features (ids, leaky columns)
    mapping: ScoreMapping = field(default_factory=ScoreMapping)
    baseline: bool = True
    threads: int = 1  # OpenMP/BLAS threads while fitting
    # Blend the trees with a regularised logistic regression (linear.py): mean of the two
    # log-odds, calibrated together. Off here so that the library's plain model stays exactly
    # CalibratedClassifierCV on the trees; the CLI, the platform and bench/risk.py turn it on.
    linear_blend: bool = False
    # Blend in a one-hidden-layer neural network (neural.py) as well: same rules, same default.
    neural_blend: bool = False

    def __post_init__(self) -> None:
        if not (0 < self.test_fraction < 1 and 0 < self.calibration_fraction < 1):
            raise ValueError("test_fraction and calibration_fraction must be between 0 and 1")
        if self.max_iter < 1 or self.iteration_step < 1 or self.threads < 1:
            raise ValueError("max_iter, iteration_step and threads must be positive")

    def candidates(self) -> list[Candidate]:
        return [
            Candidate(lr, leaves, l2, weight)
            for lr in self.learning_rates
            for leaves in self.max_leaf_nodes
            for l2 in self.l2_regularization
            for weight in self.positive_weights
        ]


@dataclass(frozen=True)
class Evaluation:
    """The test part's labels and probabilities (kept for the report, never saved with a model)."""

    y: npt.NDArray[np.int8]
    probability: npt.NDArray[np.float64]
    baseline_probability: npt.NDArray[np.float64] | None


@dataclass
class TrainedModel:
    # sklearn objects carry no type information: a fitted HistGradientBoostingClassifier and the
    # calibrator CalibratedClassifierCV fitted for it (_SigmoidCalibration or IsotonicRegression).
    trees: Any
    calibrator: Any
    schema: Schema
    mapping: ScoreMapping
    version: str
    manifest: dict[str, Any]  # everything but the estimator; written as manifest.json
    evaluation: Evaluation | None = None
    linear: LinearPart | None = None  # blended with the trees when present
    neural: NeuralPart | None = None  # ditto

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.manifest["metrics"])

    def predict_probability(self, x: FloatMatrix) -> npt.NDArray[np.float64]:
        return calibrated_probability(self.trees, self.calibrator, x, self.linear, self.neural)


def calibrated_probability(
    trees: Any,
    calibrator: Any,
    x: FloatMatrix,
    linear: LinearPart | None = None,
    neural: NeuralPart | None = None,
) -> npt.NDArray[np.float64]:
    """P(fraud) as `CalibratedClassifierCV.predict_proba(x)[:, 1]` computes it for a binary model:
    the trees' decision function (log-odds), blended with the linear and neural parts' when there
    are any, through the calibrator."""
    return calibrate(calibrator, decision_function(trees, x, linear, neural))


def decision_function(
    trees: Any,
    x: FloatMatrix,
    linear: LinearPart | None = None,
    neural: NeuralPart | None = None,
) -> npt.NDArray[np.float64]:
    decision = np.asarray(trees.decision_function(x), dtype=np.float64)
    return blend_parts(decision, x, linear, neural)


def blend_parts(
    tree_decision: npt.NDArray[np.float64],
    x: FloatMatrix,
    linear: LinearPart | None,
    neural: NeuralPart | None,
) -> npt.NDArray[np.float64]:
    """The trees' log-odds (however computed) blended with whichever other parts there are."""
    parts = [p.decision_function(x) for p in (linear, neural) if p is not None]
    return tree_decision if not parts else blend(tree_decision, *parts)


def calibrate(calibrator: Any, decision: npt.ArrayLike) -> npt.NDArray[np.float64]:
    # As sklearn's _CalibratedClassifier does for two classes: an undefined probability is 1/2,
    # and the calibrator's rounding past [0, 1] is clipped.
    probability = np.asarray(calibrator.predict(decision), dtype=np.float64)
    probability[np.isnan(probability)] = 0.5
    return np.clip(probability, 0.0, 1.0)


def train(
    dataset: Path | IO[bytes],
    label: str,
    time_column: str | None = None,
    *,
    config: TrainingConfig | None = None,
    progress: Progress | None = None,
    clock: Clock | None = None,
    source_name: str | None = None,
) -> TrainedModel:
    """Read `dataset`, fit, calibrate and test a model; nothing is written (see `store.save`)."""
    say = progress or _quiet
    say(f"reading {source_name or getattr(dataset, 'name', 'the dataset')}")
    table = load_table(dataset, label=label, time_column=time_column, source_name=source_name)
    return train_table(table, config=config, progress=say, clock=clock)


def evaluate(
    dataset: Path | IO[bytes],
    label: str,
    time_column: str | None = None,
    *,
    config: TrainingConfig | None = None,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> TrainedModel:
    """The same protocol as `train`; the caller reports on it and keeps no model.

    The figures always come from a model trained on the training part only and scored on the
    held-out test part, so `evaluate` is `train` without `--activate` or saving.
    """
    return train(dataset, label, time_column, config=config, progress=progress, clock=clock)


def train_table(
    table: LabelledTable,
    *,
    config: TrainingConfig | None = None,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> TrainedModel:
    cfg = config or TrainingConfig()
    say = progress or _quiet
    now = (clock or SystemClock()).now()
    for column in cfg.exclude:
        if column not in table.frame.columns:
            raise DatasetError(f"cannot exclude {column!r}: no such column")
    split = split_table(
        table,
        test_fraction=cfg.test_fraction,
        calibration_fraction=cfg.calibration_fraction,
        seed=cfg.seed,
    )
    check_enough_positives(table, split, cfg.min_positives)
    say(
        f"{len(table.y)} rows, {table.positives} positives; {split.kind} split: "
        f"fit {len(split.fit)}, calibration {len(split.calibration)}, test {len(split.test)}"
    )
    schema = infer_schema(
        table.frame.iloc[split.fit],
        label=table.label,
        time_column=table.time_column,
        exclude=cfg.exclude,
        time_features=cfg.time_features,
    )
    x = schema.encode_frame(table.frame)
    y = table.y
    with _threads(cfg.threads):
        search = _search(x, y, split, schema, cfg, say)
        best = max(search, key=lambda r: (r["average_precision"], -r["iterations"]))
        chosen = Candidate(**best["candidate"])
        say(
            f"chosen: {_describe(chosen)}, {best['iterations']} iterations "
            f"(calibration-part AUPRC {best['average_precision']:.4f})"
        )
        say(f"calibrating ({cfg.calibration}) on the calibration part's out-of-time predictions")
        params = _hgb_params(chosen, best["iterations"], schema, y[split.fit], cfg)
        first = HistGradientBoostingClassifier(**params).fit(x[split.fit], y[split.fit])
        blend_figures: dict[str, Any] | None = None
        linear, network = _fit_parts(x[split.fit], y[split.fit], schema, cfg, say, "fitting")
        if linear is not None or network is not None:
            blend_figures = _blend_figures(
                first, linear, network, x[split.calibration], y[split.calibration]
            )
            say(
                "calibration-part AUPRC: "
                + ", ".join(f"{name} {value:.4f}" for name, value in blend_figures.items())
            )
            calibrator = _fit_calibrator(
                decision_function(first, x[split.calibration], linear, network),
                y[split.calibration],
                cfg.calibration,
            )
        else:
            calibrated = CalibratedClassifierCV(FrozenEstimator(first), method=cfg.calibration)
            calibrated.fit(x[split.calibration], y[split.calibration])
            ((calibrator,),) = (c.calibrators for c in calibrated.calibrated_classifiers_)
        trees = first
        if cfg.refit:
            say("refitting on the whole training part")
            trees = HistGradientBoostingClassifier(**params).fit(x[split.train], y[split.train])
            linear, network = _fit_parts(
                x[split.train], y[split.train], schema, cfg, say, "whole training"
            )
        probability = calibrated_probability(trees, calibrator, x[split.test], linear, network)
        metrics = classification_metrics(y[split.test], probability, cfg.mapping)
        baseline_probability = None
        baseline_metrics = None
        if cfg.baseline:
            say("fitting the untuned baseline on the whole training part")
            baseline_probability = fit_baseline(table, split, seed=cfg.seed, exclude=cfg.exclude)
            baseline_metrics = classification_metrics(
                y[split.test], baseline_probability, cfg.mapping
            )
    version = new_version(now)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": version,
        "created_at": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
        "label": table.label,
        "time_column": table.time_column,
        "schema": schema.to_json(),
        "inputs": schema.inputs,
        "score_mapping": cfg.mapping.to_json(),
        "model": {
            "estimator": "HistGradientBoostingClassifier",
            "params": params,
            "candidate": best["candidate"],
            "calibration": cfg.calibration,
            "calibration_rows": len(split.calibration),
            "trained_on": "fit + calibration parts" if cfg.refit else "fit part",
            "linear_blend": None
            if linear is None
            else {
                "estimator": "LogisticRegression on standardised features (linear.py)",
                "C_per_row": C_PER_ROW,
                "design_columns": len(linear.coef),
                "blend": "mean of the parts' log-odds, then calibrated",
                "calibration_part_average_precision": blend_figures,
            },
            "neural_blend": None
            if network is None
            else {
                "estimator": "MLPClassifier, one hidden layer (neural.py)",
                "hidden_units": neural.HIDDEN_UNITS,
                "alpha": neural.ALPHA,
                "epochs": neural.EPOCHS,
                "batch_size": neural.BATCH_SIZE,
                "clip": neural.CLIP,
                "design_columns": network.design.width,
                "blend": "mean of the parts' log-odds, then calibrated",
                "calibration_part_average_precision": blend_figures,
            },
        },
        "search": search,
        "metrics": {"test": metrics, "baseline": baseline_metrics},
        "dataset": {
            "name": table.source_name,
            "sha256": table.sha256,
            "rows": len(y),
            "positives": table.positives,
        },
        "split": _describe_split(table, split),
        "libraries": library_versions(),
        "config": {
            "test_fraction": cfg.test_fraction,
            "calibration_fraction": cfg.calibration_fraction,
            "seed": cfg.seed,
            "refit": cfg.refit,
            "time_features": cfg.time_features,
            "exclude": list(cfg.exclude),
            "linear_blend": cfg.linear_blend,
            "neural_blend": cfg.neural_blend,
        },
    }
    return TrainedModel(
        trees=trees,
        calibrator=calibrator,
        schema=schema,
        mapping=cfg.mapping,
        version=version,
        manifest=manifest,
        evaluation=Evaluation(y[split.test], probability, baseline_probability),
        linear=linear,
        neural=network,
    )


def _fit_parts(
    x: FloatMatrix,
    y: npt.NDArray[np.int8],
    schema: Schema,
    cfg: TrainingConfig,
    say: Progress,
    part: str,
) -> tuple[LinearPart | None, NeuralPart | None]:
    """The blend's other parts that `cfg` asks for, fitted on rows `x`, `y`."""
    linear = network = None
    if cfg.linear_blend:
        say(f"fitting the linear part (logistic regression) on the {part} part")
        linear = fit_linear(x, y, schema, seed=cfg.seed)
    if cfg.neural_blend:
        say(f"fitting the neural part (one hidden layer) on the {part} part")
        network = fit_neural(x, y, schema, seed=cfg.seed)
    return linear, network


def _blend_figures(
    trees: Any,
    linear: LinearPart | None,
    network: NeuralPart | None,
    x: FloatMatrix,
    y: npt.NDArray[np.int8],
) -> dict[str, float]:
    """Calibration-part AUPRC of each part alone and of the blend (for the manifest)."""
    decisions = {"trees": np.asarray(trees.decision_function(x), dtype=np.float64)}
    if linear is not None:
        decisions["linear"] = linear.decision_function(x)
    if network is not None:
        decisions["neural"] = network.decision_function(x)
    figures = {name: float(average_precision_score(y, d)) for name, d in decisions.items()}
    figures["blend"] = float(average_precision_score(y, blend(*decisions.values())))
    return figures


def _fit_calibrator(
    decision: npt.NDArray[np.float64], y: npt.NDArray[np.int8], method: Calibration
) -> Any:
    """The calibrator CalibratedClassifierCV fits for a binary model's decision function
    (sklearn.calibration._fit_calibrator): Platt's sigmoid, or isotonic regression clipped to the
    fitted range. Needed because the blend is not one sklearn estimator."""
    if method == "isotonic":
        return IsotonicRegression(out_of_bounds="clip").fit(decision, y)
    return _SigmoidCalibration().fit(decision, y)


def fit_baseline(
    table: LabelledTable,
    split: Split,
    *,
    seed: int = 0,
    exclude: tuple[str, ...] = (),
    params: dict[str, Any] | None = None,
) -> npt.NDArray[np.float64]:
    """Test-part probabilities of an untuned model fitted on the whole training part.

    Raw columns (a numeric time column is an ordinary feature), no search, no calibration: what
    handing the CSV to gradient boosting gives. `params` replaces `BASELINE_PARAMS`.
    """
    schema = infer_schema(
        table.frame.iloc[split.train],
        label=table.label,
        time_column=table.time_column,
        exclude=exclude,
        raw_time=True,
    )
    x = schema.encode_frame(table.frame)
    mask = schema.categorical_mask
    model = HistGradientBoostingClassifier(
        random_state=seed,
        categorical_features=mask if any(mask) else None,
        **(BASELINE_PARAMS if params is None else params),
    )
    model.fit(x[split.train], table.y[split.train])
    return np.asarray(model.predict_proba(x[split.test])[:, 1], dtype=np.float64)


def new_version(now: int) -> str:
    """Sortable by creation time, unique without coordination: `20261128T170500Z-1a2b3c4d`."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(4)}"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _search(
    x: FloatMatrix,
    y: npt.NDArray[np.int8],
    split: Split,
    schema: Schema,
    cfg: TrainingConfig,
    say: Progress,
) -> list[dict[str, Any]]:
    candidates = cfg.candidates()
    results: list[dict[str, Any]] = []
    y_cal = y[split.calibration]
    for i, candidate in enumerate(candidates, 1):
        started = time.monotonic()
        model = _estimator(candidate, cfg.max_iter, schema, y[split.fit], cfg)
        model.fit(x[split.fit], y[split.fit])
        best_ap, best_iterations = -1.0, 0
        # One pass over the calibration rows, reading the decision function after each
        # iteration; AUPRC only at the checkpoints (it sorts the rows).
        for iteration, decision in enumerate(
            model.staged_decision_function(x[split.calibration]), 1
        ):
            if iteration % cfg.iteration_step and iteration != model.n_iter_:
                continue
            ap = float(average_precision_score(y_cal, np.asarray(decision, dtype=np.float64)))
            if ap > best_ap:
                best_ap, best_iterations = ap, iteration
        results.append(
            {
                "candidate": {
                    "learning_rate": candidate.learning_rate,
                    "max_leaf_nodes": candidate.max_leaf_nodes,
                    "l2_regularization": candidate.l2_regularization,
                    "positive_weight": candidate.positive_weight,
                },
                "iterations": best_iterations,
                "average_precision": best_ap,
                "seconds": round(time.monotonic() - started, 2),
            }
        )
        say(
            f"[{i}/{len(candidates)}] {_describe(candidate)}: calibration-part AUPRC "
            f"{best_ap:.4f} at {best_iterations} iterations ({results[-1]['seconds']} s)"
        )
    return results


def _hgb_params(
    candidate: Candidate,
    iterations: int,
    schema: Schema,
    y_fit: npt.NDArray[np.int8],
    cfg: TrainingConfig,
) -> dict[str, Any]:
    mask = schema.categorical_mask
    weight = 1.0
    if candidate.positive_weight == "sqrt":
        positives = max(int(y_fit.sum()), 1)
        weight = math.sqrt((len(y_fit) - positives) / positives)
    return {
        "learning_rate": candidate.learning_rate,
        "max_iter": iterations,
        "max_leaf_nodes": candidate.max_leaf_nodes,
        "min_samples_leaf": cfg.min_samples_leaf,
        "l2_regularization": candidate.l2_regularization,
        "class_weight": {0: 1.0, 1: weight} if weight != 1.0 else None,
        "categorical_features": mask if any(mask) else None,
        "early_stopping": False,
        "random_state": cfg.seed,
    }


def _estimator(
    candidate: Candidate,
    iterations: int,
    schema: Schema,
    y_fit: npt.NDArray[np.int8],
    cfg: TrainingConfig,
) -> Any:
    return HistGradientBoostingClassifier(**_hgb_params(candidate, iterations, schema, y_fit, cfg))


def _describe(c: Candidate) -> str:
    return (
        f"learning_rate={c.learning_rate} max_leaf_nodes={c.max_leaf_nodes} "
        f"l2={c.l2_regularization} positive_weight={c.positive_weight}"
    )


def _describe_split(table: LabelledTable, split: Split) -> dict[str, Any]:
    parts = {"fit": split.fit, "calibration": split.calibration, "test": split.test}
    described: dict[str, Any] = {"kind": split.kind}
    for name, rows in parts.items():
        entry: dict[str, Any] = {"rows": len(rows), "positives": int(table.y[rows].sum())}
        if table.times is not None and len(rows):
            entry["time_min"] = float(table.times[rows].min())
            entry["time_max"] = float(table.times[rows].max())
        described[name] = entry
    return described


@contextmanager
def _threads(n: int) -> Iterator[None]:
    # Fitting runs OpenMP loops; bound them so training never takes more cores than asked for
    # (the api and vault share the machine).
    with threadpool_limits(limits=n):
        yield


def _quiet(_: str) -> None:
    return None
