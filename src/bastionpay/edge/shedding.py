"""Load shedding and priority admission (edge issue, item 4).

Two mechanisms, both per process and both on the event loop (no locks needed):

1. **Admission.** A request counts as in flight from admission until its answer. Each priority may
   only be admitted while the in-flight count is below its share of `capacity`: lists and searches
   (`low`) stop at half, ordinary reads and writes (`normal`) at 85 %, payment confirmations,
   captures and refunds (`critical`) use all of it. Under overload the cheap-to-retry requests get
   503 first and payments keep the capacity reserved for them — Stripe's "load shedder" keeps
   critical methods working the same way.
2. **Priority slots.** The pipeline runs in `slots` worker threads. When a slot frees, the waiting
   request of the highest priority gets it (FIFO within a priority), so an admitted backlog of
   lists cannot sit in front of a payment.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import IntEnum

import anyio

from bastionpay.kernel.errors import ServiceUnavailable
from bastionpay.observability.metrics import METRICS


class Priority(IntEnum):
    LOW = 0
    NORMAL = 1
    CRITICAL = 2


# Fraction of capacity each priority may fill (see the module docstring).
SHARES = {Priority.LOW: 0.5, Priority.NORMAL: 0.85, Priority.CRITICAL: 1.0}


class PrioritySlots:
    """A counting semaphore that hands freed slots to the highest-priority waiter."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: dict[Priority, deque[anyio.Event]] = {p: deque() for p in Priority}

    def _has_waiters(self) -> bool:
        return any(self._waiters.values())

    async def acquire(self, priority: Priority) -> None:
        if self._free > 0 and not self._has_waiters():
            self._free -= 1
            return
        event = anyio.Event()
        queue = self._waiters[priority]
        queue.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release()  # the slot was handed to us as we were cancelled: pass it on
            else:
                queue.remove(event)
            raise

    def release(self) -> None:
        for priority in sorted(Priority, reverse=True):
            queue = self._waiters[priority]
            if queue:
                queue.popleft().set()  # the slot passes directly to the waiter
                return
        self._free += 1


class Admission:
    def __init__(self, capacity: int, slots: int) -> None:
        self.capacity = capacity
        self.in_flight = 0
        self.slots = PrioritySlots(slots)
        self._limits = {p: max(1, int(capacity * share)) for p, share in SHARES.items()}

    def limit(self, priority: Priority) -> int:
        return self._limits[priority]

    @asynccontextmanager
    async def admitted(self, priority: Priority) -> AsyncIterator[None]:
        """Admit or raise ServiceUnavailable (503 `server_overloaded`, with Retry-After)."""
        if self.in_flight >= self._limits[priority]:
            METRICS.shed.labels(priority.name.lower()).inc()
            raise ServiceUnavailable(
                "The API is handling more requests than it can right now; this request was not "
                "processed. Retry with exponential backoff.",
                code="server_overloaded",
            )
        self.in_flight += 1
        METRICS.inflight.set(self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            METRICS.inflight.set(self.in_flight)

    @asynccontextmanager
    async def slot(self, priority: Priority) -> AsyncIterator[None]:
        await self.slots.acquire(priority)
        try:
            yield
        finally:
            self.slots.release()
