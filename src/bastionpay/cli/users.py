"""`bastionpay users`: operator accounts from the host (issue 5, item 1; docs/identity.md).

Passwords come only from standard input (`--password-stdin`), never from the command line, where
they would sit in the shell history and in every process listing (L3). Every change is audited as
`system/cli` in the same transaction as the change (L1).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from bastionpay import bootstrap
from bastionpay.audit import events as audit
from bastionpay.cli.common import data_dir_option, emit_json, settings_for
from bastionpay.db.uow import unit_of_work
from bastionpay.identity import accounts, invitations
from bastionpay.identity.models import User
from bastionpay.identity.passwords import MAX_PASSWORD_LENGTH, passwords_for
from bastionpay.identity.roles import ALL_ROLES, MERCHANT_ROLES, is_platform_role
from bastionpay.kernel.errors import BastionPayError


@click.group("users")
def users_group() -> None:
    """Operator accounts: create, list, disable, enable, change role, invite."""


def _public(user: User) -> dict[str, Any]:
    """What the CLI shows of an account: never the hash or its history."""
    return {
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "merchant": user.merchant_id,
        "status": user.status,
        "disabled_reason": user.disabled_reason,
        "mfa_enrolled": user.mfa_enrolled,
        "created": user.created,
        "last_login_at": user.last_login_at,
        "locked_until": user.locked_until,
    }


def _read_password() -> str:
    stream = sys.stdin
    if stream.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))
    # One line, as `docker login --password-stdin` reads it; bounded so a runaway pipe is not
    # read into memory.
    line = stream.readline(MAX_PASSWORD_LENGTH + 2)
    password = line.rstrip("\r\n")
    if not password:
        raise click.UsageError("no password on standard input")
    return password


def _cli_event(action: audit.Action, user: User, **details: Any) -> audit.AuditEvent:
    return accounts.user_event(action, user, actor_type="system", actor_id="cli", details=details)


@users_group.command("create")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(ALL_ROLES))
@click.option("--merchant", "merchant_id", help="acct_… (merchant roles only).")
@click.option(
    "--password-stdin",
    "password_stdin",
    is_flag=True,
    help="Read the password from standard input (the only way to give one).",
)
@data_dir_option
def users_create(
    email: str,
    role: str,
    merchant_id: str | None,
    password_stdin: bool,
    data_dir: Path | None,
) -> None:
    """Create an account. Its first login enrolls a second factor (MFA is mandatory, I3)."""
    if not password_stdin:
        raise click.UsageError(
            "pass --password-stdin and pipe the password in; passwords are never taken as "
            "arguments (they would land in the shell history and the process list)"
        )
    if is_platform_role(role) and merchant_id:
        raise click.UsageError(f"{role} is a platform role: it takes no --merchant")
    if not is_platform_role(role) and not merchant_id:
        raise click.UsageError(f"{role} is a merchant role: --merchant acct_… is required")
    password = _read_password()
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        with unit_of_work(runtime.db, write=True) as session:
            user = accounts.create_user(
                session,
                passwords_for(runtime.settings),
                email=email,
                role=role,
                merchant_id=merchant_id,
                password=password,
                now=runtime.clock.now(),
            )
            audit.record(session, _cli_event("identity.user.create", user))
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
    emit_json(_public(user))


@users_group.command("list")
@click.option("--merchant", "merchant_id", help="Only this merchant's staff.")
@data_dir_option
def users_list(merchant_id: str | None, data_dir: Path | None) -> None:
    """List accounts (all, or one merchant's)."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    with unit_of_work(runtime.db, write=False) as session:
        emit_json([_public(u) for u in accounts.list_users(session, merchant_id=merchant_id)])


@users_group.command("disable")
@click.argument("user_id")
@click.option(
    "--reason",
    type=click.Choice(sorted(accounts.DISABLE_REASONS)),
    default="admin",
    show_default=True,
)
@data_dir_option
def users_disable(user_id: str, reason: str, data_dir: Path | None) -> None:
    """Disable an account at once; its sessions and tokens stop working (I4)."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        with unit_of_work(runtime.db, write=True) as session:
            user = accounts.disable_user(session, user_id, now=runtime.clock.now(), reason=reason)
            audit.record(session, _cli_event("identity.user.disable", user, reason=reason))
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
    emit_json(_public(user))


@users_group.command("enable")
@click.argument("user_id")
@data_dir_option
def users_enable(user_id: str, data_dir: Path | None) -> None:
    """Re-enable an account; also lifts a lockout and restarts the 90-day inactivity clock."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        with unit_of_work(runtime.db, write=True) as session:
            user = accounts.enable_user(session, user_id, now=runtime.clock.now())
            audit.record(session, _cli_event("identity.user.enable", user))
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
    emit_json(_public(user))


@users_group.command("role")
@click.argument("user_id")
@click.argument("role", type=click.Choice(ALL_ROLES))
@data_dir_option
def users_role(user_id: str, role: str, data_dir: Path | None) -> None:
    """Change an account's role; its sessions end (privilege change, I4)."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        with unit_of_work(runtime.db, write=True) as session:
            previous = accounts.get_user(session, user_id).role
            user = accounts.change_role(session, user_id, role, now=runtime.clock.now())
            if previous != role:
                audit.record(
                    session, _cli_event("identity.user.role_change", user, previous_role=previous)
                )
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
    emit_json(_public(user))


@users_group.command("invite")
@click.option("--merchant", "merchant_id", required=True, help="acct_…")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(MERCHANT_ROLES))
@data_dir_option
def users_invite(merchant_id: str, email: str, role: str, data_dir: Path | None) -> None:
    """Invite a merchant's staff member; prints the acceptance link once (send it yourself)."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    settings = runtime.settings
    try:
        with unit_of_work(runtime.db, write=True) as session:
            invitation, token = invitations.invite(
                session,
                runtime.identity_keys,
                merchant_id=merchant_id,
                email=email,
                role=role,
                invited_by=invitations.CLI_INVITER,
                now=runtime.clock.now(),
                ttl=settings.invitation_ttl_seconds,
            )
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"invitation  {invitation.id}  ({role} at {merchant_id}, {invitation.email})")
    click.echo(f"expires at  {invitation.expires_at} (Unix time)")
    click.echo(
        f"accept at   {invitations.acceptance_url(settings, token)}   (shown once; send it now)"
    )
