"""`bastionpay disputes open|resolve|list`: the operator plays the card network (docs/disputes.md).

There is no real network behind the simulated acquirer, so chargebacks arrive and are decided
here: `open` is the issuer's chargeback (or inquiry) on a captured charge, `resolve` the network's
decision. Both run the same service as the test cards do — ledger postings, labels and the audit
event in one unit of work (P2, L1) — and print the dispute as the API renders it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.cli.common import data_dir_option, emit_json, unit_of_work_for
from bastionpay.disputes import service as disputes
from bastionpay.disputes import states
from bastionpay.disputes.models import Dispute
from bastionpay.disputes.views import render_dispute
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.models import Charge
from bastionpay.runtime import Runtime

ACTOR: Final = disputes.Actor("system", "cli")
T = TypeVar("T")


@click.group("disputes")
def disputes_group() -> None:
    """Disputes (chargebacks): simulate the card network's side."""


def _in_scope(
    runtime: Runtime,
    session: Session,
    model: type[Charge] | type[Dispute],
    object_id: str,
    act: Callable[[PaymentContext], T],
) -> T:
    """Run `act` as the merchant and mode owning `object_id`: operators name the object only."""
    owner = session.execute(
        select(model.merchant_id, model.livemode).where(model.id == object_id)
    ).first()
    if owner is None:
        kind = "charge" if model is Charge else "dispute"
        raise click.ClickException(f"No such {kind}: {object_id}")
    ctx = runtime.payment_context(owner.merchant_id, bool(owner.livemode), runtime.clock.now())
    return act(ctx)


@disputes_group.command("open")
@click.option("--charge", "charge_id", required=True, help="The captured charge (ch_…).")
@click.option("--reason", type=click.Choice(states.REASONS), default="general", show_default=True)
@click.option("--amount", type=click.IntRange(min=1), default=None, help="Default: unrefunded.")
@click.option("--inquiry", is_flag=True, help="An inquiry (warning_needs_response): no funds move.")
@data_dir_option
def disputes_open(
    charge_id: str, reason: str, amount: int | None, inquiry: bool, data_dir: Path | None
) -> None:
    """Open a dispute on a charge, as the cardholder's bank would."""
    with unit_of_work_for(data_dir, write=True) as (runtime, session):
        dispute = _in_scope(
            runtime,
            session,
            Charge,
            charge_id,
            lambda ctx: disputes.open_dispute(
                session, ctx, charge_id, reason=reason, amount=amount, inquiry=inquiry, actor=ACTOR
            ),
        )
        session.flush()
        emit_json(render_dispute(session, dispute, runtime.clock.now()))


@disputes_group.command("resolve")
@click.argument("dispute_id")
@click.option("--outcome", type=click.Choice(["won", "lost"]), required=True)
@data_dir_option
def disputes_resolve(dispute_id: str, outcome: str, data_dir: Path | None) -> None:
    """Decide a dispute, as the card network would: won returns the funds and the fee."""
    decided: states.Outcome = "won" if outcome == "won" else "lost"
    with unit_of_work_for(data_dir, write=True) as (runtime, session):
        dispute = _in_scope(
            runtime,
            session,
            Dispute,
            dispute_id,
            lambda ctx: disputes.resolve(session, ctx, dispute_id, decided, actor=ACTOR),
        )
        session.flush()
        emit_json(render_dispute(session, dispute, runtime.clock.now()))


@disputes_group.command("list")
@click.option("--merchant", "merchant_id", required=True)
@click.option("--live", is_flag=True, help="Live mode (default: test mode).")
@click.option("--open", "only_open", is_flag=True, help="Undecided disputes only.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@data_dir_option
def disputes_list(
    merchant_id: str, live: bool, only_open: bool, limit: int, data_dir: Path | None
) -> None:
    """A merchant's disputes, newest first, as JSON."""
    with unit_of_work_for(data_dir, write=False) as (runtime, session):
        query = select(Dispute).where(
            Dispute.merchant_id == merchant_id, Dispute.livemode.is_(live)
        )
        if only_open:
            query = query.where(Dispute.status.in_(states.OPEN))
        rows = session.scalars(query.order_by(Dispute.pk.desc()).limit(limit))
        now = runtime.clock.now()
        emit_json([render_dispute(session, row, now) for row in rows])
