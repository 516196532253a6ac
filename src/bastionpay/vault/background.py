"""The vault process's own background work, in one daemon thread (bounded, never fatal).

- every tick: write queued audit events (refused handshakes, `auditlog.AuditQueue`);
- every `audit_seal_interval_seconds`: seal staged audit events into the chain (L2);
- every `audit_checkpoint_interval_seconds`: sign a checkpoint when something new was sealed;
- every `purge_interval_seconds`: delete CVCs past their TTL (C1, PCI DSS 3.3.2) and retry
  reversals that went unanswered (issue 4, item 6).

A failing step is logged by type and retried on its next turn; it never stops the others. An audit
failure is logged at error level (L3: a failure of audit logging is itself alerted on).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

from bastionpay.observability.logging import get_logger
from bastionpay.vault import auditlog, followups, payments
from bastionpay.vault.runtime import VaultRuntime

log = get_logger("bastionpay.vault.background")

TICK_SECONDS: Final = 0.25


class VaultWorker:
    def __init__(self, runtime: VaultRuntime) -> None:
        self.runtime = runtime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vault-worker", daemon=True)
        self._due: dict[str, float] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.flush()

    def flush(self) -> None:
        """Write and seal everything pending now (shutdown, tests)."""
        self._step("audit_queue", 0, self._drain)
        self._step("audit_seal", 0, self._seal)

    def _run(self) -> None:
        settings = self.runtime.settings
        while not self._stop.wait(TICK_SECONDS):
            self._step("audit_queue", 0, self._drain)
            self._step("audit_seal", settings.audit_seal_interval_seconds, self._seal)
            self._step(
                "audit_checkpoint", settings.audit_checkpoint_interval_seconds, self._checkpoint
            )
            self._step("cvc_purge", settings.purge_interval_seconds, self._purge)
            self._step("reversals", settings.purge_interval_seconds, self._reversals)

    def _step(self, name: str, interval: float, work: Callable[[], object]) -> None:
        now = time.monotonic()
        if interval and now < self._due.get(name, 0.0):
            return
        self._due[name] = now + interval
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - one failing job must not stop the others
            level = log.error if name.startswith("audit") else log.warning
            level("vault_background_failed", job=name, error=type(exc).__name__)

    def _drain(self) -> None:
        self.runtime.audit_queue.drain(self.runtime.db)

    def _seal(self) -> None:
        auditlog.seal_staged(self.runtime.db, self.runtime.audit_keys)

    def _checkpoint(self) -> None:
        auditlog.checkpoint(self.runtime.db, self.runtime.audit_keys)

    def _purge(self) -> None:
        payments.purge_expired_cvcs(self.runtime)

    def _reversals(self) -> None:
        followups.retry_pending_reversals(self.runtime)
