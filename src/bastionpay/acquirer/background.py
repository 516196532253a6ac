"""Run an acquirer server on its own event loop in a background thread.

For tests (the functional tests here, the vault's and the end-to-end ones) and for embedding the
simulator in a process that is not asyncio. `stop()` closes the server and every connection.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Final, Self

from bastionpay.acquirer.issuer import Issuer
from bastionpay.acquirer.server import AcquirerServer
from bastionpay.acquirer.settings import AcquirerSettings
from bastionpay.kernel.clock import Clock

START_TIMEOUT: Final = 10.0


class BackgroundAcquirer:
    def __init__(
        self,
        settings: AcquirerSettings,
        *,
        issuer: Issuer | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.server = AcquirerServer(settings, issuer=issuer, clock=clock)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="acquirer", daemon=True)
        self._started = threading.Event()
        self._error: OSError | None = None

    @property
    def issuer(self) -> Issuer:
        return self.server.issuer

    @property
    def host(self) -> str:
        return self.server.address[0]

    @property
    def port(self) -> int:
        return self.server.address[1]

    def start(self) -> Self:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            raise TimeoutError("the acquirer server did not start in time")
        if self._error is not None:
            self._thread.join(START_TIMEOUT)
            raise self._error
        return self

    def stop(self, timeout: float = START_TIMEOUT) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            try:
                self._loop.run_until_complete(self.server.start())
            except OSError as exc:  # the port is taken, the address is not ours…
                self._error = exc
                return
            finally:
                self._started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.server.close())
        finally:
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
