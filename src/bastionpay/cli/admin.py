"""`bastionpay merchants`, `keys`, `ledger verify` and `db upgrade`."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import select

from bastionpay import bootstrap
from bastionpay.audit import events as audit
from bastionpay.cli.common import data_dir_option, emit_json, settings_for
from bastionpay.db import migrate
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.errors import BastionPayError
from bastionpay.ledger.verify import verify
from bastionpay.merchants import service as merchants
from bastionpay.merchants.models import ApiKey, Merchant
from bastionpay.merchants.permissions import ALL_PERMISSIONS


@click.group("merchants")
def merchants_group() -> None:
    """Create and list merchants."""


@merchants_group.command("create")
@click.option("--name", required=True, help="Merchant display name.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@data_dir_option
def merchants_create(name: str, as_json: bool, data_dir: Path | None) -> None:
    """Create a merchant with test-mode secret and publishable keys (shown once)."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        created = bootstrap.create_merchant_with_keys(runtime, name)
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        emit_json(created)
        return
    click.echo(f"merchant        {created['id']}")
    click.echo(f"secret key      {created['secret_key']}   (shown once; store it now)")
    click.echo(f"publishable key {created['publishable_key']}")


@merchants_group.command("list")
@data_dir_option
def merchants_list(data_dir: Path | None) -> None:
    """List merchants."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    with unit_of_work(runtime.db, write=False) as session:
        for merchant in session.scalars(select(Merchant).order_by(Merchant.pk)):
            click.echo(f"{merchant.id}\t{merchant.name}")


@merchants_group.command("limits")
@click.argument("merchant_id")
@click.option("--read", "read", help="Read requests per key, e.g. 500/second.")
@click.option("--write", "write", help="Write requests per key, e.g. 200/second.")
@click.option("--default", "use_default", is_flag=True, help="Back to the platform defaults.")
@data_dir_option
def merchants_limits(
    merchant_id: str,
    read: str | None,
    write: str | None,
    use_default: bool,
    data_dir: Path | None,
) -> None:
    """Set a merchant's API rate limits (T4). Running api processes apply them at once."""
    if use_default == bool(read or write):
        raise click.UsageError("give --read and/or --write, or --default")
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        with unit_of_work(runtime.db, write=True) as session:
            merchant = merchants.set_rate_limits(session, merchant_id, read=read, write=write)
            audit.record(
                session,
                audit.AuditEvent(
                    actor_type="system",
                    actor_id="cli",
                    action="merchant.account.rate_limits",
                    outcome="success",
                    merchant_id=merchant.id,
                    target_type="account",
                    target_id=merchant.id,
                    details={"read": read, "write": write},
                ),
            )
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
    settings = runtime.settings
    emit_json(
        {
            "merchant": merchant_id,
            "read": read
            or f"default (live {settings.rate_limit_live_read}, test "
            f"{settings.rate_limit_test_read})",
            "write": write
            or f"default (live {settings.rate_limit_live_write}, test "
            f"{settings.rate_limit_test_write})",
        }
    )


@click.group("keys")
def keys_group() -> None:
    """Issue, list and revoke API keys."""


@keys_group.command("create")
@click.option("--merchant", "merchant_id", required=True)
@click.option(
    "--kind",
    type=click.Choice(["secret", "publishable", "restricted"]),
    default="secret",
    show_default=True,
)
@click.option("--live", is_flag=True, help="Issue a live-mode key (default: test mode).")
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    type=click.Choice(sorted(ALL_PERMISSIONS)),
    help="For restricted keys; repeatable.",
)
@click.option(
    "--allow-ip",
    "allow_ips",
    multiple=True,
    help="Only accept the key from this address or CIDR (I7); repeatable.",
)
@data_dir_option
def keys_create(
    merchant_id: str,
    kind: str,
    live: bool,
    permissions: tuple[str, ...],
    allow_ips: tuple[str, ...],
    data_dir: Path | None,
) -> None:
    """Issue an API key. The key is printed once and stored only as a keyed hash."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        with unit_of_work(runtime.db, write=True) as session:
            issued = merchants.issue_key(
                session,
                runtime.api_keys,
                merchant_id=merchant_id,
                kind=kind,
                livemode=live,
                now=runtime.clock.now(),
                permissions=frozenset(permissions) if permissions else None,
            )
            if allow_ips:
                merchants.set_allowed_ips(session, issued.record.id, list(allow_ips))
            key_id = issued.record.id
            audit.record(session, bootstrap.key_event("merchant.api_key.create", issued.record))
            # With a card vault configured, its hosted fields must accept the key (issue 4).
            bootstrap.register_publishable_key(runtime, issued.record, issued.plaintext)
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
    emit_json(
        {"id": key_id, "key": issued.plaintext, "allowed_ips": issued.record.allowed_ips or None}
    )


@keys_group.command("allow-ips")
@click.argument("key_id")
@click.option("--cidr", "cidrs", multiple=True, help="Address or CIDR; repeatable.")
@click.option("--anywhere", is_flag=True, help="Lift the restriction.")
@data_dir_option
def keys_allow_ips(
    key_id: str, cidrs: tuple[str, ...], anywhere: bool, data_dir: Path | None
) -> None:
    """Restrict where an API key may be used from (I7); takes effect on the next request."""
    if anywhere == bool(cidrs):
        raise click.UsageError("give --cidr (repeatable) or --anywhere")
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        with unit_of_work(runtime.db, write=True) as session:
            record = merchants.set_allowed_ips(session, key_id, list(cidrs))
            audit.record(session, bootstrap.key_event("merchant.api_key.restrict_ips", record))
            allowed = record.allowed_ips
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
    emit_json({"id": key_id, "allowed_ips": allowed})


@keys_group.command("list")
@click.option("--merchant", "merchant_id", required=True)
@data_dir_option
def keys_list(merchant_id: str, data_dir: Path | None) -> None:
    """List a merchant's keys (redacted) with last-used time and revocation state."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    with unit_of_work(runtime.db, write=False) as session:
        rows = session.scalars(
            select(ApiKey).where(ApiKey.merchant_id == merchant_id).order_by(ApiKey.pk)
        ).all()
        emit_json(
            [
                {
                    "id": k.id,
                    "kind": k.kind,
                    "livemode": k.livemode,
                    "redacted": k.redacted,
                    "permissions": k.permissions,
                    "allowed_ips": k.allowed_ips,
                    "created": k.created,
                    "last_used_at": k.last_used_at,
                    "revoked_at": k.revoked_at,
                }
                for k in rows
            ]
        )


@keys_group.command("revoke")
@click.argument("key_id")
@data_dir_option
def keys_revoke(key_id: str, data_dir: Path | None) -> None:
    """Revoke an API key immediately."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        with unit_of_work(runtime.db, write=True) as session:
            record = merchants.revoke_key(session, key_id, runtime.clock.now())
            audit.record(session, bootstrap.key_event("merchant.api_key.revoke", record))
            bootstrap.revoke_publishable_key(runtime, record)
            click.echo(f"revoked {record.id} ({record.redacted})")
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None


@click.group("ledger")
def ledger_group() -> None:
    """Ledger tools."""


@ledger_group.command("verify")
@data_dir_option
def ledger_verify(data_dir: Path | None) -> None:
    """Re-derive every ledger invariant; exit 1 naming the first broken one."""
    settings = settings_for(data_dir)
    runtime = bootstrap.initialise(settings)
    with unit_of_work(runtime.db, write=False) as session:
        report = verify(session)
    click.echo(
        f"ledger: {report.transactions} transactions, {report.entries} entries, "
        f"{report.accounts} accounts"
    )
    for check in report.checks:
        click.echo(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}: {check.description}")
        for problem in check.problems:
            click.echo(f"         {problem}")
    failure = report.first_failure()
    if failure is not None:
        click.echo(f"ledger verify: invariant broken: {failure.name}", err=True)
        raise SystemExit(1)
    click.echo("ledger verify: all invariants hold")


@click.group("db")
def db_group() -> None:
    """Database migrations."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@data_dir_option
def db_upgrade(revision: str, data_dir: Path | None) -> None:
    """Apply migrations to the api database."""
    settings = settings_for(data_dir)
    settings.resolved_data_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    url = settings.resolved_database_url()
    migrate.upgrade(url, revision)
    click.echo(f"api database at revision {migrate.current_revision(url)}")
