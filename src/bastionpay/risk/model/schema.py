"""Which columns a model reads, and how a value of each becomes a number.

The schema is inferred once from the training table and stored in the model's manifest. The same
encoder then serves both sides: `encode_frame` turns the training table into a matrix, and
`encode_rows` turns the dicts the payment path scores into the same matrix, so a value means the
same thing in training and at serving time (train/serve skew is the classic way a fraud model
silently degrades). A test checks the two paths agree value for value.

Encoding, column by column:
- numeric (numbers and booleans): float; missing, empty or unparsable → NaN, which the gradient
  boosting model treats as its own branch (it learns where missing values go);
- categorical (anything else): an integer code per category, the codes ordered by frequency in the
  fitting rows; categories beyond `MAX_CATEGORIES - 1` share one "other" code, which a category
  never seen in training also gets (when the column has no "other" code, it is read as missing);
- derived time features (opt-in): `hour_of_day` (and `day_of_week` for timestamps) from the time
  column. Off by default because the payment path must then pass the time with every row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from bastionpay.risk.model.errors import DatasetError

FeatureKind = Literal["numeric", "categorical"]
Derivation = Literal["", "hour_of_day", "day_of_week"]
TimeKind = Literal["numeric", "datetime"]

# HistGradientBoostingClassifier bins a categorical feature by its code, and the codes must fit in
# its 255 bins (max_bins); one bin is kept for "other".
MAX_CATEGORIES: Final = 254
OTHER: Final = "__other__"
# A text column where most values are unique is an identifier (transaction id, email): it cannot
# generalise and only lets the trees memorise rows, so it is dropped (and reported).
IDENTIFIER_UNIQUE_RATIO: Final = 0.5
_TRUE: Final = frozenset({"true", "t", "yes", "y", "1"})
_FALSE: Final = frozenset({"false", "f", "no", "n", "0"})
_SECONDS_PER_DAY: Final = 86_400

FloatMatrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Feature:
    """One model input: `name` in the matrix, read from row key `source`."""

    name: str
    kind: FeatureKind
    source: str
    derive: Derivation = ""
    # For categorical features: the code of a category is its index here.
    categories: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "derive": self.derive,
            "categories": list(self.categories),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Feature:
        kind = str(data["kind"])
        derive = str(data.get("derive", ""))
        if kind not in ("numeric", "categorical") or derive not in (
            "",
            "hour_of_day",
            "day_of_week",
        ):
            raise DatasetError(f"unknown feature kind or derivation in manifest: {kind}/{derive}")
        return cls(
            name=str(data["name"]),
            kind=kind,  # type: ignore[arg-type]  # checked against the Literal just above
            source=str(data["source"]),
            derive=derive,  # type: ignore[arg-type]  # ditto
            categories=tuple(str(c) for c in data.get("categories", ())),
        )


@dataclass(frozen=True)
class Schema:
    features: tuple[Feature, ...]
    time_column: str | None = None
    time_kind: TimeKind | None = None
    dropped: tuple[tuple[str, str], ...] = ()  # (column, why) for the report
    _codes: tuple[dict[str, int], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        # Lookup tables for scoring, built once (a dict lookup per categorical value per row).
        object.__setattr__(
            self, "_codes", tuple({c: i for i, c in enumerate(f.categories)} for f in self.features)
        )

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical_mask(self) -> list[bool]:
        return [f.kind == "categorical" for f in self.features]

    @property
    def inputs(self) -> list[str]:
        """The row keys scoring reads (a missing key is a missing value)."""
        return sorted({f.source for f in self.features})

    def to_json(self) -> dict[str, Any]:
        return {
            "features": [f.to_json() for f in self.features],
            "time_column": self.time_column,
            "time_kind": self.time_kind,
            "dropped": [list(d) for d in self.dropped],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Schema:
        time_kind = data.get("time_kind")
        if time_kind not in (None, "numeric", "datetime"):
            raise DatasetError(f"unknown time kind in manifest: {time_kind}")
        return cls(
            features=tuple(Feature.from_json(f) for f in data["features"]),
            time_column=data.get("time_column"),
            time_kind=time_kind,
            dropped=tuple((str(c), str(w)) for c, w in data.get("dropped", ())),
        )

    # --- training side: a whole table at once -------------------------------------------------

    def encode_frame(self, frame: pd.DataFrame) -> FloatMatrix:
        out = np.full((len(frame), len(self.features)), np.nan, dtype=np.float64)
        for j, feat in enumerate(self.features):
            if feat.source not in frame.columns:
                continue  # a missing column is all missing values, as in encode_rows
            column = frame[feat.source]
            if feat.derive:
                seconds = time_seconds(column, self.time_kind)
                out[:, j] = _derive(seconds, feat.derive)
            elif feat.kind == "numeric":
                out[:, j] = numeric_values(column)
            else:
                codes = self._codes[j]
                other = codes.get(OTHER)
                mapped = column.map(
                    lambda v, codes=codes, other=other: _category_code(v, codes, other)
                )
                out[:, j] = mapped.to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    # --- serving side: a few dicts at a time --------------------------------------------------

    def encode_rows(self, rows: Sequence[Mapping[str, object]]) -> FloatMatrix:
        out = np.empty((len(rows), len(self.features)), dtype=np.float64)
        for i, row in enumerate(rows):
            for j, feat in enumerate(self.features):
                value = row.get(feat.source)
                if feat.derive:
                    out[i, j] = _derive_one(value, self.time_kind, feat.derive)
                elif feat.kind == "numeric":
                    out[i, j] = _number(value)
                else:
                    codes = self._codes[j]
                    out[i, j] = _category_code(value, codes, codes.get(OTHER))
        return out


def infer_schema(
    frame: pd.DataFrame,
    *,
    label: str,
    time_column: str | None,
    exclude: Sequence[str] = (),
    time_features: bool = False,
    raw_time: bool = False,
) -> Schema:
    """Decide each column's kind and categories from `frame` (the rows the trees are fitted on).

    `raw_time` keeps a numeric time column as an ordinary number (used only by the untuned
    baseline, which reproduces what "throw the CSV at gradient boosting" gives); otherwise the
    time column orders the rows and is not a feature: the future always lies beyond the training
    range, where a tree can only extrapolate from its last bin.
    """
    features: list[Feature] = []
    dropped: list[tuple[str, str]] = []
    time_kind: TimeKind | None = None
    if time_column is not None:
        time_kind = "numeric" if pd.api.types.is_numeric_dtype(frame[time_column]) else "datetime"
    skip = {label, *exclude}
    for name in frame.columns:
        column_name = str(name)
        if column_name in skip:
            continue
        column = frame[name]
        if column_name == time_column and not (raw_time and time_kind == "numeric"):
            continue
        if column.isna().all():
            dropped.append((column_name, "no values"))
            continue
        if _is_numeric(column):
            features.append(Feature(column_name, "numeric", column_name))
            continue
        strings = column.dropna().astype(str).str.strip()
        strings = strings[strings != ""]
        counts = strings.value_counts(sort=True)
        if len(counts) > MAX_CATEGORIES and len(counts) > IDENTIFIER_UNIQUE_RATIO * len(strings):
            dropped.append((column_name, "mostly unique values (an identifier?)"))
            continue
        # Sorting by frequency then name makes the codes deterministic for a given table.
        ordered = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        categories = [str(k) for k, _ in ordered]
        if len(categories) > MAX_CATEGORIES:
            categories = [*categories[: MAX_CATEGORIES - 1], OTHER]
        features.append(Feature(column_name, "categorical", column_name, "", tuple(categories)))
    if time_column is not None and time_features:
        features.append(Feature("hour_of_day", "numeric", time_column, "hour_of_day"))
        if time_kind == "datetime":
            features.append(Feature("day_of_week", "numeric", time_column, "day_of_week"))
    if not features:
        raise DatasetError("no usable feature columns besides the label and the time column")
    return Schema(tuple(features), time_column, time_kind, tuple(dropped))


def _is_numeric(column: pd.Series[Any]) -> bool:
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return True
    # A text column holding only true/false words (or booleans mixed with missing cells, which
    # pandas reads as object) is a flag, i.e. a number.
    values = {str(v).strip().lower() for v in column.dropna().unique()} - {""}
    return bool(values) and values <= (_TRUE | _FALSE)


def numeric_values(column: pd.Series[Any]) -> npt.NDArray[np.float64]:
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.fromiter((_number(v) for v in column), dtype=np.float64, count=len(column))


def time_seconds(column: pd.Series[Any], kind: TimeKind | None) -> npt.NDArray[np.float64]:
    """Unix seconds (or seconds from the data set's own origin) for each row; NaN if unreadable."""
    if kind == "numeric":
        return numeric_values(column)
    parsed = pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return np.asarray(seconds.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def _derive(seconds: npt.NDArray[np.float64], derive: Derivation) -> npt.NDArray[np.float64]:
    # Numeric times are taken as seconds (Unix time, or seconds from an origin at midnight as in
    # the ULB data set); the hour is in UTC.
    if derive == "hour_of_day":
        return np.asarray(np.mod(seconds, _SECONDS_PER_DAY) / 3600.0, dtype=np.float64)
    # 1970-01-01 was a Thursday: shift so that Monday is 0, as datetime.weekday() numbers days.
    return np.asarray(np.floor(np.mod(seconds / _SECONDS_PER_DAY + 3, 7)), dtype=np.float64)


def _derive_one(value: object, kind: TimeKind | None, derive: Derivation) -> float:
    seconds = _number(value) if kind == "numeric" else _timestamp(value)
    return float(_derive(np.array([seconds]), derive)[0])


def _timestamp(value: object) -> float:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return math.nan
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return math.nan


def _number(value: object) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE - {"1"}:
            return 1.0
        if text in _FALSE - {"0"}:
            return 0.0
        try:
            return float(text)
        except ValueError:
            return math.nan
    return math.nan


def _category_code(value: object, codes: Mapping[str, int], other: int | None) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return math.nan
    text = str(value).strip()
    if not text:
        return math.nan
    code = codes.get(text)
    if code is not None:
        return float(code)
    # Rare categories were folded into "other" in training; a never-seen one is indistinguishable
    # from a rare one here, so it gets the same code when there is one, and is missing otherwise.
    return float(other) if other is not None else math.nan
