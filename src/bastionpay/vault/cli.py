"""`bastionpay vault`: run the vault process, and manage its keys (C4).

    bastionpay vault [--data-dir DIR] [--host H] [--internal-port 8444] [--public-port 8445]
                     [--ready-file PATH] [--acquirer-host H] [--acquirer-port P]
    bastionpay vault keys status [--merchant acct_…]
    bastionpay vault keys rotate --kek [--no-complete]            new KEK version, rewrap all DEKs
    bastionpay vault keys rotate --dek --merchant acct_… [--no-complete]   new DEK, re-encrypt
    bastionpay vault keys retire --kek-version N                  destroy an old KEK version
    bastionpay vault keys retire --merchant acct_…                destroy drained old DEK versions

`vault_group` is a `click.Group` for the main CLI to mount (`cli.add_command(vault_group)`); it
imports nothing from the api zone. The KEK backend is `file` (default, `<data_dir>/vault/keys/
kek.json`) or `pkcs11` (`BASTIONPAY_VAULT_KEK_BACKEND=pkcs11` and `BASTIONPAY_PKCS11_MODULE`,
`_TOKEN_LABEL`, `_PIN`). Output is JSON. Key operations are audited in the vault's log with the
operator's OS user name. This is the break-glass path: operators normally go through the api
(`/v1/vault/keys…`, `vault:keys` permission and step-up MFA, I3), which calls the internal listener
naming them; on the vault host, access to the host and its key files is the control.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from bastionpay.crypto.kek import KekError
from bastionpay.observability.logging import configure_logging
from bastionpay.vault import keys
from bastionpay.vault.keyring import KeyringError
from bastionpay.vault.pki import vault_tls
from bastionpay.vault.runtime import VaultRuntime, build_vault_runtime
from bastionpay.vault.settings import VaultSettings, load_vault_settings
from bastionpay.vault.tokens import Actor

DATA_DIR_ENV = ["BASTIONPAY_VAULT_DATA_DIR", "BASTIONPAY_DATA_DIR"]


def operator() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor("operator", f"os:{user}"[:64])


def _emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _settings(ctx: click.Context, data_dir: Path | None) -> VaultSettings:
    inherited = ctx.obj.get("data_dir") if isinstance(ctx.obj, dict) else None
    return load_vault_settings(data_dir=data_dir or inherited)


def _runtime(settings: VaultSettings) -> VaultRuntime:
    return build_vault_runtime(settings)


def run_vault(settings: VaultSettings, *, ready_file: Path | None = None) -> None:
    """Initialise (data dir, keys, certificates, migrations) and serve until SIGINT/SIGTERM."""
    from bastionpay.vault.server import Listeners, VaultServer, bind  # noqa: PLC0415 - web stack

    try:
        tls = vault_tls(settings)
    except ValueError as exc:  # a half-configured PKI: refuse to start, say what is missing
        raise click.ClickException(str(exc)) from None
    runtime = build_vault_runtime(settings)
    listeners = Listeners(
        internal=bind(settings.internal_host or settings.host, settings.internal_port),
        public=bind(settings.public_host or settings.host, settings.public_port),
    )
    server = VaultServer(runtime, tls, listeners)
    try:
        asyncio.run(server.serve(ready_file=ready_file, handle_signals=True))
    finally:
        runtime.close()


@click.group("vault", invoke_without_command=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=DATA_DIR_ENV,
    default=None,
    help="Data directory (default ./var, or $BASTIONPAY_VAULT_DATA_DIR / $BASTIONPAY_DATA_DIR).",
)
@click.option("--host", default=None, help="Listen address (default 127.0.0.1).")
@click.option("--internal-port", type=int, default=None, help="mTLS API port (8444; 0 = any).")
@click.option("--public-port", type=int, default=None, help="hosted fields port (8445; 0 = any).")
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='Write {"internal_port", "public_port", …} here once both listeners are up.',
)
@click.option("--acquirer-host", default=None, help="ISO 8583 acquirer host (127.0.0.1).")
@click.option("--acquirer-port", type=int, default=None, help="ISO 8583 acquirer port (8583).")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning"]))
@click.pass_context
def vault_group(
    ctx: click.Context,
    data_dir: Path | None,
    host: str | None,
    internal_port: int | None,
    public_port: int | None,
    ready_file: Path | None,
    acquirer_host: str | None,
    acquirer_port: int | None,
    log_level: str,
) -> None:
    """Run the card vault (the CDE): mTLS API for the api, hosted fields for browsers."""
    ctx.obj = {"data_dir": data_dir}
    if ctx.invoked_subcommand is not None:
        return
    configure_logging(level=getattr(logging, log_level.upper()), stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = load_vault_settings(
        data_dir=data_dir,
        host=host,
        internal_port=internal_port,
        public_port=public_port,
        acquirer_host=acquirer_host,
        acquirer_port=acquirer_port,
    )
    run_vault(settings, ready_file=ready_file)


@vault_group.group("keys")
def keys_group() -> None:
    """Key management: status, rotation and retirement of the KEK and data keys (C4)."""


_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=DATA_DIR_ENV,
    default=None,
    help="Data directory (as for `bastionpay vault`).",
)


def _run(ctx: click.Context, data_dir: Path | None, work: Any) -> None:
    # Diagnostics go to stderr (redacted); stdout carries only the JSON answer.
    configure_logging(level=logging.WARNING, stream=sys.stderr)
    runtime = _runtime(_settings(ctx, data_dir))
    try:
        _emit(work(runtime))
    except (KeyringError, KekError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        runtime.close()


@keys_group.command("status")
@_data_dir
@click.option("--merchant", default=None, help="Only this merchant's data keys (acct_…).")
@click.pass_context
def keys_status(ctx: click.Context, data_dir: Path | None, merchant: str | None) -> None:
    """Versions, ages and how many data keys and records each version protects."""
    _run(ctx, data_dir, lambda runtime: keys.status(runtime, merchant, actor=operator()))


@keys_group.command("rotate")
@_data_dir
@click.option("--kek", "kek", is_flag=True, help="Rotate the key-encryption key.")
@click.option("--dek", "dek", is_flag=True, help="Rotate a merchant's data key.")
@click.option("--merchant", default=None, help="The merchant (with --dek).")
@click.option(
    "--complete/--no-complete",
    default=True,
    help="Rewrap (KEK) or re-encrypt (DEK) everything under the new version now (default).",
)
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500)
@click.pass_context
def keys_rotate(
    ctx: click.Context,
    data_dir: Path | None,
    kek: bool,
    dek: bool,
    merchant: str | None,
    complete: bool,
    batch_size: int,
) -> None:
    """Start a new key version (and move everything to it)."""
    if kek == dek:
        raise click.UsageError("give exactly one of --kek or --dek")
    if dek and not merchant:
        raise click.UsageError("--dek needs --merchant acct_…")
    if kek:
        _run(
            ctx,
            data_dir,
            lambda runtime: keys.rotate_kek(
                runtime, actor=operator(), rewrap=complete, batch_size=batch_size
            ),
        )
        return
    _run(
        ctx,
        data_dir,
        lambda runtime: keys.rotate_dek(
            runtime, str(merchant), actor=operator(), reencrypt=complete, batch_size=batch_size
        ),
    )


@keys_group.command("retire")
@_data_dir
@click.option("--kek-version", type=int, default=None, help="Destroy this old KEK version.")
@click.option("--merchant", default=None, help="Destroy this merchant's drained old data keys.")
@click.pass_context
def keys_retire(
    ctx: click.Context, data_dir: Path | None, kek_version: int | None, merchant: str | None
) -> None:
    """Destroy old versions that protect nothing any more (refused otherwise)."""
    if (kek_version is None) == (merchant is None):
        raise click.UsageError("give exactly one of --kek-version or --merchant")
    if kek_version is not None:
        _run(ctx, data_dir, lambda runtime: keys.retire_kek(runtime, kek_version, actor=operator()))
        return
    _run(
        ctx,
        data_dir,
        lambda runtime: keys.destroy_retired_deks(runtime, str(merchant), actor=operator()),
    )
