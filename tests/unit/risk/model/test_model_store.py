"""Versioned model files: what is written, what is loaded, and what is refused."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier

from bastionpay.risk.model import store
from bastionpay.risk.model.errors import ModelLoadError
from bastionpay.risk.model.training import (
    TrainedModel,
    TrainingConfig,
    calibrated_probability,
    train,
)


def test_save_writes_a_version_with_its_manifest(trained: TrainedModel, tmp_path: Path) -> None:
    models = tmp_path / "models"
    directory = store.save(trained, models, activate=True)
    assert directory == models / trained.version
    assert sorted(p.name for p in directory.iterdir()) == ["manifest.json", "model.skops"]
    assert {p.name for p in models.iterdir()} == {"active", trained.version}  # no temp left
    manifest = json.loads((directory / "manifest.json").read_text())
    blob = (directory / "model.skops").read_bytes()
    assert manifest["model_file"]["sha256"] == hashlib.sha256(blob).hexdigest()
    assert manifest["version"] == trained.version
    assert manifest["format"] == "bastionpay-risk-model/1"
    assert [f["name"] for f in manifest["schema"]["features"]] == trained.schema.names
    assert {f["kind"] for f in manifest["schema"]["features"]} == {"numeric", "categorical"}
    assert manifest["metrics"]["test"]["average_precision"] > 0
    assert len(manifest["dataset"]["sha256"]) == 64
    assert manifest["created_at"].endswith("Z")
    assert {"python", "scikit-learn", "numpy", "skops"} <= manifest["libraries"].keys()
    assert (models / "active").read_text() == trained.version + "\n"
    assert store.active_version(models) == trained.version


def test_load_active_gives_back_the_same_model(trained: TrainedModel, tmp_path: Path) -> None:
    store.save(trained, tmp_path, activate=True)
    loaded = store.load_active(tmp_path)
    assert loaded.version == trained.version
    assert loaded.schema == trained.schema
    assert loaded.mapping == trained.mapping
    assert isinstance(loaded.trees, HistGradientBoostingClassifier)
    x = trained.schema.encode_rows([{"amount": 50, "country": "NG"}, {"amount": 5}])
    assert (loaded.trees.decision_function(x) == trained.trees.decision_function(x)).all()
    expected = trained.predict_probability(x)
    assert (calibrated_probability(loaded.trees, loaded.calibrator, x) == expected).all()


def test_activate_switches_versions_atomically(trained: TrainedModel, tmp_path: Path) -> None:
    first = store.save(trained, tmp_path, activate=True).name
    other = replace(trained, version="20000101T000000Z-00000000")
    other.manifest = {**trained.manifest, "version": other.version}
    second = store.save(other, tmp_path).name
    assert store.active_version(tmp_path) == first  # saving alone does not activate
    store.set_active(tmp_path, second)
    assert store.load_active(tmp_path).version == second
    assert store.list_versions(tmp_path) == sorted([first, second])
    with pytest.raises(ModelLoadError, match="no model"):
        store.set_active(tmp_path, "20000101T000000Z-ffffffff")
    with pytest.raises(ModelLoadError, match="already exists"):
        store.save(other, tmp_path)


def test_a_tampered_model_file_is_refused(trained: TrainedModel, tmp_path: Path) -> None:
    directory = store.save(trained, tmp_path, activate=True)
    path = directory / "model.skops"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one bit
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelLoadError, match="does not match the SHA-256"):
        store.load_active(tmp_path)


def test_untrusted_types_are_refused_even_with_a_matching_hash(
    trained: TrainedModel, tmp_path: Path
) -> None:
    """Someone who rewrites both files still cannot make the api run code: skops refuses."""
    directory = store.save(trained, tmp_path, activate=True)
    evil = sio.dumps(
        {"trees": trained.trees, "calibrator": trained.calibrator, "payload": Path("/etc/passwd")}
    )
    (directory / "model.skops").write_bytes(evil)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["model_file"]["sha256"] = hashlib.sha256(evil).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"cannot be loaded.*PosixPath"):
        store.load_active(tmp_path)


def test_a_partial_of_an_untrusted_function_is_refused(
    trained: TrainedModel, tmp_path: Path
) -> None:
    """`functools.partial` is trusted (sklearn needs it), but only around trusted functions."""
    directory = store.save(trained, tmp_path, activate=True)
    evil = sio.dumps({"trees": functools.partial(os.system, "true"), "calibrator": None})
    (directory / "model.skops").write_bytes(evil)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["model_file"]["sha256"] = hashlib.sha256(evil).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"Untrusted types.*posix\.system"):
        store.load_active(tmp_path)


def test_trusted_types_are_exactly_what_models_need(
    synthetic_csv: Path, trained: TrainedModel
) -> None:
    isotonic = train(
        synthetic_csv,
        "label",
        "time",
        config=TrainingConfig(
            max_iter=10,
            max_leaf_nodes=(7,),
            l2_regularization=(1.0,),
            positive_weights=("none",),
            calibration="isotonic",
            baseline=False,
        ),
    )
    needed = set()
    for model in (trained, isotonic):
        content = {"trees": model.trees, "calibrator": model.calibrator}
        needed |= set(sio.get_untrusted_types(data=sio.dumps(content)))
    assert needed == set(store.TRUSTED_TYPES)


def test_bad_pointers_and_manifests_are_refused(trained: TrainedModel, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no active model"):
        store.load_active(tmp_path)
    directory = store.save(trained, tmp_path, activate=True)
    (tmp_path / "active").write_text("../../etc\n")
    with pytest.raises(ModelLoadError, match="not a model version"):
        store.load_active(tmp_path)
    store.set_active(tmp_path, trained.version)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["libraries"]["scikit-learn"] = "0.24.2"
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"trained with scikit-learn 0\.24\.2"):
        store.load_active(tmp_path)
    assert store.load_active(tmp_path, allow_library_mismatch=True).version == trained.version
    (directory / "manifest.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        store.load_active(tmp_path)
