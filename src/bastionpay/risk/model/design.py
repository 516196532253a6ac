"""The numeric design matrix the blend's non-tree parts read (`linear.py`, `neural.py`).

Trees take the schema's matrix as it is (missing values and category codes included); a linear
model or a neural network needs numbers everywhere, on comparable scales. Built the same way for
training and for scoring:
- numeric feature: missing → its median over the fitting rows; plus a 0/1 "was missing" column
  when the fitting rows had missing values in it;
- categorical feature (the schema's integer codes): one 0/1 column per code; missing or unknown
  codes → all zeros;
- every column standardised with the fitting rows' mean and standard deviation (1 when constant).

Kept as plain numpy arrays (`to_arrays`), so a model file needs no new trusted type, and
encoding is numpy only (no scikit-learn call per score).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from bastionpay.risk.model.schema import FloatMatrix, Schema

ARRAYS: Final = ("numeric", "fill", "indicator", "categorical", "levels", "mean", "scale")
_INTS: Final = frozenset({"numeric", "indicator", "categorical", "levels"})

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Design:
    numeric: IntArray  # matrix columns read as numbers
    fill: FloatArray  # their medians over the fitting rows (for missing values)
    indicator: IntArray  # matrix columns that also get a "was missing" column
    categorical: IntArray  # matrix columns holding category codes
    levels: IntArray  # number of codes of each categorical column
    mean: FloatArray  # per design column
    scale: FloatArray  # per design column

    @property
    def width(self) -> int:
        return len(self.numeric) + len(self.indicator) + int(self.levels.sum())

    @property
    def max_column(self) -> int:
        """The highest schema column read (-1 when none): the loader checks it exists."""
        return int(max([*self.numeric.tolist(), *self.categorical.tolist(), -1]))

    def raw(self, x: FloatMatrix) -> FloatMatrix:
        """The design columns before standardisation."""
        numeric = x[:, self.numeric]
        numeric = np.where(np.isnan(numeric), self.fill, numeric)
        blocks = [numeric, np.isnan(x[:, self.indicator]).astype(np.float64)]
        for column, levels in zip(self.categorical.tolist(), self.levels.tolist(), strict=True):
            codes = x[:, column]
            blocks.append(
                (codes[:, None] == np.arange(levels, dtype=np.float64)[None, :]).astype(np.float64)
            )
        return np.hstack(blocks)

    def standardised(self, x: FloatMatrix) -> FloatMatrix:
        return np.asarray((self.raw(x) - self.mean) / self.scale, dtype=np.float64)

    def to_arrays(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ARRAYS}

    @classmethod
    def from_arrays(cls, data: dict[str, Any]) -> Design:
        """Rebuild from `to_arrays`' keys in `data`; raises ValueError on inconsistent shapes."""
        arrays: dict[str, Any] = {
            name: np.asarray(data[name], dtype=np.int64 if name in _INTS else np.float64)
            for name in ARRAYS
        }
        design = cls(**arrays)
        width = design.width
        if not (
            len(design.fill) == len(design.numeric)
            and len(design.levels) == len(design.categorical)
            and len(design.mean) == width
            and len(design.scale) == width
            and bool((design.scale > 0).all())
        ):
            raise ValueError("the design's arrays have inconsistent shapes")
        return design

    @classmethod
    def fit(cls, x: FloatMatrix, schema: Schema) -> Design:
        """Fill values, indicators, levels and scales from the fitting rows `x`."""
        mask = np.asarray(schema.categorical_mask, dtype=bool)
        numeric = np.flatnonzero(~mask).astype(np.int64)
        categorical = np.flatnonzero(mask).astype(np.int64)
        levels = np.array(
            [len(schema.features[c].categories) for c in categorical.tolist()], dtype=np.int64
        )
        values = x[:, numeric]
        with np.errstate(all="ignore"):
            fill = np.nan_to_num(np.nanmedian(values, axis=0) if len(values) else np.zeros(0))
        indicator = numeric[np.isnan(values).any(axis=0)]
        empty = np.zeros(0)
        unscaled = cls(
            numeric, np.asarray(fill, np.float64), indicator, categorical, levels, empty, empty
        )
        raw = unscaled.raw(x)
        scale = raw.std(axis=0)
        scale[~(scale > 1e-12)] = 1.0
        return cls(
            numeric,
            unscaled.fill,
            indicator,
            categorical,
            levels,
            np.asarray(raw.mean(axis=0), dtype=np.float64),
            np.asarray(scale, dtype=np.float64),
        )
