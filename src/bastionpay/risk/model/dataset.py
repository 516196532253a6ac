"""Reading a labelled CSV and splitting it without letting the future leak into the past.

Splits (all deterministic):
- with a time column, rows are ordered by time (stable, so ties keep file order) and the first
  `1 - test_fraction` of them train, the rest test; inside the training part the most recent
  `calibration_fraction` is held out for model selection and calibration. No test row is older
  than a training row, and no calibration row older than a fitting row: this is how the model
  will be used (trained on the past, scoring the future), and fraud patterns drift;
- without one, stratified random splits with a fixed seed, so both parts keep the fraud rate.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.model_selection import train_test_split

from bastionpay.risk.model.errors import DatasetError
from bastionpay.risk.model.schema import TimeKind, time_seconds

# Bounded input (TIGER_STYLE: a limit on everything): a training file is read whole into memory.
MAX_DATASET_BYTES: Final = 4 * 1024**3
_LABEL_WORDS: Final = {
    "0": 0,
    "1": 1,
    "false": 0,
    "true": 1,
    "no": 0,
    "yes": 1,
    "0.0": 0,
    "1.0": 1,
}

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class LabelledTable:
    frame: pd.DataFrame  # every column but the label, in time order when there is a time column
    y: npt.NDArray[np.int8]  # 1 = fraud
    label: str
    time_column: str | None
    time_kind: TimeKind | None
    times: npt.NDArray[np.float64] | None  # seconds, aligned with `frame`
    sha256: str  # of the file's bytes: which data a model was trained on
    source_name: str

    @property
    def positives(self) -> int:
        return int(self.y.sum())


@dataclass(frozen=True)
class Split:
    """Row positions into a `LabelledTable`: fit + calibration = the training part."""

    kind: Literal["time", "stratified"]
    fit: IntArray
    calibration: IntArray
    test: IntArray

    @property
    def train(self) -> IntArray:
        return np.concatenate([self.fit, self.calibration])


def load_table(
    source: Path | IO[bytes],
    *,
    label: str,
    time_column: str | None = None,
    source_name: str | None = None,
) -> LabelledTable:
    """Read `source` (a path or a binary file object, e.g. a member of a zip archive)."""
    raw = _read_bytes(source)
    digest = hashlib.sha256(raw).hexdigest()
    try:
        frame = pd.read_csv(io.BytesIO(raw), low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"cannot read the CSV: {exc}") from None
    del raw
    name = source_name or (source.name if isinstance(source, Path) else "dataset.csv")
    return table_from_frame(frame, label=label, time_column=time_column, sha256=digest, name=name)


def table_from_frame(
    frame: pd.DataFrame,
    *,
    label: str,
    time_column: str | None,
    sha256: str,
    name: str,
) -> LabelledTable:
    columns = [str(c) for c in frame.columns]
    if label not in columns:
        raise DatasetError(f"no label column {label!r}; the columns are: {_listing(columns)}")
    if time_column is not None and time_column not in columns:
        raise DatasetError(f"no time column {time_column!r}; the columns are: {_listing(columns)}")
    if time_column == label:
        raise DatasetError("the time column cannot be the label")
    y = binary_label(frame[label], label)
    times: npt.NDArray[np.float64] | None = None
    time_kind: TimeKind | None = None
    if time_column is not None:
        time_kind = "numeric" if pd.api.types.is_numeric_dtype(frame[time_column]) else "datetime"
        times = time_seconds(frame[time_column], time_kind)
        unreadable = int(np.isnan(times).sum())
        if unreadable:
            raise DatasetError(
                f"{unreadable} rows have no readable time in {time_column!r}: times must be "
                "numbers (seconds) or ISO 8601 timestamps"
            )
        order = np.argsort(times, kind="stable")
        frame = frame.iloc[order].reset_index(drop=True)
        y = y[order]
        times = times[order]
    features = frame.drop(columns=[label])
    return LabelledTable(features, y, label, time_column, time_kind, times, sha256, name)


def binary_label(column: pd.Series[Any], label: str) -> npt.NDArray[np.int8]:
    missing = int(column.isna().sum())
    if missing:
        raise DatasetError(f"{missing} rows have no value in the label column {label!r}")
    values = column.unique()
    words = {str(v).strip().lower() for v in values}
    if len(words) == 1 and words <= _LABEL_WORDS.keys():
        raise DatasetError(
            f"the label {label!r} has one value only ({values[0]!r}): a model needs both classes"
        )
    if len(words) != 2 or not words <= _LABEL_WORDS.keys():
        shown = ", ".join(sorted(repr(str(v)) for v in values[:5]))
        raise DatasetError(
            f"the label {label!r} must be binary (0/1, true/false or yes/no); "
            f"it has {len(values)} distinct values: {shown}{', …' if len(values) > 5 else ''}"
        )
    mapped = column.map(lambda v: _LABEL_WORDS[str(v).strip().lower()])
    return mapped.to_numpy(dtype=np.int8)


def split_table(
    table: LabelledTable,
    *,
    test_fraction: float,
    calibration_fraction: float,
    seed: int,
) -> Split:
    n = len(table.y)
    positions = np.arange(n, dtype=np.int64)
    if table.times is not None:
        # Rows are already in time order (load_table sorted them): cut, never shuffle.
        n_train = n - round(n * test_fraction)
        n_fit = n_train - round(n_train * calibration_fraction)
        return Split("time", positions[:n_fit], positions[n_fit:n_train], positions[n_train:])
    train, test = train_test_split(
        positions, test_size=test_fraction, stratify=table.y, random_state=seed
    )
    fit, calibration = train_test_split(
        train, test_size=calibration_fraction, stratify=table.y[train], random_state=seed
    )
    return Split(
        "stratified",
        np.sort(np.asarray(fit, dtype=np.int64)),
        np.sort(np.asarray(calibration, dtype=np.int64)),
        np.sort(np.asarray(test, dtype=np.int64)),
    )


def check_enough_positives(table: LabelledTable, split: Split, minimum: int) -> None:
    """Refuse data that cannot yield a model worth its name, before spending time on fitting."""
    total = table.positives
    if total < minimum:
        raise DatasetError(
            f"too few positives: {total} rows have {table.label}=1, at least {minimum} are needed "
            "to fit, calibrate and test a model"
        )
    if total == len(table.y):
        raise DatasetError(f"every row has {table.label}=1: there is nothing to tell apart")
    for part, rows in (
        ("fitting", split.fit),
        ("calibration", split.calibration),
        ("test", split.test),
    ):
        positives = int(table.y[rows].sum())
        if positives < 2 or positives == len(rows):
            hint = (
                ": with a time split, frauds must occur throughout the period"
                if split.kind == "time"
                else ""
            )
            raise DatasetError(
                f"too few positives: the {part} part ({len(rows)} rows) has {positives}{hint}"
            )


def _read_bytes(source: Path | IO[bytes]) -> bytes:
    if isinstance(source, Path):
        try:
            size = source.stat().st_size
            if size > MAX_DATASET_BYTES:
                raise DatasetError(f"{source} is {size} bytes; the limit is {MAX_DATASET_BYTES}")
            return source.read_bytes()
        except OSError as exc:
            raise DatasetError(f"cannot read {source}: {exc.strerror or exc}") from None
    data = source.read(MAX_DATASET_BYTES + 1)
    if len(data) > MAX_DATASET_BYTES:
        raise DatasetError(f"the dataset is larger than the limit of {MAX_DATASET_BYTES} bytes")
    return data


def _listing(columns: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", … ({len(columns)} in all)" if len(columns) > limit else "")
