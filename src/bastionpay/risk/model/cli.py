"""`bastionpay risk train|evaluate|models|activate`: the model's commands (issue 7, item 3).

    bastionpay risk train --dataset FILE.csv --label COL [--time COL] [--out DIR] [--activate]
    bastionpay risk evaluate --dataset FILE.csv --label COL [--time COL] [--report DIR]

Both print ROC-AUC, AUPRC and precision/recall at the `elevated` (65) and `highest` (75) scores,
for the model and for the untuned baseline; progress goes to stderr. Models live under
`<data_dir>/risk/models/` unless `--out` says otherwise. scikit-learn, pandas and matplotlib are
imported only when one of these commands runs, so the rest of the CLI starts fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bastionpay.cli.common import data_dir_option, emit_json, settings_for

if TYPE_CHECKING:
    from bastionpay.risk.model.training import TrainingConfig

F = TypeVar("F", bound=Callable[..., Any])


@click.group("risk")
def risk_group() -> None:
    """Train, evaluate and choose the fraud model."""


def _dataset_options(func: F) -> F:
    options = [
        click.option(
            "--dataset",
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Labelled CSV: one row per payment, a header line.",
        ),
        click.option("--label", required=True, help="The label column: 1/true/yes = fraud."),
        click.option(
            "--time",
            "time_column",
            default=None,
            help="Time column (seconds or ISO 8601): time-ordered split. Without: stratified.",
        ),
        click.option(
            "--exclude",
            multiple=True,
            help="A column never to use as a feature (ids, leaky columns); repeatable.",
        ),
        click.option(
            "--time-features",
            is_flag=True,
            help="Add hour_of_day (and day_of_week) from --time; scoring must then pass the time.",
        ),
        click.option(
            "--calibration",
            type=click.Choice(["sigmoid", "isotonic"]),
            default="sigmoid",
            show_default=True,
        ),
        click.option(
            "--elevated-probability",
            type=click.FloatRange(0.0001, 0.9999, min_open=True, max_open=True),
            default=0.1,
            show_default=True,
            help="Calibrated probability that maps to score 65.",
        ),
        click.option(
            "--highest-probability",
            type=click.FloatRange(0.0001, 0.9999, min_open=True, max_open=True),
            default=0.5,
            show_default=True,
            help="Calibrated probability that maps to score 75.",
        ),
        click.option(
            "--max-iter",
            type=click.IntRange(1, 2000),
            default=250,
            show_default=True,
            help="Upper bound on boosting iterations searched.",
        ),
        click.option(
            "--min-positives",
            type=click.IntRange(2),
            default=20,
            show_default=True,
            help="Refuse data with fewer positives.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--threads",
            type=click.IntRange(1, 64),
            default=1,
            show_default=True,
            help="CPU threads while fitting.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@risk_group.command("train")
@_dataset_options
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Models directory (default <data-dir>/risk/models).",
)
@click.option("--activate", is_flag=True, help="Make the new model the active one.")
@data_dir_option
def train_command(out: Path | None, activate: bool, data_dir: Path | None, **options: Any) -> None:
    """Train a model on a labelled CSV and save it as a new version."""
    from bastionpay.risk.model import report, store, training  # noqa: PLC0415 - heavy, on use

    config, dataset, label, time_column = _config(options)
    models_dir = out if out is not None else _models_dir(data_dir)
    progress = _progress()
    trained = _run(
        lambda: training.train(dataset, label, time_column, config=config, progress=progress)
    )
    progress("writing the model and its report")
    path = _run(
        lambda: store.save(
            trained,
            models_dir,
            activate=activate,
            extra=lambda directory: report.write_report(trained, directory),
        )
    )
    _print_summary(report.report_data(trained))
    click.echo(f"model {trained.version} written to {path}" + (" (active)" if activate else ""))


@risk_group.command("evaluate")
@_dataset_options
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write report.json, report.md and pr_curve.png here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate_command(report_dir: Path | None, as_json: bool, **options: Any) -> None:
    """Train on the older part, report on the newer part; keep no model."""
    from bastionpay.risk.model import report, training  # noqa: PLC0415 - heavy, on use

    config, dataset, label, time_column = _config(options)
    progress = _progress()
    trained = _run(
        lambda: training.evaluate(dataset, label, time_column, config=config, progress=progress)
    )
    if report_dir is not None:
        progress(f"writing the report to {report_dir}")
        data = report.write_report(trained, report_dir)
    else:
        data = report.report_data(trained)
    if as_json:
        emit_json(data)
    else:
        _print_summary(data)


@risk_group.command("models")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@data_dir_option
def models_command(out: Path | None, data_dir: Path | None) -> None:
    """List model versions (newest last), their test AUPRC, and which is active."""
    from bastionpay.risk.model import store  # noqa: PLC0415 - heavy, on use
    from bastionpay.risk.model.errors import RiskModelError  # noqa: PLC0415 - ditto

    models_dir = out if out is not None else _models_dir(data_dir)
    active = _run(lambda: store.active_version(models_dir))
    versions = store.list_versions(models_dir)
    if not versions:
        click.echo(f"no models in {models_dir}")
        return
    for version in versions:
        try:
            manifest = store.read_manifest(models_dir, version)
        except RiskModelError as exc:
            click.echo(f"  {version}  unreadable: {exc}")
            continue
        test = manifest.get("metrics", {}).get("test") or {}
        ap = test.get("average_precision")
        marker = "*" if version == active else " "
        figure = f"AUPRC {ap:.4f}" if isinstance(ap, float) else "AUPRC n/a"
        click.echo(f"{marker} {version}  {figure}  {manifest.get('dataset', {}).get('name', '')}")


@risk_group.command("activate")
@click.argument("version")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@data_dir_option
def activate_command(version: str, out: Path | None, data_dir: Path | None) -> None:
    """Make VERSION the active model (after checking that it loads)."""
    from bastionpay.risk.model import store  # noqa: PLC0415 - heavy, on use

    models_dir = out if out is not None else _models_dir(data_dir)
    _run(lambda: store.load(models_dir, version))  # refuse to activate what cannot be loaded
    _run(lambda: store.set_active(models_dir, version))
    click.echo(f"active model: {version}")


def _config(options: dict[str, Any]) -> tuple[TrainingConfig, Path, str, str | None]:
    from bastionpay.risk.model.scoremap import ScoreMapping  # noqa: PLC0415 - heavy, on use
    from bastionpay.risk.model.training import TrainingConfig  # noqa: PLC0415 - ditto

    if options["elevated_probability"] >= options["highest_probability"]:
        raise click.UsageError("--elevated-probability must be below --highest-probability")
    config = TrainingConfig(
        calibration=options["calibration"],
        seed=options["seed"],
        max_iter=options["max_iter"],
        min_positives=options["min_positives"],
        time_features=options["time_features"],
        exclude=tuple(options["exclude"]),
        mapping=ScoreMapping(options["elevated_probability"], options["highest_probability"]),
        threads=options["threads"],
    )
    if options["time_features"] and options["time_column"] is None:
        raise click.UsageError("--time-features needs --time")
    return config, options["dataset"], options["label"], options["time_column"]


T = TypeVar("T")


def _run(step: Callable[[], T]) -> T:
    """Run a library step; its errors become one clear message and exit status 1."""
    from bastionpay.risk.model.errors import RiskModelError  # noqa: PLC0415 - light, but lazy too

    try:
        return step()
    except RiskModelError as exc:
        raise click.ClickException(str(exc)) from None


def _models_dir(data_dir: Path | None) -> Path:
    return settings_for(data_dir).resolved_data_dir() / "risk" / "models"


def _progress() -> Callable[[str], None]:
    started = time.monotonic()

    def say(message: str) -> None:
        click.echo(f"[{time.monotonic() - started:7.1f}s] {message}", err=True)

    return say


def _print_summary(data: dict[str, Any]) -> None:
    from bastionpay.risk.model.report import summary_lines  # noqa: PLC0415 - heavy, on use

    split = data["split"]
    click.echo(
        f"test part: {split['test']['rows']} rows, {split['test']['positives']} positives "
        f"({split['kind']} split)"
    )
    for line in summary_lines(data):
        click.echo(line)
