"""Fault injection: what the host does instead of answering promptly (issue 4, items 5 and 6).

Two triggers, both documented in docs/acquirer.md:

- **by card number** — the simulator's own Luhn-valid test numbers in `testcards.FAULT_CARDS`
  (`4000 0099 0000 0NNC`), applied to the `0100` that carries them;
- **by configuration** — `AcquirerSettings.faults`, a `MessageFault` per request MTI, applied with
  a probability (a seeded random source, so a run can be repeated) and/or with a fixed latency.

Every fault but `LATE` lets the issuer process the request first, so the money is held when the
answer goes missing: the worst case, which the client's reversal must undo. `LATE` processes only
after the delay, so the client's reversal arrives *before* the original — the issuer must then
decline the late original (the "reversal before the original" rule in `issuer`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Fault(enum.StrEnum):
    SLOW = "slow"  # process, answer after `slow_ms`
    LATE = "late"  # wait `slow_ms`, then process and answer
    NO_ANSWER = "no_answer"  # process, never answer (the connection stays open)
    DROP = "drop"  # process, close the connection without answering
    GARBAGE = "garbage"  # process, answer with a frame that is not ISO 8583
    WRONG_MTI = "wrong_mti"  # process, answer with the right STAN but an unrelated MTI (0810)
    WRONG_STAN = "wrong_stan"  # process, answer with another STAN, and nothing else
    STRAY = "stray"  # process, answer once with another STAN, then correctly

    @property
    def processes_first(self) -> bool:
        return self is not Fault.LATE


@dataclass(frozen=True, slots=True)
class MessageFault:
    """Configured behaviour for one request MTI.

    `action` happens with `probability` (0..1); `delay_ms` is added latency before every answer
    to that MTI, fault or not.
    """

    action: Fault | None = None
    probability: float = 1.0
    delay_ms: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("fault probability must be within 0..1")
        if self.delay_ms < 0:
            raise ValueError("fault delay must not be negative")
