"""How good a set of fraud probabilities is, in the terms a risk team acts on.

- ROC-AUC: how well frauds are ranked above legitimate payments overall (insensitive to the fraud
  rate, hence flattering on rare fraud);
- AUPRC (average precision, sklearn's step-wise sum, no interpolation): the headline figure for rare
  fraud, what the issue's 0.787 baseline is quoted in;
- precision and recall at each operating threshold (`elevated` ≥ 65, `highest` ≥ 75 on the score):
  of the payments flagged, how many were fraud; of the frauds, how many were flagged. Precision of
  an empty set is undefined and reported as None, not 0;
- Brier score and log-loss: whether the probabilities themselves can be trusted (calibration).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)

from bastionpay.risk.model.scoremap import ELEVATED_SCORE, HIGHEST_SCORE, ScoreMapping

THRESHOLDS: Final = (("elevated", ELEVATED_SCORE), ("highest", HIGHEST_SCORE))


def classification_metrics(
    y: npt.ArrayLike, probability: npt.ArrayLike, mapping: ScoreMapping
) -> dict[str, Any]:
    truth = np.asarray(y, dtype=np.int8)
    p = np.asarray(probability, dtype=np.float64)
    scores = mapping.scores(p)
    positives = int(truth.sum())
    result: dict[str, Any] = {
        "rows": len(truth),
        "positives": positives,
        "roc_auc": float(roc_auc_score(truth, p)),
        "average_precision": float(average_precision_score(truth, p)),
        "brier": float(brier_score_loss(truth, p)),
        # Calibration at a glance: the mean probability should be close to the fraud rate.
        "mean_probability": float(p.mean()),
        "fraud_rate": positives / len(truth),
        "log_loss": float(log_loss(truth, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "thresholds": {},
    }
    for name, threshold in THRESHOLDS:
        flagged = scores >= threshold
        result["thresholds"][name] = at_threshold(truth, flagged) | {
            "score": threshold,
            "probability": mapping.probability_at(threshold),
        }
    return result


def at_threshold(truth: npt.NDArray[np.int8], flagged: npt.NDArray[np.bool_]) -> dict[str, Any]:
    n_flagged = int(flagged.sum())
    true_positives = int((flagged & (truth == 1)).sum())
    positives = int(truth.sum())
    return {
        "flagged": n_flagged,
        "flagged_fraction": n_flagged / len(truth) if len(truth) else 0.0,
        "true_positives": true_positives,
        "precision": true_positives / n_flagged if n_flagged else None,
        "recall": true_positives / positives if positives else None,
    }


def pr_curve(
    y: npt.ArrayLike, probability: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(recall, precision) points of the precision-recall curve, for the plot."""
    precision, recall, _ = precision_recall_curve(
        np.asarray(y, dtype=np.int8), np.asarray(probability, dtype=np.float64)
    )
    return np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64)
