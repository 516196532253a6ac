"""`bastionpay oauth clients create|list|revoke`: third-party apps of a merchant (I6, I7).

    bastionpay oauth clients create --merchant acct_… --name "Books app" \
        --redirect-uri https://books.example/callback --scope payments:read [--scope …] \
        [--public] [--live]
    bastionpay oauth clients list [--merchant acct_…]
    bastionpay oauth clients revoke app_…

`create` prints the client (JSON) and, for a confidential client, its secret once: it is stored
only as a keyed hash and cannot be shown again (I7). Each change and its audit event commit in one
unit of work, with the CLI as the actor (L1, P3).
"""

from __future__ import annotations

from pathlib import Path

import click

from bastionpay.cli.common import data_dir_option, emit_json, unit_of_work_for
from bastionpay.oauth import clients

ACTOR_ID = "cli"


@click.group("oauth")
def oauth_group() -> None:
    """The OAuth 2.0 authorization server: registered third-party apps."""


@oauth_group.group("clients")
def clients_group() -> None:
    """Register, list and revoke a merchant's OAuth clients."""


@clients_group.command("create")
@click.option("--merchant", "merchant_id", required=True, help="acct_… id.")
@click.option("--name", required=True, help="The name users see on the consent page.")
@click.option(
    "--redirect-uri", "redirect_uris", multiple=True, required=True, help="Exact; repeatable."
)
@click.option("--scope", "scopes", multiple=True, required=True, help="Permission; repeatable.")
@click.option("--public", is_flag=True, help="A public client (native/browser app): no secret.")
@click.option("--live", is_flag=True, help="Live mode (default: test mode).")
@data_dir_option
def create(
    merchant_id: str,
    name: str,
    redirect_uris: tuple[str, ...],
    scopes: tuple[str, ...],
    public: bool,
    live: bool,
    data_dir: Path | None,
) -> None:
    """Register an app; a confidential client's secret is printed once."""
    with unit_of_work_for(data_dir, write=True) as (runtime, session):
        client, secret = clients.register_client(
            session,
            runtime.identity_keys,
            merchant_id=merchant_id,
            name=name,
            redirect_uris=list(redirect_uris),
            public=public,
            scopes=[s for scope in scopes for s in scope.split()],
            now=runtime.clock.now(),
            livemode=live,
            actor_id=ACTOR_ID,
        )
        body = clients.render_client(client)
    if secret is not None:
        body["client_secret"] = secret
    emit_json(body)
    if secret is not None:
        click.echo("Store the client secret now: it cannot be shown again.", err=True)


@clients_group.command("list")
@click.option("--merchant", "merchant_id", default=None, help="Only this merchant's apps.")
@data_dir_option
def list_(merchant_id: str | None, data_dir: Path | None) -> None:
    """List registered apps (never their secrets)."""
    with unit_of_work_for(data_dir, write=False) as (_runtime, session):
        rows = [
            clients.render_client(c) for c in clients.list_clients(session, merchant_id=merchant_id)
        ]
    emit_json({"object": "list", "data": rows})


@clients_group.command("revoke")
@click.argument("client_id")
@data_dir_option
def revoke(client_id: str, data_dir: Path | None) -> None:
    """Revoke an app: its tokens stop working at once."""
    with unit_of_work_for(data_dir, write=True) as (runtime, session):
        clients.revoke_client(session, client_id, now=runtime.clock.now(), actor_id=ACTOR_ID)
        body = clients.render_client(clients.get_client(session, client_id))
    emit_json(body)
