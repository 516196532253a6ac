"""Retraining BastionPay's model on the platform's own labelled history (issue 7, item 3).

`bastionpay risk train --from-platform` builds a labelled table from the database:

* the features: each `risk_assessments` row records the feature vector the payment was scored on
  (`features`, the whole `feature_schema.FEATURES` dict computed in SQL at payment time), so the
  table holds exactly what the scorer saw, with no train/serve skew. The model's inputs are
  `MODEL_FEATURES`, the columns the simulator's training file has, so the new model scores the
  payment path's feature dicts as the simulator model does;
* the labels: `risk_labels` (a reviewer's approve → legit, reject → fraud; a refund with
  `reason=fraudulent` or a cancellation with `cancellation_reason=fraudulent` → fraud). When a
  payment has several labels the latest wins (a later fraud refund overrides an approval). Each
  labelled payment contributes its latest assessment (the attempt the label judged);
* optionally (`assume_legit_after_days`), payments authorized at least that many days ago that
  nobody labelled count as legit: by then a fraudulent payment has usually been refunded or
  reported. Off by default: only explicit labels are used;
* the time: the assessment's `created`, so the pipeline's split is time-ordered (train on the
  past, test on the most recent 20 %), as everywhere else.

Then the ordinary pipeline (`model.training.train_table`) searches, calibrates and tests. The new
model is written as a new version in any case; it becomes the active one only when the data had
at least `MIN_LABELS_TO_ACTIVATE` labelled payments of each class (see `activation_refusal`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.risk.feature_schema import MODEL_FEATURES
from bastionpay.risk.labels import latest_labels
from bastionpay.risk.model import store
from bastionpay.risk.model.dataset import LabelledTable, split_table
from bastionpay.risk.model.metrics import classification_metrics
from bastionpay.risk.model.training import TrainedModel, TrainingConfig, calibrated_probability
from bastionpay.risk.models import RiskAssessment

# Activation needs this many labelled payments of each class. Why 100: the pipeline splits the
# data 64/16/20 (fit / calibration+selection / test) in time order; 100 frauds leave ~20 for the
# test part and ~16 for calibrating, about the fewest for which Platt scaling's two parameters and
# a test AUPRC are more than noise. Fewer labels still train (down to `MIN_LABELS_TO_TRAIN`), and
# the model is saved for inspection, but it does not replace the active one.
MIN_LABELS_TO_ACTIVATE: Final = 100
MIN_LABELS_TO_TRAIN: Final = 20  # the pipeline's own floor (`TrainingConfig.min_positives`)
MAX_ROWS: Final = 2_000_000  # bounded input: the table is built in memory
LABEL: Final = "label"
TIME: Final = "time"
DAY: Final = 86_400


@dataclass(frozen=True)
class PlatformData:
    csv: bytes  # time, MODEL_FEATURES…, label: the simulator's training-file shape
    source_name: str
    frauds: int  # labelled fraud
    legit_labelled: int  # labelled legit by a person or a process
    legit_assumed: int  # unlabelled, authorized long enough ago (only when asked for)

    @property
    def legit(self) -> int:
        return self.legit_labelled + self.legit_assumed

    @property
    def rows(self) -> int:
        return self.frauds + self.legit


def _cell(value: object) -> str:
    # As the simulator's training file writes values (risk.simulator.export.csv_value).
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _assessments(
    session: Session, merchant_id: str | None, livemode: bool
) -> Iterator[RiskAssessment]:
    query = select(RiskAssessment).where(RiskAssessment.livemode.is_(livemode))
    if merchant_id is not None:
        query = query.where(RiskAssessment.merchant_id == merchant_id)
    # Newest first, so the first row met for a payment is its latest attempt.
    yield from session.scalars(
        query.order_by(RiskAssessment.created.desc(), RiskAssessment.pk.desc()).execution_options(
            yield_per=5000
        )
    )


def platform_data(
    session: Session,
    *,
    merchant_id: str | None,
    livemode: bool,
    now: int,
    assume_legit_after_days: int | None = None,
) -> PlatformData:
    """The labelled table, in the CSV shape the pipeline reads, from the api database."""
    labels = latest_labels(session, livemode=livemode, merchant_id=merchant_id)
    mature_before = None if assume_legit_after_days is None else now - assume_legit_after_days * DAY
    seen: set[str] = set()
    rows: list[tuple[int, list[str]]] = []
    frauds = legit_labelled = legit_assumed = 0
    for row in _assessments(session, merchant_id, livemode):
        if row.payment_intent_id in seen:
            continue
        seen.add(row.payment_intent_id)
        if not row.features:  # features failed under the open policy: nothing was recorded
            continue
        label = labels.get(row.payment_intent_id)
        if label is None:
            if mature_before is None or row.created > mature_before or row.outcome != "authorized":
                continue
            legit_assumed += 1
            fraud = False
        else:
            fraud = label == "fraud"
            if fraud:
                frauds += 1
            else:
                legit_labelled += 1
        features: dict[str, Any] = row.features
        cells = [_cell(features.get(name)) for name in MODEL_FEATURES]
        rows.append((row.created, [str(row.created), *cells, "1" if fraud else "0"]))
        if len(rows) > MAX_ROWS:
            break  # newest first: the most recent MAX_ROWS payments
    rows.sort(key=lambda item: item[0])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow((TIME, *MODEL_FEATURES, LABEL))
    writer.writerows(cells for _, cells in rows)
    scope = merchant_id or "all merchants"
    return PlatformData(
        csv=out.getvalue().encode("utf-8"),
        source_name=f"platform:{scope}:{'live' if livemode else 'test'}",
        frauds=frauds,
        legit_labelled=legit_labelled,
        legit_assumed=legit_assumed,
    )


def training_refusal(data: PlatformData) -> str | None:
    """Why the data cannot be trained on at all, in words for the operator; None when it can."""
    if data.frauds < MIN_LABELS_TO_TRAIN or data.legit < MIN_LABELS_TO_TRAIN:
        return (
            f"too few labels to train: {data.frauds} fraud and {data.legit} legit payments "
            f"({data.legit_labelled} labelled, {data.legit_assumed} assumed); at least "
            f"{MIN_LABELS_TO_TRAIN} of each are needed to train and {MIN_LABELS_TO_ACTIVATE} to "
            "activate. Labels come from review decisions and fraudulent refunds or cancellations"
            "; --assume-legit-after DAYS also counts old unlabelled authorized payments as legit"
        )
    return None


def activation_refusal(data: PlatformData) -> str | None:
    """Why the new model must not become the active one; None when it may."""
    if data.frauds < MIN_LABELS_TO_ACTIVATE or data.legit < MIN_LABELS_TO_ACTIVATE:
        return (
            f"not activated: {data.frauds} fraud and {data.legit} legit labelled payments, "
            f"activation needs at least {MIN_LABELS_TO_ACTIVATE} of each"
        )
    return None


def compare_with_active(
    trained: TrainedModel, table: LabelledTable, config: TrainingConfig, models_dir: Path
) -> dict[str, Any] | None:
    """The new model and the active one on the new model's held-out test part; None if no active.

    Both are scored on the same rows: the most recent part of the platform's labelled payments,
    which the new model never saw. The active model may have (a platform model trained earlier on
    overlapping labels), so a tie or a small loss for the new model is not a regression by itself.
    """
    active = store.active_version(models_dir)
    if active is None:
        return None
    loaded = store.load(models_dir, active)
    missing = [name for name in loaded.schema.inputs if name not in table.frame.columns]
    if missing:
        return {
            "active": active,
            "skipped": f"the active model reads {len(missing)} inputs the platform does not "
            f"record (e.g. {missing[0]!r}): it was not trained on BastionPay's features",
        }
    split = split_table(
        table,
        test_fraction=config.test_fraction,
        calibration_fraction=config.calibration_fraction,
        seed=config.seed,
    )
    evaluation = trained.evaluation
    if evaluation is None or len(evaluation.y) != len(split.test):  # pragma: no cover - same split
        return {"active": active, "skipped": "the new model's test part could not be rebuilt"}
    x = loaded.schema.encode_frame(table.frame.iloc[split.test])
    probability = calibrated_probability(
        loaded.trees, loaded.calibrator, x, loaded.linear, loaded.neural
    )
    return {
        "active": active,
        "rows": len(split.test),
        "positives": int(evaluation.y.sum()),
        "new": classification_metrics(evaluation.y, evaluation.probability, trained.mapping),
        "active_metrics": classification_metrics(evaluation.y, probability, loaded.mapping),
    }


def comparison_lines(comparison: dict[str, Any] | None) -> list[str]:
    if comparison is None:
        return ["no active model to compare with"]
    if "skipped" in comparison:
        return [
            f"not compared with the active model {comparison['active']}: {comparison['skipped']}"
        ]
    lines = [
        f"on the new held-out part ({comparison['rows']} payments, {comparison['positives']} "
        "fraud):",
        f"{'':26} {'ROC-AUC':>8} {'AUPRC':>8} {'P@65':>7} {'R@65':>7}",
    ]
    for title, metrics in (
        ("new model", comparison["new"]),
        (f"active {comparison['active'][:18]}", comparison["active_metrics"]),
    ):
        at = metrics["thresholds"]["elevated"]
        lines.append(
            f"{title:26} {metrics['roc_auc']:8.4f} {metrics['average_precision']:8.4f} "
            f"{_figure(at['precision'])} {_figure(at['recall'])}"
        )
    return lines


def _figure(value: float | None) -> str:
    return f"{'n/a':>7}" if value is None else f"{value:7.4f}"
