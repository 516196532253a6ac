"""The `bastionpay` command."""

from __future__ import annotations

import os

import click

from bastionpay import __version__
from bastionpay.cli.admin import db_group, keys_group, ledger_group, merchants_group
from bastionpay.cli.audit import audit_group
from bastionpay.cli.processes import api, up, worker


@click.group()
@click.version_option(__version__, prog_name="bastionpay")
def cli() -> None:
    """BastionPay: a self-hosted, security-first payment platform."""


for command in (up, api, worker, merchants_group, keys_group, ledger_group, db_group, audit_group):
    cli.add_command(command)


def main() -> None:
    # Everything the platform writes (databases, WAL files, keys, run.json) is owner-only.
    os.umask(0o077)
    cli()
