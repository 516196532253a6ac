"""The worker process: periodic jobs over the api database, bounded and interruptible.

Today: pruning idempotency keys past their retention (P1 keeps them ≥ 24 h) and advancing
ledger checkpoints. Later issues add webhook delivery, retention, key rotation and audit
checkpoints here.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from bastionpay.audit import seal
from bastionpay.db.uow import unit_of_work
from bastionpay.idempotency import service as idempotency
from bastionpay.identity import inactivity
from bastionpay.jobs import janitor
from bastionpay.ledger import service as ledger
from bastionpay.oauth import grants as oauth_grants
from bastionpay.runtime import Runtime

log = logging.getLogger("bastionpay.worker")


def run_once(runtime: Runtime) -> dict[str, int]:
    now = runtime.clock.now()
    settings = runtime.settings
    with unit_of_work(runtime.db, write=True) as session:
        pruned = idempotency.prune(session, older_than=now - settings.idempotency_retention_seconds)
    with unit_of_work(runtime.db, write=True) as session:
        horizon = ledger.checkpoint_horizon(
            session, older_than=now - settings.ledger_checkpoint_horizon_seconds
        )
        advanced = ledger.advance_checkpoints(session, through_entry_pk=horizon)
    # I7: operator accounts unused for 90 days are disabled (audited per account).
    disabled = inactivity.disable_inactive_users(runtime)
    # OAuth codes and refresh tokens past any use are deleted (I6: nothing kept without need).
    with unit_of_work(runtime.db, write=True) as session:
        purged = oauth_grants.purge_expired(
            session, now=now, refresh_seconds=settings.oauth_refresh_token_seconds
        )
    return {
        "idempotency_keys_pruned": pruned,
        "ledger_accounts_checkpointed": advanced,
        "users_disabled_inactive": disabled,
        "oauth_grants_purged": purged,
    }


def run_audit_once(runtime: Runtime, *, checkpoint_due: bool) -> dict[str, int]:
    """Seal staged audit events; sign a checkpoint when due. Failures are logged and retried."""
    if not checkpoint_due:
        # A read first: an idle platform should not take SQLite's write lock every second.
        with unit_of_work(runtime.db, write=False) as session:
            if seal.staged_count(session) == 0:
                return {"audit_sealed": 0, "audit_checkpoints": 0}
    with unit_of_work(runtime.db, write=True) as session:
        sealed = seal.seal(session, runtime.audit_keys)
        made = None
        if checkpoint_due:
            made = seal.checkpoint(session, runtime.audit_keys, now_us=time.time_ns() // 1000)
    return {"audit_sealed": sealed.count, "audit_checkpoints": int(made is not None)}


def run_forever(runtime: Runtime) -> None:
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    settings = runtime.settings
    log.info("worker started")
    next_maintenance = next_checkpoint = next_janitor = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        try:
            due = now >= next_checkpoint
            summary = run_audit_once(runtime, checkpoint_due=due)
            if due:
                next_checkpoint = now + settings.audit_checkpoint_interval_seconds
            if now >= next_janitor:
                # Timed-out payments and finished 3-D Secure challenges (issue 4, items 6-7).
                summary.update(janitor.run(runtime))
                next_janitor = now + janitor.INTERVAL_SECONDS
            if now >= next_maintenance:
                summary.update(run_once(runtime))
                next_maintenance = now + settings.worker_interval_seconds
            if any(summary.values()):
                log.info("worker cycle %s", summary)
        except Exception:
            # A failed cycle must not kill the worker; it is logged (an audit sealing failure is
            # itself an event to alert on, L3) and the next cycle retries.
            log.exception("worker cycle failed")
        stop.wait(settings.audit_seal_interval_seconds)
    log.info("worker stopped")
