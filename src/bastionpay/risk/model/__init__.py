"""The fraud model (issue 7, item 3): training, versioned model files, scoring.

    from bastionpay.risk.model import train, save, load_active, ModelScorer

    trained = train(Path("history.csv"), label="label", time_column="time")
    save(trained, models_dir, activate=True)
    scorer = ModelScorer(load_active(models_dir))
    scorer.score_one({"amount_in_usd": 120.0, "card_country": "FR", ...})  # 0–100

See docs/risk-model.md. Names are loaded on first use, so importing this package (or its CLI
module) does not load scikit-learn, pandas and matplotlib until a model is actually touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bastionpay.risk.model.errors import DatasetError, ModelLoadError, RiskModelError
    from bastionpay.risk.model.report import write_report
    from bastionpay.risk.model.scoremap import ScoreMapping
    from bastionpay.risk.model.scorer import ModelScorer
    from bastionpay.risk.model.store import (
        LoadedModel,
        default_models_dir,
        load,
        load_active,
        save,
        set_active,
    )
    from bastionpay.risk.model.training import TrainedModel, TrainingConfig, evaluate, train

_EXPORTS = {
    "DatasetError": "errors",
    "ModelLoadError": "errors",
    "RiskModelError": "errors",
    "write_report": "report",
    "ScoreMapping": "scoremap",
    "ModelScorer": "scorer",
    "LoadedModel": "store",
    "default_models_dir": "store",
    "load": "store",
    "load_active": "store",
    "save": "store",
    "set_active": "store",
    "TrainedModel": "training",
    "TrainingConfig": "training",
    "evaluate": "training",
    "train": "training",
}

__all__ = [
    "DatasetError",
    "LoadedModel",
    "ModelLoadError",
    "ModelScorer",
    "RiskModelError",
    "ScoreMapping",
    "TrainedModel",
    "TrainingConfig",
    "default_models_dir",
    "evaluate",
    "load",
    "load_active",
    "save",
    "set_active",
    "train",
    "write_report",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
