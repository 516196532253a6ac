"""`bastionpay reviews list|approve|reject` and `bastionpay merchants risk` (issue 7, item 6).

Operators act on the review queue from the command line with the same rules as the API: a review
is closed once, approval captures an automatically captured payment, rejection voids it, and every
decision is audited and becomes a label for retraining.
"""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import select

from bastionpay import bootstrap
from bastionpay.audit import events as audit
from bastionpay.cli.common import data_dir_option, emit_json, settings_for
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.errors import BastionPayError
from bastionpay.merchants import service as merchants
from bastionpay.payments import review_decisions
from bastionpay.payments.review_views import render_review
from bastionpay.risk.models import Review


@click.group("reviews")
def reviews_group() -> None:
    """The risk review queue."""


@reviews_group.command("list")
@click.option("--merchant", "merchant_id", required=True)
@click.option("--all", "show_all", is_flag=True, help="Closed reviews too (default: open only).")
@click.option("--live", is_flag=True, help="Live mode (default: test mode).")
@data_dir_option
def reviews_list(merchant_id: str, show_all: bool, live: bool, data_dir: Path | None) -> None:
    """List a merchant's reviews, newest first, as JSON."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    with unit_of_work(runtime.db, write=False) as session:
        query = select(Review).where(Review.merchant_id == merchant_id, Review.livemode.is_(live))
        if not show_all:
            query = query.where(Review.open.is_(True))
        emit_json([render_review(r) for r in session.scalars(query.order_by(Review.pk.desc()))])


def _decide(review_id: str, approve: bool, data_dir: Path | None) -> None:
    runtime = bootstrap.initialise(settings_for(data_dir))
    now = runtime.clock.now()
    try:
        with unit_of_work(runtime.db, write=True) as session:
            found = session.scalar(select(Review).where(Review.id == review_id))
            if found is None:
                raise click.ClickException(f"No such review: {review_id}")
            ctx = runtime.payment_context(found.merchant_id, found.livemode, now)
            decide = review_decisions.approve if approve else review_decisions.reject
            review = decide(session, ctx, review_id, "cli")
            audit.record(
                session,
                audit.AuditEvent(
                    actor_type="system",
                    actor_id="cli",
                    action="risk.review.approve" if approve else "risk.review.reject",
                    outcome="success",
                    merchant_id=review.merchant_id,
                    livemode=review.livemode,
                    target_type="review",
                    target_id=review.id,
                    details={"payment_intent": review.payment_intent_id},
                ),
            )
            emit_json(render_review(review))
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None


@reviews_group.command("approve")
@click.argument("review_id")
@data_dir_option
def reviews_approve(review_id: str, data_dir: Path | None) -> None:
    """Approve: capture (automatic capture) or release to the merchant (manual capture)."""
    _decide(review_id, True, data_dir)


@reviews_group.command("reject")
@click.argument("review_id")
@data_dir_option
def reviews_reject(review_id: str, data_dir: Path | None) -> None:
    """Reject: void the held authorization and label the payment as fraud."""
    _decide(review_id, False, data_dir)


@click.command("risk")
@click.argument("merchant_id")
@click.option("--policy", type=click.Choice(["open", "closed"]), help="When scoring fails.")
@click.option("--timezone", help="IANA zone for night-time features, e.g. Europe/Paris.")
@data_dir_option
def merchants_risk(
    merchant_id: str, policy: str | None, timezone: str | None, data_dir: Path | None
) -> None:
    """Set a merchant's risk failure policy and time zone."""
    if policy is None and timezone is None:
        raise click.UsageError("give --policy and/or --timezone")
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        with unit_of_work(runtime.db, write=True) as session:
            merchant = merchants.set_risk_settings(
                session, merchant_id, policy=policy, timezone=timezone
            )
            audit.record(
                session,
                audit.AuditEvent(
                    actor_type="system",
                    actor_id="cli",
                    action="merchant.account.risk_settings",
                    outcome="success",
                    merchant_id=merchant.id,
                    target_type="account",
                    target_id=merchant.id,
                    details={"policy": policy, "timezone": timezone},
                ),
            )
            emit_json(
                {
                    "merchant": merchant.id,
                    "risk_failure_policy": merchant.risk_failure_policy
                    or f"default ({runtime.settings.risk_failure_policy})",
                    "timezone": merchant.timezone or "UTC",
                }
            )
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
