"""The `bastionpay` command."""

from __future__ import annotations

import os

import click

from bastionpay import __version__
from bastionpay.cli.admin import db_group, keys_group, ledger_group, merchants_group
from bastionpay.cli.audit import audit_group
from bastionpay.cli.disputes import disputes_group
from bastionpay.cli.oauth import oauth_group
from bastionpay.cli.processes import api, up, worker
from bastionpay.cli.radar import radar_group
from bastionpay.cli.risk_admin import merchants_risk, reviews_group
from bastionpay.cli.users import users_group
from bastionpay.risk.model.cli import risk_group
from bastionpay.vault.cli import vault_group


@click.group()
@click.version_option(__version__, prog_name="bastionpay")
def cli() -> None:
    """BastionPay: a self-hosted, security-first payment platform."""


@click.command(
    "acquirer",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def acquirer(args: tuple[str, ...]) -> None:
    """Run the simulated ISO 8583 acquirer host (`bastionpay acquirer --help`)."""
    from bastionpay.acquirer.cli import main as acquirer_main  # noqa: PLC0415 - only when run

    raise SystemExit(acquirer_main(list(args)))


for command in (
    up,
    api,
    worker,
    acquirer,
    merchants_group,
    keys_group,
    ledger_group,
    db_group,
    audit_group,
    oauth_group,
    reviews_group,
    disputes_group,
    radar_group,
    risk_group,
    vault_group,
    users_group,
):
    cli.add_command(command)
merchants_group.add_command(merchants_risk)


def main() -> None:
    # Everything the platform writes (databases, WAL files, keys, run.json) is owner-only.
    os.umask(0o077)
    cli()
