"""Versioned model files, and which one is active.

Layout under a models directory (by default `<data_dir>/risk/models/`):

    active                        one line: the active version (replaced atomically)
    20261128T170500Z-1a2b3c4d/    one directory per version, never modified once written
        model.skops               {"trees": the boosted trees, "calibrator": their calibrator,
                                   and "linear" / "neural": the blended parts' numpy arrays, if
                                   any}
        manifest.json             everything else: features, score mapping, parameters, metrics,
                                  training-data SHA-256, split, library versions, and the
                                  SHA-256 of model.skops
        report.json, report.md, pr_curve.png   the evaluation (written by the report module)

Why skops and not pickle: unpickling runs whatever code the file names, so a model file would be
a way to execute code in the api process. `skops.io` rebuilds objects from a declarative format
and refuses any type outside sklearn/numpy's safe defaults plus the explicit list below
(`TRUSTED_TYPES`), which a test keeps exact. On top of that the manifest records the model file's
SHA-256, checked (constant-time) before the bytes are parsed, and the very bytes that were checked
are the ones parsed (no time-of-check/time-of-use window): a model altered or corrupted after
training is refused even if it only contains trusted types. The manifest sits next to the model,
so the hash proves integrity against accident and casual tampering, not against someone who can
rewrite both files; the trusted-types list is what stands between such a person and code execution.

A version directory is written under a temporary name and renamed into place, and `active` is
replaced with `os.replace`, so a reader sees the old model or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import skops.io as sio
from sklearn import __version__ as sklearn_version

from bastionpay.risk.model.errors import ModelLoadError
from bastionpay.risk.model.linear import LinearPart
from bastionpay.risk.model.neural import NeuralPart
from bastionpay.risk.model.schema import Schema
from bastionpay.risk.model.scoremap import ScoreMapping
from bastionpay.risk.model.training import MANIFEST_FORMAT, TrainedModel

MODEL_FILE: Final = "model.skops"
MANIFEST_FILE: Final = "manifest.json"
ACTIVE_FILE: Final = "active"
VERSION_PATTERN: Final = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
# Bounded reads: a manifest is a few kB, a model a few MB.
MAX_MANIFEST_BYTES: Final = 4 * 1024**2
MAX_MODEL_BYTES: Final = 512 * 1024**2
# The blend's optional parts, each stored as a dict of numpy arrays (no new trusted type). A model
# written before a part existed simply lacks its key and loads as it always did.
OPTIONAL_PARTS: Final = frozenset({"linear", "neural"})

# Types a model file may contain beyond skops' defaults (sklearn's public estimators such as
# HistGradientBoostingClassifier, IsotonicRegression, ColumnTransformer, numpy arrays, builtin
# containers). Exactly what models need, which a test keeps exact; nothing that names arbitrary
# code (`functools.partial` is loaded by skops only around a function it also checks against this
# list, and the only function here is check_array).
TRUSTED_TYPES: Final = (
    # The boosted trees' internal predictor.
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    # The sigmoid (Platt) calibrator.
    "sklearn.calibration._SigmoidCalibration",
    # With categorical features the trees keep a ColumnTransformer whose numeric branch is
    # FunctionTransformer(partial(check_array, ...)).
    "functools.partial",
    "sklearn.utils.validation.check_array",
)


@dataclass(frozen=True)
class LoadedModel:
    trees: Any  # the fitted HistGradientBoostingClassifier
    calibrator: Any  # its calibrator (_SigmoidCalibration or IsotonicRegression)
    schema: Schema
    mapping: ScoreMapping
    version: str
    manifest: dict[str, Any]
    path: Path
    linear: LinearPart | None = None  # blended with the trees when present (linear.py)
    neural: NeuralPart | None = None  # ditto (neural.py)


def default_models_dir(data_dir: Path) -> Path:
    return data_dir / "risk" / "models"


def save(
    model: TrainedModel,
    models_dir: Path,
    *,
    activate: bool = False,
    extra: Callable[[Path], object] | None = None,
) -> Path:
    """Write `model` as a new version directory; returns it. Optionally make it the active one.

    `extra(directory)` may add files (the report) before the directory is published.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / model.version
    if final.exists():
        raise ModelLoadError(f"model version {model.version} already exists in {models_dir}")
    staging = models_dir / f".tmp-{model.version}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        content: dict[str, Any] = {"trees": model.trees, "calibrator": model.calibrator}
        if model.linear is not None:
            content["linear"] = model.linear.to_arrays()  # numpy arrays: no new trusted type
        if model.neural is not None:
            content["neural"] = model.neural.to_arrays()  # ditto
        blob = sio.dumps(content)
        (staging / MODEL_FILE).write_bytes(blob)
        manifest = dict(model.manifest)
        manifest["model_file"] = {
            "name": MODEL_FILE,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "bytes": len(blob),
            "serialisation": "skops.io",
        }
        _write_json(staging / MANIFEST_FILE, manifest)
        if extra is not None:
            extra(staging)
        _fsync_tree(staging)
        staging.rename(final)
        _fsync_dir(models_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    model.manifest = manifest
    if activate:
        set_active(models_dir, model.version)
    return final


def load(models_dir: Path, version: str, *, allow_library_mismatch: bool = False) -> LoadedModel:
    """Load one version, verifying its file hash and refusing untrusted types."""
    _check_version(version)
    directory = models_dir / version
    manifest = _read_manifest(directory)
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != version:
        raise ModelLoadError(f"{directory} does not hold a {MANIFEST_FORMAT} model of {version}")
    trained_with = manifest.get("libraries", {}).get("scikit-learn")
    if not allow_library_mismatch and _minor(trained_with) != _minor(sklearn_version):
        # A model's internals are those of the scikit-learn that fitted it; another minor version
        # may load it and still predict differently. Retrain rather than guess.
        raise ModelLoadError(
            f"model {version} was trained with scikit-learn {trained_with}, this is "
            f"{sklearn_version}: retrain it (or pass allow_library_mismatch)"
        )
    blob = _read_bounded(directory / MODEL_FILE, MAX_MODEL_BYTES)
    expected = str(manifest.get("model_file", {}).get("sha256", ""))
    actual = hashlib.sha256(blob).hexdigest()
    if not hmac.compare_digest(expected.encode(), actual.encode()):
        raise ModelLoadError(
            f"model {version}: {MODEL_FILE} does not match the SHA-256 in its manifest "
            "(altered or corrupted); refusing to load it"
        )
    # skops reports a bad file through zipfile, json, its own untrusted-type error and plain
    # TypeError/ValueError/KeyError; any of them means "not loadable", and the hash already passed.
    try:
        content = sio.loads(blob, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # noqa: BLE001 - see above
        raise ModelLoadError(f"model {version} cannot be loaded: {exc}") from None
    keys = set(content) if isinstance(content, dict) else set()
    if keys - OPTIONAL_PARTS != {"trees", "calibrator"}:
        unknown = sorted(str(k) for k in keys - OPTIONAL_PARTS - {"trees", "calibrator"})
        newer = f" (unknown parts {unknown}: written by a newer version?)" if unknown else ""
        raise ModelLoadError(
            f"model {version}: {MODEL_FILE} does not hold trees and a calibrator{newer}"
        )
    trees, calibrator = content["trees"], content["calibrator"]
    if list(getattr(trees, "classes_", [])) != [0, 1] or not hasattr(calibrator, "predict"):
        raise ModelLoadError(f"model {version}: not a binary classifier with a calibrator")
    try:
        linear = LinearPart.from_arrays(content["linear"]) if "linear" in content else None
        neural = NeuralPart.from_arrays(content["neural"]) if "neural" in content else None
    except ValueError as exc:
        raise ModelLoadError(f"model {version}: {exc}") from None
    try:
        schema = Schema.from_json(manifest["schema"])
        mapping = ScoreMapping.from_json(manifest["score_mapping"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"model {version}: malformed manifest ({exc})") from None
    for name, part in (("linear", linear), ("neural", neural)):
        if part is not None and part.design.max_column >= len(schema.features):
            raise ModelLoadError(f"model {version}: the {name} part reads columns the schema lacks")
    return LoadedModel(
        trees, calibrator, schema, mapping, version, manifest, directory, linear, neural
    )


def set_active(models_dir: Path, version: str) -> None:
    """Point `active` at `version` (which must exist), atomically."""
    _check_version(version)
    if not (models_dir / version / MANIFEST_FILE).is_file():
        raise ModelLoadError(f"no model {version} in {models_dir}")
    temporary = models_dir / f".{ACTIVE_FILE}.{secrets.token_hex(4)}"
    with temporary.open("w", encoding="utf-8") as out:
        out.write(version + "\n")
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(models_dir / ACTIVE_FILE)  # atomic rename (POSIX)
    _fsync_dir(models_dir)


def active_version(models_dir: Path) -> str | None:
    pointer = models_dir / ACTIVE_FILE
    if not pointer.is_file():
        return None
    version = _read_bounded(pointer, 256).decode("utf-8", errors="replace").strip()
    _check_version(version)
    return version


def load_active(models_dir: Path, *, allow_library_mismatch: bool = False) -> LoadedModel:
    version = active_version(models_dir)
    if version is None:
        raise ModelLoadError(f"no active model in {models_dir} (train one with --activate)")
    return load(models_dir, version, allow_library_mismatch=allow_library_mismatch)


def list_versions(models_dir: Path) -> list[str]:
    if not models_dir.is_dir():
        return []
    return sorted(
        p.name for p in models_dir.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name)
    )


def read_manifest(models_dir: Path, version: str) -> dict[str, Any]:
    _check_version(version)
    return _read_manifest(models_dir / version)


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read_bounded(directory / MANIFEST_FILE, MAX_MANIFEST_BYTES))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{directory / MANIFEST_FILE} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{directory / MANIFEST_FILE} is not a JSON object")
    return data


def _check_version(version: str) -> None:
    # The version becomes a path component: only the generated shape is accepted, so neither the
    # `active` file nor a command-line argument can point outside the models directory.
    if not VERSION_PATTERN.match(version):
        raise ModelLoadError(f"not a model version: {version[:80]!r}")


def _read_bounded(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ModelLoadError(f"{path} is larger than {limit} bytes")
    return data


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _minor(version: object) -> str:
    return ".".join(str(version).split(".")[:2])


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
