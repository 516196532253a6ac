"""The worker process: periodic jobs over the api database, bounded and interruptible.

Today: pruning idempotency keys past their retention (P1 keeps them ≥ 24 h) and advancing
ledger checkpoints. Later issues add webhook delivery, retention, key rotation and audit
checkpoints here.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from bastionpay.db.uow import unit_of_work
from bastionpay.idempotency import service as idempotency
from bastionpay.ledger import service as ledger
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
    return {"idempotency_keys_pruned": pruned, "ledger_accounts_checkpointed": advanced}


def run_forever(runtime: Runtime) -> None:
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("worker started")
    while not stop.is_set():
        try:
            summary = run_once(runtime)
            if any(summary.values()):
                log.info("worker cycle %s", summary)
        except Exception:
            # One failed cycle must not kill the worker; the next cycle retries.
            log.exception("worker cycle failed")
        stop.wait(runtime.settings.worker_interval_seconds)
    log.info("worker stopped")
