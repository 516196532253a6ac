"""`bastionpay risk train|evaluate|models|activate`: the model's commands (issue 7, item 3).

    bastionpay risk train --dataset FILE.csv --label COL [--time COL] [--out DIR] [--activate]
    bastionpay risk train --from-platform [--merchant acct_…] [--mode live|test]
                          [--assume-legit-after DAYS] [--data-dir DIR]
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
            default=None,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Labelled CSV: one row per payment, a header line.",
        ),
        click.option("--label", default=None, help="The label column: 1/true/yes = fraud."),
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
            "--linear-blend/--no-linear-blend",
            default=True,
            show_default=True,
            help="Blend the trees with a regularised logistic regression (mean log-odds).",
        ),
        click.option(
            "--neural-blend/--no-neural-blend",
            default=True,
            show_default=True,
            help="Blend in a one-hidden-layer neural network too (mean log-odds).",
        ),
        click.option(
            "--trees-only",
            is_flag=True,
            help="The boosted trees alone: no linear, no neural part.",
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
@click.option(
    "--from-platform",
    is_flag=True,
    help="Train on the platform's own assessments and labels instead of --dataset.",
)
@click.option("--merchant", "merchant_id", default=None, help="--from-platform: one merchant only.")
@click.option(
    "--mode",
    type=click.Choice(["live", "test"]),
    default="live",
    show_default=True,
    help="--from-platform: live or test-mode payments.",
)
@click.option(
    "--assume-legit-after",
    "assume_legit_after",
    type=click.IntRange(1, 3650),
    default=None,
    help="--from-platform: count unlabelled payments authorized at least DAYS ago as legit.",
)
@data_dir_option
def train_command(
    out: Path | None,
    activate: bool,
    from_platform: bool,
    merchant_id: str | None,
    mode: str,
    assume_legit_after: int | None,
    data_dir: Path | None,
    **options: Any,
) -> None:
    """Train a model on a labelled CSV (or the platform's labels) and save it as a new version."""
    from bastionpay.risk.model import report, store, training  # noqa: PLC0415 - heavy, on use

    models_dir = out if out is not None else _models_dir(data_dir)
    if from_platform:
        _train_from_platform(
            models_dir,
            data_dir,
            options,
            merchant_id=merchant_id,
            livemode=mode == "live",
            assume_legit_after=assume_legit_after,
            activate=activate,
        )
        return
    if merchant_id is not None or assume_legit_after is not None:
        raise click.UsageError("--merchant and --assume-legit-after go with --from-platform")
    config, dataset, label, time_column = _config(options)
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


def _train_from_platform(
    models_dir: Path,
    data_dir: Path | None,
    options: dict[str, Any],
    *,
    merchant_id: str | None,
    livemode: bool,
    assume_legit_after: int | None,
    activate: bool,
) -> None:
    """`risk train --from-platform`: see `bastionpay.risk.retrain` for the data set's rules."""
    import io  # noqa: PLC0415 - with the heavy imports below

    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 - heavy, on use

    from bastionpay.db.engine import Database  # noqa: PLC0415
    from bastionpay.db.uow import unit_of_work  # noqa: PLC0415
    from bastionpay.kernel.clock import SystemClock  # noqa: PLC0415
    from bastionpay.risk import retrain  # noqa: PLC0415
    from bastionpay.risk.model import report, store, training  # noqa: PLC0415
    from bastionpay.risk.model.dataset import load_table  # noqa: PLC0415

    if options["dataset"] is not None or options["label"] is not None:
        raise click.UsageError("--from-platform reads the database: no --dataset or --label")
    if options["time_column"] is not None or options["time_features"] or options["exclude"]:
        raise click.UsageError(
            "--from-platform uses the scorer's features and the assessment time: "
            "no --time, --time-features or --exclude"
        )
    config = _training_config(options)
    progress = _progress()
    settings = settings_for(data_dir)
    now = SystemClock().now()
    database = Database(settings.resolved_database_url())
    try:
        progress("reading assessments and labels")
        with unit_of_work(database, write=False) as session:
            data = retrain.platform_data(
                session,
                merchant_id=merchant_id,
                livemode=livemode,
                now=now,
                assume_legit_after_days=assume_legit_after,
            )
    except SQLAlchemyError as exc:
        # No traceback for an operator: which database, and the driver's one-line reason.
        why = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise click.ClickException(f"cannot read the api database: {why}") from None
    finally:
        database.dispose()
    click.echo(
        f"{data.source_name}: {data.rows} payments, {data.frauds} fraud, {data.legit} legit "
        f"({data.legit_labelled} labelled, {data.legit_assumed} assumed)"
    )
    refusal = retrain.training_refusal(data)
    if refusal is not None:
        raise click.ClickException(refusal)
    table = _run(
        lambda: load_table(
            io.BytesIO(data.csv),
            label=retrain.LABEL,
            time_column=retrain.TIME,
            source_name=data.source_name,
        )
    )
    trained = _run(lambda: training.train_table(table, config=config, progress=progress))
    comparison = _run(lambda: retrain.compare_with_active(trained, table, config, models_dir))
    reason = retrain.activation_refusal(data)
    if reason is None and merchant_id is not None and not activate:
        # The platform loads one model for every merchant: one merchant's model replaces it
        # only when the operator says so.
        reason = "not activated: a --merchant model replaces the platform's only with --activate"
    trained.manifest["platform"] = {
        "merchant": merchant_id,
        "livemode": livemode,
        "frauds": data.frauds,
        "legit_labelled": data.legit_labelled,
        "legit_assumed": data.legit_assumed,
        "assume_legit_after_days": assume_legit_after,
        "min_labels_to_activate": retrain.MIN_LABELS_TO_ACTIVATE,
        "activation": reason or "activated",
        "compared_with_active": comparison,
    }
    progress("writing the model and its report")
    if reason is None:
        _audit_activation(data_dir, trained.version, how="train --from-platform")
    path = _run(
        lambda: store.save(
            trained,
            models_dir,
            activate=reason is None,
            extra=lambda directory: report.write_report(trained, directory),
        )
    )
    _print_summary(report.report_data(trained))
    for line in retrain.comparison_lines(comparison):
        click.echo(line)
    click.echo(f"model {trained.version} written to {path}")
    click.echo(
        reason
        if reason is not None
        else f"active model: {trained.version} (the api loads it at its next start)"
    )


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
    if out is None:
        _audit_activation(data_dir, version, how="activate")
    _run(lambda: store.set_active(models_dir, version))
    click.echo(f"active model: {version}")


def _config(options: dict[str, Any]) -> tuple[TrainingConfig, Path, str, str | None]:
    if options["dataset"] is None or options["label"] is None:
        raise click.UsageError("give --dataset FILE.csv and --label COLUMN (or --from-platform)")
    if options["time_features"] and options["time_column"] is None:
        raise click.UsageError("--time-features needs --time")
    config = _training_config(options)
    return config, options["dataset"], options["label"], options["time_column"]


def _training_config(options: dict[str, Any]) -> TrainingConfig:
    from bastionpay.risk.model.scoremap import ScoreMapping  # noqa: PLC0415 - heavy, on use
    from bastionpay.risk.model.training import TrainingConfig  # noqa: PLC0415 - ditto

    if options["elevated_probability"] >= options["highest_probability"]:
        raise click.UsageError("--elevated-probability must be below --highest-probability")
    return TrainingConfig(
        calibration=options["calibration"],
        seed=options["seed"],
        max_iter=options["max_iter"],
        min_positives=options["min_positives"],
        time_features=options["time_features"],
        exclude=tuple(options["exclude"]),
        mapping=ScoreMapping(options["elevated_probability"], options["highest_probability"]),
        threads=options["threads"],
        linear_blend=options["linear_blend"] and not options["trees_only"],
        neural_blend=options["neural_blend"] and not options["trees_only"],
    )


T = TypeVar("T")


def _run(step: Callable[[], T]) -> T:
    """Run a library step; its errors become one clear message and exit status 1."""
    from bastionpay.risk.model.errors import RiskModelError  # noqa: PLC0415 - light, but lazy too

    try:
        return step()
    except RiskModelError as exc:
        raise click.ClickException(str(exc)) from None


def _audit_activation(data_dir: Path | None, version: str, *, how: str) -> None:
    """The platform's scoring model changes: recorded in the api's audit log before it happens
    (L1; no record, no change, P3). The operator is the OS user running the command."""
    import getpass  # noqa: PLC0415 - on use, like the heavy imports

    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from bastionpay.audit import events as audit  # noqa: PLC0415
    from bastionpay.db import migrate  # noqa: PLC0415
    from bastionpay.db.engine import Database  # noqa: PLC0415
    from bastionpay.db.uow import unit_of_work  # noqa: PLC0415

    try:
        operator = getpass.getuser()
    except (KeyError, OSError):
        operator = "unknown"
    url = settings_for(data_dir).resolved_database_url()
    database = Database(url)
    try:
        # A data dir whose api database does not exist yet gets it (as every command's first run
        # does): the record must be written, or the model is not activated.
        migrate.upgrade(url)
        with unit_of_work(database, write=True) as session:
            audit.record(
                session,
                audit.AuditEvent(
                    actor_type="system",
                    actor_id="cli",
                    action="risk.model.activate",
                    outcome="success",
                    target_type="risk_model",
                    target_id=version[:64],
                    details={"how": how, "operator": f"os:{operator}"[:64]},
                ),
            )
    except SQLAlchemyError as exc:
        why = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise click.ClickException(
            f"cannot record the activation in the audit log: {why}"
        ) from None
    finally:
        database.dispose()


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
