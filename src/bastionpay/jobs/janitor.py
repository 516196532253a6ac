"""The payments janitor: settles PaymentIntents the request path had to leave open (issue 4).

1. **`processing`** (item 6): the acquirer answered neither the authorization nor its reversal,
   so the vault holds the authorization `reversal_pending` and nobody knows whether the issuer
   holds the money. The vault's own worker keeps sending the reversal; the janitor asks the vault
   to push it once more (`settle_pending`, idempotent once reversed) and, when it is acknowledged,
   fails the attempt cleanly in one unit of work: the charge `failed` with Stripe's
   `processing_error` / `try_again_later`, the intent back to `requires_payment_method`, an audit
   event (`payments.payment_intent.resolve`). Timeouts never double-charge: the money ends up
   not held whichever reaches the issuer first, the `0100` or its reversal (docs/acquirer.md).
2. **`requires_action`** (item 7): a 3-D Secure challenge that ended but whose intent nobody has
   retrieved or confirmed since is finished the same way a retrieve would (`intents.refresh`).

Bounded: at most `BATCH` intents of each kind per run, oldest first; the processor is asked with
no transaction open; each intent is settled in its own unit of work, so one failure (logged,
retried next run) never blocks the others.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from sqlalchemy import select

from bastionpay.audit import events as audit
from bastionpay.audit.events import AuditEvent
from bastionpay.db.uow import unit_of_work
from bastionpay.payments import intents
from bastionpay.payments.models import Charge, PaymentIntent
from bastionpay.payments.three_d_secure import Actor
from bastionpay.runtime import Runtime

log = logging.getLogger("bastionpay.jobs.janitor")

BATCH: Final = 100
INTERVAL_SECONDS: Final = 5.0  # how often the worker runs it: a timed-out payment waits ≤ this
JANITOR: Final = Actor("system", "janitor")


def run(runtime: Runtime) -> dict[str, int]:
    return {
        "payments_reversed": settle_processing(runtime),
        "authentications_finished": finish_authentications(runtime),
    }


def _candidates(runtime: Runtime, status: str) -> list[tuple[str, str, bool, str | None]]:
    with unit_of_work(runtime.db, write=False) as session:
        rows = session.execute(
            select(
                PaymentIntent.id,
                PaymentIntent.merchant_id,
                PaymentIntent.livemode,
                PaymentIntent.latest_charge_id,
            )
            .where(PaymentIntent.status == status)
            .order_by(PaymentIntent.pk)
            .limit(BATCH)
        ).all()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def settle_processing(runtime: Runtime) -> int:
    settled = 0
    for intent_id, merchant_id, livemode, charge_id in _candidates(runtime, "processing"):
        try:
            settled += _settle_one(runtime, intent_id, merchant_id, livemode, charge_id)
        except Exception as exc:  # noqa: BLE001 - one intent must not stop the others; retried
            log.warning("janitor could not settle %s (%s)", intent_id, type(exc).__name__)
    return settled


def _settle_one(
    runtime: Runtime, intent_id: str, merchant_id: str, livemode: bool, charge_id: str | None
) -> int:
    if charge_id is None:
        return 0
    with unit_of_work(runtime.db, write=False) as session:
        reference = session.scalar(
            select(Charge.processor_reference).where(
                Charge.id == charge_id, Charge.status == "pending"
            )
        )
    if reference is None:
        return 0
    # No transaction is open while the vault and the acquirer are asked (SQLite's write lock).
    if runtime.connector.settle_pending(reference) != "reversed":
        return 0
    ctx = runtime.payment_context(merchant_id, livemode, runtime.clock.now())
    with unit_of_work(runtime.db, write=True) as session:
        intent = intents.get(session, ctx, intent_id, lock=True)
        charge = session.scalar(select(Charge).where(Charge.id == charge_id))
        if charge is None or not intents.settle_processing(session, ctx, intent, charge):
            return 0
        audit.record(session, _event(intent, charge, "success", reversed=True))
    log.info("janitor settled %s: the timed-out authorization was reversed", intent_id)
    return 1


def _event(
    intent: PaymentIntent, charge: Charge, outcome: audit.Outcome, **details: Any
) -> AuditEvent:
    return AuditEvent(
        actor_type=JANITOR.type,
        actor_id=JANITOR.id,
        action="payments.payment_intent.resolve",
        outcome=outcome,
        merchant_id=intent.merchant_id,
        livemode=intent.livemode,
        target_type="payment_intent",
        target_id=intent.id,
        details={"charge": charge.id, "status": intent.status, **details},
    )


def finish_authentications(runtime: Runtime) -> int:
    finished = 0
    for intent_id, merchant_id, livemode, _ in _candidates(runtime, "requires_action"):
        ctx = runtime.payment_context(merchant_id, livemode, runtime.clock.now())
        try:
            with unit_of_work(runtime.db, write=False) as session:
                intent = intents.get(session, ctx, intent_id)
            done = intents.refresh(ctx, intent, lambda _session, row: {"status": row.status})
        except Exception as exc:  # noqa: BLE001 - one intent must not stop the others; retried
            log.warning("janitor could not finish %s (%s)", intent_id, type(exc).__name__)
            continue
        finished += done is not None
    return finished
