"""Metrics on a hand-checkable case, against sklearn.metrics; the probability → score mapping."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from bastionpay.risk.model.metrics import classification_metrics
from bastionpay.risk.model.scoremap import ScoreMapping

MAPPING = ScoreMapping()  # elevated at P = 0.1 (score 65), highest at P = 0.5 (score 75)


def test_metrics_on_a_tiny_case() -> None:
    y = np.array([0, 0, 1, 0, 1, 1, 0, 0])
    p = np.array([0.01, 0.2, 0.6, 0.05, 0.3, 0.9, 0.7, 0.001])
    m = classification_metrics(y, p, MAPPING)
    # By hand: frauds at 0.6, 0.3, 0.9. Ranked: .9(F) .7 .6(F) .3(F) .2 .05 .01 .001.
    # AP = mean precision at each fraud = (1/1 + 2/3 + 3/4) / 3 = 0.80556.
    assert m["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert m["average_precision"] == pytest.approx(average_precision_score(y, p))
    # AUC: of 3 × 5 (fraud, legitimate) pairs, the fraud ranks higher in all but (0.6, 0.7) and
    # (0.3, 0.7): 13/15.
    assert m["roc_auc"] == pytest.approx(13 / 15)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    # elevated (P >= 0.1): flagged .2 .6 .3 .9 .7 → 3 of 5 frauds, all 3 frauds found.
    elevated = m["thresholds"]["elevated"]
    assert (elevated["flagged"], elevated["true_positives"]) == (5, 3)
    assert elevated["precision"] == pytest.approx(precision_score(y, p >= 0.1))
    assert elevated["recall"] == pytest.approx(recall_score(y, p >= 0.1)) == 1.0
    # highest (P >= 0.5): .6 .9 .7 → 2 of 3.
    highest = m["thresholds"]["highest"]
    assert highest["precision"] == pytest.approx(2 / 3)
    assert highest["precision"] == pytest.approx(precision_score(y, p >= 0.5))
    assert highest["recall"] == pytest.approx(recall_score(y, p >= 0.5)) == pytest.approx(2 / 3)
    assert highest["score"] == 75
    assert highest["probability"] == pytest.approx(0.5)


def test_precision_of_nothing_flagged_is_undefined_not_zero() -> None:
    m = classification_metrics([0, 1, 0, 1], [0.01, 0.02, 0.03, 0.04], MAPPING)
    assert m["thresholds"]["highest"]["flagged"] == 0
    assert m["thresholds"]["highest"]["precision"] is None
    assert m["thresholds"]["highest"]["recall"] == 0.0


def test_score_mapping_knots_monotonicity_and_range() -> None:
    assert MAPPING.scores([0.1, 0.5]).tolist() == pytest.approx([65.0, 75.0])
    assert MAPPING.scores([0.0, 1e-4, 0.9999, 1.0]).tolist() == pytest.approx([0, 0, 100, 100])
    grid = np.concatenate([[0.0], np.logspace(-8, -1e-9, 2000), [1.0]])
    scores = MAPPING.scores(grid)
    assert (np.diff(scores) >= 0).all()
    assert scores.min() == 0.0
    assert scores.max() == 100.0
    # Each decade of odds below "elevated" is the same number of points.
    odds = np.array([1e-3, 1e-2])
    p = odds / (1 + odds)
    floor = np.log10(1e-4 / (1 - 1e-4))  # the log-odds of the score-0 knot
    assert np.diff(MAPPING.scores(p))[0] == pytest.approx(65 / (np.log10(1 / 9) - floor))
    for score in (10.0, 65.0, 70.0, 75.0, 90.0):
        assert MAPPING.scores([MAPPING.probability_at(score)])[0] == pytest.approx(score)
    custom = ScoreMapping(elevated_probability=0.02, highest_probability=0.2)
    assert custom.scores([0.02, 0.2]).tolist() == pytest.approx([65.0, 75.0])
    with pytest.raises(ValueError, match="elevated_probability < highest_probability"):
        ScoreMapping(elevated_probability=0.5, highest_probability=0.1)
