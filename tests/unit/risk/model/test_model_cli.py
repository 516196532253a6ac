"""`bastionpay risk train|evaluate|models|activate` through click's CliRunner, errors included."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bastionpay.risk.model import store
from bastionpay.risk.model.cli import risk_group

FAST = ["--max-iter", "30", "--threads", "1"]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(risk_group, [str(a) for a in args], catch_exceptions=False)


def test_train_saves_and_activates(synthetic_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    result = run(
        "train",
        "--dataset",
        synthetic_csv,
        "--label",
        "label",
        "--time",
        "time",
        "--out",
        out,
        "--activate",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    assert "ROC-AUC" in result.stdout
    assert "AUPRC" in result.stdout
    assert "P@elevated" in result.stdout
    assert "R@highest" in result.stdout
    assert "untuned baseline" in result.stdout
    assert "(active)" in result.stdout
    assert "[8/8]" in result.stderr  # progress, on stderr
    version = store.active_version(out)
    assert version is not None
    assert sorted(p.name for p in (out / version).iterdir()) == [
        "manifest.json",
        "model.skops",
        "pr_curve.png",
        "report.json",
        "report.md",
    ]
    assert store.load_active(out).version == version

    listed = run("models", "--out", out)
    assert listed.exit_code == 0
    assert listed.stdout.startswith(f"* {version}  AUPRC 0.")


def test_train_uses_the_data_dir_by_default(synthetic_csv: Path, tmp_path: Path) -> None:
    result = run(
        "train",
        "--dataset",
        synthetic_csv,
        "--label",
        "label",
        "--time",
        "time",
        "--data-dir",
        tmp_path,
        *FAST,
    )
    assert result.exit_code == 0, result.output
    versions = store.list_versions(tmp_path / "risk" / "models")
    assert len(versions) == 1
    assert store.active_version(tmp_path / "risk" / "models") is None  # no --activate

    activated = run("activate", versions[0], "--data-dir", tmp_path)
    assert activated.exit_code == 0
    assert store.active_version(tmp_path / "risk" / "models") == versions[0]
    refused = run("activate", "20000101T000000Z-00000000", "--data-dir", tmp_path)
    assert refused.exit_code == 1
    assert "cannot read" in refused.stderr


def test_evaluate_writes_a_report(synthetic_csv: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = run(
        "evaluate",
        "--dataset",
        synthetic_csv,
        "--label",
        "label",
        "--time",
        "time",
        "--report",
        report,
        *FAST,
    )
    assert result.exit_code == 0, result.output
    assert "AUPRC ratio model/baseline" in result.stdout
    assert sorted(p.name for p in report.iterdir()) == ["pr_curve.png", "report.json", "report.md"]
    assert (report / "pr_curve.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    data = json.loads((report / "report.json").read_text())
    assert data["split"]["kind"] == "time"
    assert set(data["metrics"]) == {"model", "baseline"}
    assert "## Test part" in (report / "report.md").read_text()
    assert not (tmp_path / "risk").exists()  # evaluate keeps no model

    as_json = run("evaluate", "--dataset", synthetic_csv, "--label", "label", "--json", *FAST)
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["split"]["kind"] == "stratified"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--label", "fraud"], "no label column 'fraud'; the columns are: time, amount"),
        (["--label", "country"], "the label 'country' must be binary"),
        (["--label", "label", "--time", "when"], "no time column 'when'"),
        (["--label", "label", "--time", "country"], "3000 rows have no readable time in 'country'"),
        (["--label", "label", "--min-positives", "100000"], "too few positives"),
    ],
)
def test_dataset_errors(
    synthetic_csv: Path, tmp_path: Path, arguments: list[str], message: str
) -> None:
    result = run("train", "--dataset", synthetic_csv, "--out", tmp_path, *arguments, *FAST)
    assert result.exit_code == 1
    assert f"Error: {message}" in result.stderr
    assert "Traceback" not in result.output
    assert store.list_versions(tmp_path) == []


def test_too_few_positives_in_a_part(make_csv: Callable[..., Path], tmp_path: Path) -> None:
    sparse = make_csv("sparse.csv", n=600, fraud_scale=0.05)  # a handful of frauds in all
    result = run(
        "evaluate",
        "--dataset",
        sparse,
        "--label",
        "label",
        "--time",
        "time",
        "--min-positives",
        "2",
        *FAST,
    )
    assert result.exit_code == 1
    assert "Error: too few positives" in result.stderr


def test_unreadable_csv(tmp_path: Path) -> None:
    missing = run("evaluate", "--dataset", tmp_path / "nope.csv", "--label", "y")
    assert missing.exit_code == 1
    assert "Error: cannot read" in missing.stderr
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = run("evaluate", "--dataset", empty, "--label", "y")
    assert result.exit_code == 1
    assert "Error: cannot read the CSV" in result.stderr
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b'a,b\n1,"2\n3,4\n')  # an unterminated quote
    result = run("evaluate", "--dataset", garbage, "--label", "a")
    assert result.exit_code == 1
    assert "Error: cannot read the CSV" in result.stderr


def test_one_class_label(tmp_path: Path) -> None:
    path = tmp_path / "all_legit.csv"
    path.write_text("amount,label\n" + "".join(f"{i},0\n" for i in range(50)))
    result = run("evaluate", "--dataset", path, "--label", "label")
    assert result.exit_code == 1
    assert "has one value only" in result.stderr


def test_option_errors(synthetic_csv: Path) -> None:
    result = run(
        "evaluate",
        "--dataset",
        synthetic_csv,
        "--label",
        "label",
        "--elevated-probability",
        "0.6",
        "--highest-probability",
        "0.5",
    )
    assert result.exit_code == 2
    assert "--elevated-probability must be below --highest-probability" in result.stderr
    result = run("evaluate", "--dataset", synthetic_csv, "--label", "label", "--time-features")
    assert result.exit_code == 2
    assert "--time-features needs --time" in result.stderr
