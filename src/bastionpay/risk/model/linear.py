"""A strongly regularised logistic regression, blended with the boosted trees.

Why: on the ULB data the trees and a linear model on standardised features make different
mistakes. Measured on time-ordered validation slices inside the training part only (never the test
part; docs/risk-model.md): averaging the two models' log-odds raised AUPRC on three slices, and
the gain held for every regularisation strength tried over two orders of magnitude, so the blend is
not a tuned accident. The linear part costs a dot product per score.

The design matrix, built the same way for training and for scoring:
- numeric feature: missing → its median over the fitting rows; plus a 0/1 "was missing" column
  when the fitting rows had missing values in it;
- categorical feature (the schema's integer codes): one 0/1 column per code; missing or unknown
  codes → all zeros;
- every column standardised with the fitting rows' mean and standard deviation (1 when constant).

The fitted model is kept as plain numpy arrays (`to_arrays`), so the model file needs no new
trusted type, and scoring is numpy only (no scikit-learn call per score).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression

from bastionpay.risk.model.schema import FloatMatrix, Schema

# Regularisation per row: LogisticRegression's C = C_PER_ROW / rows, so the penalty's weight
# relative to the data does not depend on the data's size (C ≈ 0.001 on ULB's 182k fitting rows;
# validation AUPRC of the blend was flat for C from 0.0001 to 0.01 there).
C_PER_ROW: Final = 200.0
MAX_ITER: Final = 2000
_ARRAYS: Final = (
    "numeric",
    "fill",
    "indicator",
    "categorical",
    "levels",
    "mean",
    "scale",
    "coef",
    "intercept",
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LinearPart:
    numeric: IntArray  # matrix columns read as numbers
    fill: FloatArray  # their medians over the fitting rows (for missing values)
    indicator: IntArray  # matrix columns that also get a "was missing" column
    categorical: IntArray  # matrix columns holding category codes
    levels: IntArray  # number of codes of each categorical column
    mean: FloatArray  # per design column
    scale: FloatArray  # per design column
    coef: FloatArray  # per design column
    intercept: FloatArray  # shape (1,)

    def design(self, x: FloatMatrix) -> FloatMatrix:
        numeric = x[:, self.numeric]
        numeric = np.where(np.isnan(numeric), self.fill, numeric)
        blocks = [numeric, np.isnan(x[:, self.indicator]).astype(np.float64)]
        for column, levels in zip(self.categorical.tolist(), self.levels.tolist(), strict=True):
            codes = x[:, column]
            blocks.append(
                (codes[:, None] == np.arange(levels, dtype=np.float64)[None, :]).astype(np.float64)
            )
        return np.hstack(blocks)

    def decision_function(self, x: FloatMatrix) -> FloatArray:
        z = (self.design(x) - self.mean) / self.scale
        return np.asarray(z @ self.coef + self.intercept[0], dtype=np.float64)

    def to_arrays(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _ARRAYS}

    @classmethod
    def from_arrays(cls, data: Any) -> LinearPart:
        """Rebuild from `to_arrays` (a loaded model file); raises ValueError on any mismatch."""
        if not isinstance(data, dict) or set(data) != set(_ARRAYS):
            raise ValueError("the linear part is not the expected set of arrays")
        ints = {"numeric", "indicator", "categorical", "levels"}
        arrays: dict[str, Any] = {
            name: np.asarray(data[name], dtype=np.int64 if name in ints else np.float64)
            for name in _ARRAYS
        }
        width = len(arrays["numeric"]) + len(arrays["indicator"]) + int(arrays["levels"].sum())
        shapes_ok = (
            len(arrays["fill"]) == len(arrays["numeric"])
            and len(arrays["levels"]) == len(arrays["categorical"])
            and all(len(arrays[n]) == width for n in ("mean", "scale", "coef"))
            and arrays["intercept"].shape == (1,)
            and bool((arrays["scale"] > 0).all())
        )
        if not shapes_ok:
            raise ValueError("the linear part's arrays have inconsistent shapes")
        return cls(**arrays)


def fit_linear(
    x: FloatMatrix, y: npt.NDArray[np.int8], schema: Schema, *, seed: int = 0
) -> LinearPart:
    mask = np.asarray(schema.categorical_mask, dtype=bool)
    numeric = np.flatnonzero(~mask).astype(np.int64)
    categorical = np.flatnonzero(mask).astype(np.int64)
    levels = np.array(
        [len(schema.features[c].categories) for c in categorical.tolist()], dtype=np.int64
    )
    values = x[:, numeric]
    missing = np.isnan(values)
    with np.errstate(all="ignore"):
        fill = np.nan_to_num(np.nanmedian(values, axis=0) if len(values) else np.zeros(0))
    indicator = numeric[missing.any(axis=0)]
    empty = np.zeros(0)
    part = LinearPart(
        numeric,
        np.asarray(fill, dtype=np.float64),
        indicator,
        categorical,
        levels,
        empty,
        empty,
        empty,
        np.zeros(1),
    )
    design = part.design(x)
    mean = design.mean(axis=0)
    scale = design.std(axis=0)
    scale[~(scale > 1e-12)] = 1.0
    model = LogisticRegression(C=C_PER_ROW / len(y), max_iter=MAX_ITER, random_state=seed)
    model.fit((design - mean) / scale, y)
    return LinearPart(
        numeric,
        part.fill,
        indicator,
        categorical,
        levels,
        np.asarray(mean, dtype=np.float64),
        np.asarray(scale, dtype=np.float64),
        np.asarray(model.coef_[0], dtype=np.float64),
        np.asarray(model.intercept_, dtype=np.float64),
    )


def blend(tree_decision: npt.ArrayLike, linear_decision: npt.ArrayLike) -> FloatArray:
    """The blended log-odds: the mean of the trees' and the linear model's."""
    return np.asarray(
        (np.asarray(tree_decision, dtype=np.float64) + np.asarray(linear_decision)) / 2.0,
        dtype=np.float64,
    )
