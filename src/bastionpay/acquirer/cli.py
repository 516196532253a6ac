"""`bastionpay acquirer`: run the simulated acquirer host until SIGINT or SIGTERM.

    bastionpay acquirer [--host 127.0.0.1] [--port 8583] [--ready-file PATH]
                        [--slow-ms 3000] [--fault MTI=ACTION[:PROBABILITY]] [--delay MTI=MS]
                        [--seed N] [--log-level info]

With `--port 0` the kernel picks a free port. Once listening, the host and port are printed as one
JSON line on stdout and, with `--ready-file`, written to that file atomically (a temporary file in
the same directory, then a rename), so a supervisor never reads half a file. The ready file is
removed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bastionpay.acquirer.faults import Fault, MessageFault
from bastionpay.acquirer.server import serve
from bastionpay.acquirer.settings import DEFAULT_PORT, AcquirerSettings
from bastionpay.acquirer.spec import RESPONSE_MTI
from bastionpay.observability.logging import configure_logging, get_logger

log = get_logger("bastionpay.acquirer.cli")


FAULTS_ENV = "BASTIONPAY_ACQUIRER_FAULTS"
SEED_ENV = "BASTIONPAY_ACQUIRER_SEED"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bastionpay acquirer",
        description="Run the simulated ISO 8583 acquirer/issuer host (a test double).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 = any free port")
    parser.add_argument("--ready-file", type=Path, help='write {"host", "port"} here once ready')
    parser.add_argument("--slow-ms", type=int, default=3000, help="delay of slow/late faults")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="MTI=ACTION[:PROBABILITY]",
        help=f"inject a fault for a request MTI; actions: {', '.join(f.value for f in Fault)}",
    )
    parser.add_argument(
        "--delay", action="append", default=[], metavar="MTI=MS", help="latency per request MTI"
    )
    parser.add_argument("--seed", type=int, help="seed for fault probabilities")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def _faults(specs: Sequence[str], delays: Sequence[str]) -> dict[str, MessageFault]:
    actions: dict[str, tuple[Fault, float]] = {}
    for spec in specs:
        mti, _, rest = spec.partition("=")
        name, _, chance = rest.partition(":")
        actions[mti] = (Fault(name), float(chance) if chance else 1.0)
    latency: dict[str, int] = {}
    for spec in delays:
        mti, _, milliseconds = spec.partition("=")
        latency[mti] = int(milliseconds)
    faults: dict[str, MessageFault] = {}
    for mti in sorted(set(actions) | set(latency)):
        if mti not in RESPONSE_MTI:
            raise ValueError(f"unknown request MTI {mti!r}")
        action, probability = actions.get(mti, (None, 1.0))
        faults[mti] = MessageFault(action, probability, latency.get(mti, 0))
    return faults


def write_ready_file(path: Path, host: str, port: int) -> None:
    """`{"host": …, "port": …, "pid": …}` in `path`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"host": host, "port": port, "pid": os.getpid()}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


async def _run(settings: AcquirerSettings, ready_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready(host: str, port: int) -> None:
        sys.stdout.write(json.dumps({"host": host, "port": port}) + "\n")
        sys.stdout.flush()
        if ready_file is not None:
            write_ready_file(ready_file, host, port)

    try:
        await serve(settings, ready=ready, stop=stop)
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    configure_logging(level=getattr(logging, arguments.log_level.upper()))
    try:
        # `bastionpay up` starts the acquirer itself: faults then come from the environment
        # (`BASTIONPAY_ACQUIRER_FAULTS="0400=no_answer:0.75 0100=slow"`, `…_SEED`), so an
        # end-to-end test can inject them (issue 4, item 6). Flags win over the environment.
        faults = arguments.fault or os.environ.get(FAULTS_ENV, "").replace(",", " ").split()
        seed = arguments.seed
        if seed is None and os.environ.get(SEED_ENV):
            seed = int(os.environ[SEED_ENV])
        settings = AcquirerSettings(
            host=arguments.host,
            port=arguments.port,
            slow_ms=arguments.slow_ms,
            faults=_faults(faults, arguments.delay),
            seed=seed,
        )
    except ValueError as exc:
        parser.error(str(exc))  # exits with status 2
    try:
        asyncio.run(_run(settings, arguments.ready_file))
    except OSError as exc:
        # No traceback: the reason is enough to act on (port taken, address not available).
        log.error("acquirer_failed", reason=type(exc).__name__, detail=exc.strerror)  # noqa: TRY400
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m bastionpay.acquirer.cli`
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
