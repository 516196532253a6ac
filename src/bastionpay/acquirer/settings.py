"""Settings of the acquirer host: where it listens, its limits, and the faults it injects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from bastionpay.acquirer.faults import MessageFault
from bastionpay.acquirer.framing import DEFAULT_MAX_SIZE, check_max_size
from bastionpay.acquirer.spec import RESPONSE_MTI

DEFAULT_PORT: Final = 8583  # the port ISO 8583 links conventionally use


@dataclass(frozen=True, slots=True)
class AcquirerSettings:
    """Immutable once built (config read once, as in Starlette); tests build one per server.

    Every wait and every queue has a bound: frames (`max_frame_size`), connections
    (`max_connections`), requests in flight per connection (`max_in_flight`), the wait for the
    next frame (`idle_timeout`) and for the rest of a frame (`frame_timeout`).
    """

    host: str = "127.0.0.1"  # loopback by default: the simulator is a local test double
    port: int = DEFAULT_PORT  # 0 = any free port; the server reports the one it bound
    max_frame_size: int = DEFAULT_MAX_SIZE
    max_connections: int = 256
    max_in_flight: int = 32
    idle_timeout: float = 300.0
    frame_timeout: float = 10.0
    slow_ms: int = 3000  # the delay of the SLOW and LATE faults
    faults: Mapping[str, MessageFault] = field(default_factory=dict)  # by request MTI
    seed: int | None = None  # for the fault probabilities; None = unpredictable

    def __post_init__(self) -> None:
        check_max_size(self.max_frame_size)
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError("port must be within 0..65535")
        if self.max_connections < 1 or self.max_in_flight < 1:
            raise ValueError("connection and in-flight limits must be positive")
        if self.idle_timeout <= 0 or self.frame_timeout <= 0 or self.slow_ms < 0:
            raise ValueError("timeouts must be positive")
        unknown = set(self.faults) - set(RESPONSE_MTI)
        if unknown:
            raise ValueError(f"faults configured for unknown message types: {sorted(unknown)}")
