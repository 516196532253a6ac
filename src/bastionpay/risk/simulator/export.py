"""A training file from the simulator, in the shape the generic pipeline reads.

`bastionpay risk train --dataset sim.csv --label label --time time` must be able to use it as is,
so the file holds exactly the model's inputs (`MODEL_FEATURES`, in schema order), the label and
the time; nothing else. In particular the scenario name is left out: it is the generator's ground
truth, and a pipeline that treats every other column as a feature would learn it and score
perfectly on nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from bastionpay.risk.feature_schema import MODEL_FEATURES
from bastionpay.risk.simulator.events import SimulatedPayment
from bastionpay.risk.simulator.generator import DEFAULT_START, simulate

CSV_COLUMNS: Final = ("time", *MODEL_FEATURES, "label")


def csv_value(value: object) -> str:
    """Booleans as 1/0 and missing as an empty cell, so both read as numbers (NaN when empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def csv_rows(payments: Iterable[SimulatedPayment]) -> Iterable[list[str]]:
    for p in payments:
        features = p.features
        yield [
            str(p.event.time),
            *(csv_value(features[name]) for name in MODEL_FEATURES),
            str(p.label),
        ]


def write_csv(
    path: str | Path,
    n_events: int,
    *,
    seed: int = 0,
    merchants: int = 3,
    fraud_rate: float = 0.015,
    start: int = DEFAULT_START,
) -> int:
    """Simulate `n_events` attempts into a CSV at `path`; returns the number of data rows."""
    rows = 0
    with Path(path).open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for row in csv_rows(
            simulate(n_events, seed=seed, merchants=merchants, fraud_rate=fraud_rate, start=start)
        ):
            writer.writerow(row)
            rows += 1
    return rows
