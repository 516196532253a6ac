"""The payment path's scorer and the platform model's lifecycle (issue 7, items 2 and 3).

`ExplainingScorer` wraps the active model. A payment is scored alone (~0.3-0.9 ms of CPU); only
an elevated or highest score is explained, by one more batched prediction of the same payment with
each known feature hidden (set to missing): the features whose absence lowers the score most are
the top reasons, in the words of `feature_schema` (~4× one score, paid by the few risky payments).

`ensure_platform_model` gives a fresh install a model before any merchant has labelled history:
one trained on the documented transaction simulator (`risk.simulator`), as the issue asks.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from bastionpay.observability.metrics import METRICS
from bastionpay.risk.feature_schema import BY_NAME
from bastionpay.risk.model import store
from bastionpay.risk.model.scorer import ModelScorer
from bastionpay.risk.service import Scored

log = logging.getLogger("bastionpay.risk")

SIMULATED_EVENTS = 30_000  # ~15 days of simulated traffic: trains in seconds on one core
MIN_REASON_POINTS = 2.0  # a feature must move the score by this much to be named
EXPLAIN_FROM = 65  # reasons for elevated and highest scores; normal ones need none


def _describe(name: str, value: object) -> str:
    feature = BY_NAME.get(name)
    words = feature.description if feature else name.replace("_", " ")
    if isinstance(value, bool):
        return f"{words}: {'yes' if value else 'no'}"
    if isinstance(value, float):
        return f"{words}: {value:g}"
    return f"{words}: {value}"


class ExplainingScorer:
    def __init__(self, scorer: ModelScorer, *, reasons: int = 3) -> None:
        self.scorer = scorer
        self.version = scorer.version
        self.reasons = reasons
        METRICS.risk_model.labels(scorer.version).set(1)

    def score(self, features: dict[str, Any]) -> Scored:
        base = self.scorer.score_one(features)
        if base < EXPLAIN_FROM:
            return Scored(round(base), [], self.version)
        names = [n for n in self.scorer.inputs if features.get(n) is not None]
        hidden_scores = self.scorer.score_batch([{**features, n: None} for n in names])
        drops = sorted(
            ((base - hidden, name) for hidden, name in zip(hidden_scores, names, strict=True)),
            reverse=True,
        )
        reasons = [
            _describe(name, features[name])
            for drop, name in drops[: self.reasons]
            if drop >= MIN_REASON_POINTS
        ]
        return Scored(round(base), reasons, self.version)


def train_simulated_model(
    models_dir: Path, *, events: int = SIMULATED_EVENTS, seed: int = 0
) -> str:
    """Train on the simulator and activate the result; returns the model version."""
    # Imported here: training pulls in pandas and the simulator, which serving never needs.
    from bastionpay.risk.model.training import TrainingConfig, train  # noqa: PLC0415
    from bastionpay.risk.simulator import write_csv  # noqa: PLC0415

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bastionpay-sim-") as tmp:
        dataset = Path(tmp) / "simulated.csv"
        write_csv(dataset, events, seed=seed)
        # A small, fixed search: a fresh install must be ready in seconds, not minutes.
        # The linear and neural blend (model/linear.py, model/neural.py) add a few seconds and
        # ~0.02 ms per score.
        config = TrainingConfig(
            threads=1,
            max_iter=150,
            max_leaf_nodes=(31,),
            positive_weights=("sqrt",),
            linear_blend=True,
            neural_blend=True,
        )
        trained = train(dataset, "label", "time", config=config)
        store.save(trained, models_dir, activate=True)
        version = trained.version
    log.info(
        "trained the platform model %s on %d simulated payments in %.1f s",
        version,
        events,
        time.monotonic() - started,
    )
    return version


def ensure_platform_model(models_dir: Path) -> str:
    """The active model's version, training the simulator model first when there is none."""
    active = store.active_version(models_dir)
    return active if active is not None else train_simulated_model(models_dir)


def load_scorer(models_dir: Path) -> ExplainingScorer:
    return ExplainingScorer(ModelScorer(store.load_active(models_dir)))
