"""Processor operations done inside one unit of work, and how to undo each (P2, P3).

The processor is called inside the database transaction. If that transaction then fails — a
database error, a crash in rendering, a lost idempotency reservation — the money has moved at the
processor but nothing was recorded here. The journal lets the caller undo those operations: an
authorization is voided, a capture refunded (ARCHITECTURE: "a timeout to the acquirer leads to an
automatic reversal, never to a double charge"). Undo is best-effort; what cannot be undone is
logged with its references for reconciliation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from bastionpay.payments.interfaces import OperationResult

log = logging.getLogger("bastionpay.payments")


@dataclass
class ProcessorJournal:
    _undo: list[tuple[str, Callable[[], OperationResult] | None]] = field(default_factory=list)

    def record(self, what: str, undo: Callable[[], OperationResult] | None) -> None:
        """Remember an operation that succeeded at the processor; `undo=None` if it cannot be."""
        self._undo.append((what, undo))

    @property
    def pending(self) -> int:
        return len(self._undo)

    def compensate(self) -> list[str]:
        """Undo every recorded operation, newest first; returns those that could not be undone."""
        unresolved: list[str] = []
        while self._undo:
            what, undo = self._undo.pop()
            if undo is None:
                unresolved.append(what)
                log.error("processor operation cannot be undone; reconcile: %s", what)
                continue
            try:
                outcome = undo()
            except Exception:
                log.exception("compensation failed; reconcile: %s", what)
                unresolved.append(what)
                continue
            if not outcome.succeeded:
                log.error("compensation refused (%s); reconcile: %s", outcome.failure_message, what)
                unresolved.append(what)
        return unresolved
