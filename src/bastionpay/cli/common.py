"""Options and helpers shared by the command groups."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.orm import Session

from bastionpay import bootstrap
from bastionpay.config import Settings, load_settings
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.errors import BastionPayError
from bastionpay.observability import logging as observability_logging
from bastionpay.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])


def data_dir_option(func: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="BASTIONPAY_DATA_DIR",
        default=None,
        help="Data directory (default ./var, or $BASTIONPAY_DATA_DIR).",
    )(func)


def settings_for(data_dir: Path | None, **overrides: object) -> Settings:
    return load_settings(data_dir=data_dir, **overrides)


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr, redacted (SECURITY-REQUIREMENTS L3); alembic's chatter kept down."""
    observability_logging.configure_logging(level=level, stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations run on every start


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


@contextmanager
def unit_of_work_for(data_dir: Path | None, *, write: bool) -> Iterator[tuple[Runtime, Session]]:
    """The data dir's runtime and one unit of work; library errors become a clean exit 1 and the
    engine is always disposed."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        with unit_of_work(runtime.db, write=write) as session:
            yield runtime, session
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        runtime.db.dispose()
