"""The worker process: periodic jobs over the api database, bounded and interruptible.

Today: pruning idempotency keys past their retention (P1 keeps them ≥ 24 h). Later issues add
webhook delivery, retention, key rotation and audit checkpoints here.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from bastionpay.db.uow import unit_of_work
from bastionpay.idempotency import service as idempotency
from bastionpay.runtime import Runtime

log = logging.getLogger("bastionpay.worker")


def run_once(runtime: Runtime) -> dict[str, int]:
    now = runtime.clock.now()
    cutoff = now - runtime.settings.idempotency_retention_seconds
    with unit_of_work(runtime.db, write=True) as session:
        pruned = idempotency.prune(session, older_than=cutoff)
    return {"idempotency_keys_pruned": pruned}


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
