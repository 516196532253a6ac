"""Small synthetic fraud data for the model's tests: numbers, categories, missing values, a time.

The signal is planted (fraud more likely for large amounts, one country, a high device score and
missing device scores), so a model that learns anything ranks frauds first; rows are written in
shuffled order so the loader's time ordering is exercised.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from bastionpay.risk.model.training import TrainedModel, TrainingConfig, train

START = 1_760_000_000
COLUMNS = ("time", "amount", "country", "device_score", "is_new_card", "txn_id", "label")


def write_synthetic(path: Path, n: int = 3000, *, seed: int = 7, fraud_scale: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    times = START + rng.integers(0, 20 * 86_400, n)
    amount = rng.lognormal(3.5, 1.0, n)
    country = rng.choice(
        ["FR", "US", "DE", "GB", "NG", "BR"], n, p=[0.3, 0.3, 0.15, 0.1, 0.05, 0.1]
    )
    device = rng.normal(size=n)
    missing = rng.random(n) < 0.15
    new_card = rng.random(n) < 0.3
    logit = (
        -4.2
        + 0.6 * (np.log(amount) - 3.5)
        + 1.6 * (country == "NG")
        + 1.2 * device
        + 1.0 * missing
        + 0.8 * new_card
    )
    label = (rng.random(n) < fraud_scale / (1 + np.exp(-logit))).astype(int)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for i in rng.permutation(n):
            writer.writerow(
                [
                    int(times[i]),
                    f"{amount[i]:.2f}",
                    country[i],
                    "" if missing[i] else f"{device[i]:.3f}",
                    "true" if new_card[i] else "false",
                    f"tx_{i:06d}",
                    int(label[i]),
                ]
            )
    return path


# Small and fast: 2 candidates × 60 iterations; one OpenMP thread (the machine has 2 shared cores).
FAST = TrainingConfig(
    max_iter=60,
    iteration_step=20,
    max_leaf_nodes=(15,),
    l2_regularization=(1.0,),
    positive_weights=("none", "sqrt"),
)


@pytest.fixture
def fast_config() -> TrainingConfig:
    return FAST


@pytest.fixture
def make_csv(tmp_path: Path) -> Callable[..., Path]:
    """`make_csv(name, n=…, seed=…, fraud_scale=…)`: a synthetic file in the test's tmp dir."""

    def make(name: str = "payments.csv", **kwargs: Any) -> Path:
        return write_synthetic(tmp_path / name, **kwargs)

    return make


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("risk-data") / "payments.csv")


@pytest.fixture(scope="session")
def trained(synthetic_csv: Path) -> TrainedModel:
    return train(synthetic_csv, "label", "time", config=FAST)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Keep every test's fitting and scoring on one core, whatever the test runner does.
    with threadpool_limits(limits=1):
        yield
