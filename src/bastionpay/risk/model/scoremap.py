"""From a calibrated probability of fraud to BastionPay's 0–100 risk score, and back.

The score is piecewise linear in the log-odds of the calibrated probability, through four knots:

    probability  0.0001   0.10 (elevated)   0.50 (highest)   0.9999
    score        0        65                75               100

and clamped to 0–100 outside them. So:
- `score >= 75` ⇔ P(fraud) >= 0.5: a "highest" payment is more likely fraud than not. Because the
  probability is calibrated, the expected precision of the set of payments at or above a
  probability t is the mean probability over that set, which is at least t: at least half of the
  "highest" payments are expected to be fraud;
- `score >= 65` ⇔ P(fraud) >= 0.1: at most about nine in ten "elevated" payments sent to review are
  expected to be legitimate;
- below 65 each factor of ~10 in the odds is ~21 points, so ordinary traffic (probabilities around
  1e-4 to 1e-2) spreads over the lower range instead of collapsing onto 0, and a rule such as
  `:risk_score: > 40` still means something.

Log-odds rather than probability because fraud probabilities span orders of magnitude; the knots
are stored in each model's manifest, so a model and its meaning travel together. The two middle
knots are the operating points (`elevated_probability`, `highest_probability`), adjustable per
training run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

ELEVATED_SCORE: Final = 65.0
HIGHEST_SCORE: Final = 75.0
FLOOR_PROBABILITY: Final = 1e-4
CEILING_PROBABILITY: Final = 1 - 1e-4


def _log_odds(p: npt.ArrayLike) -> npt.NDArray[np.float64]:
    clipped = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.asarray(np.log10(clipped / (1 - clipped)), dtype=np.float64)


@dataclass(frozen=True)
class ScoreMapping:
    elevated_probability: float = 0.1
    highest_probability: float = 0.5

    def __post_init__(self) -> None:
        if not (
            FLOOR_PROBABILITY
            < self.elevated_probability
            < self.highest_probability
            < CEILING_PROBABILITY
        ):
            raise ValueError(
                "need 0.0001 < elevated_probability < highest_probability < 0.9999, got "
                f"{self.elevated_probability} and {self.highest_probability}"
            )

    @property
    def knots(self) -> tuple[tuple[float, float], ...]:
        """(probability, score) pairs, increasing in both."""
        return (
            (FLOOR_PROBABILITY, 0.0),
            (self.elevated_probability, ELEVATED_SCORE),
            (self.highest_probability, HIGHEST_SCORE),
            (CEILING_PROBABILITY, 100.0),
        )

    def scores(self, probabilities: npt.ArrayLike) -> npt.NDArray[np.float64]:
        xs = _log_odds([p for p, _ in self.knots])
        ys = np.array([s for _, s in self.knots], dtype=np.float64)
        return np.interp(_log_odds(probabilities), xs, ys)

    def probability_at(self, score: float) -> float:
        """The smallest probability that reaches `score` (inverse of `scores` inside the knots)."""
        xs = np.array([s for _, s in self.knots], dtype=np.float64)
        ys = _log_odds([p for p, _ in self.knots])
        z = float(np.interp(score, xs, ys))
        return float(10**z / (1 + 10**z))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "log_odds_piecewise_linear",
            "knots": [list(k) for k in self.knots],
            "elevated_probability": self.elevated_probability,
            "highest_probability": self.highest_probability,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScoreMapping:
        return cls(float(data["elevated_probability"]), float(data["highest_probability"]))
