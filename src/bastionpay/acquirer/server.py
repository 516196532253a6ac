"""The acquirer host: an asyncio TCP server speaking ISO 8583 with 2-byte length framing.

Concurrency: many connections (up to `max_connections`; more are closed on accept), and many
requests in flight on each connection (up to `max_in_flight`; past that the connection is not read
until one finishes). Each request is its own task, so a slow answer never holds up the next
request: responses can come back in another order than the requests, and peers match them by STAN.

A request whose connection closes is still processed to the end — the issuer has received it, as a
real one would; only the answer is lost. That is how a slow or late `0100` can hold money until the
client's reversal undoes it.

Protocol errors: a framing error or an undecodable message closes the connection (the stream can
no longer be trusted to be aligned on messages); a decodable request with an invalid field is
answered `30` (format error) when its STAN and transmission time can be echoed, and closes the
connection otherwise.

Nothing logged carries a card number or CVC: requests are logged by MTI, STAN, RRN, amount, the
card's last 4 and the answer (L3, C1).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from bastionpay.acquirer import testcards
from bastionpay.acquirer.codes import FORMAT_ERROR
from bastionpay.acquirer.currencies import ALPHA_BY_NUMERIC
from bastionpay.acquirer.faults import Fault
from bastionpay.acquirer.framing import FramingError, encode_frame, read_frame
from bastionpay.acquirer.issuer import (
    INVALID_AMOUNT,
    NOT_ALLOWED,
    Answer,
    AuthorizationInput,
    Issuer,
)
from bastionpay.acquirer.messages import (
    Message,
    MessageError,
    decode_message,
    decode_private_data,
    decode_raw,
    encode_message,
)
from bastionpay.acquirer.settings import AcquirerSettings
from bastionpay.acquirer.spec import (
    AUTH_REQUEST,
    AUTH_RESPONSE,
    COMPLETION_ADVICE,
    COMPLETION_ADVICE_REPEAT,
    FINANCIAL_REQUEST,
    NETWORK_ECHO,
    NETWORK_REQUEST,
    OPTIONAL_FIELDS,
    PROCESSING_PURCHASE,
    PROCESSING_REFUND,
    REQUIRED_FIELDS,
    RESPONSE_MTI,
    REVERSAL_ADVICE,
    REVERSAL_ADVICE_REPEAT,
    REVERSAL_RESPONSE,
    TAG_CRYPTOGRAM,
    TAG_CVC,
    TAG_ECI,
    TAG_REFUND_REFERENCE,
)
from bastionpay.kernel.clock import Clock
from bastionpay.observability.logging import get_logger

log = get_logger("bastionpay.acquirer.server")

_HANDLER_GRACE: Final = 2.0  # seconds for connection handlers to notice their closed transport
GARBAGE_PAYLOAD: Final = b"\x00\xffTHIS IS NOT AN ISO 8583 MESSAGE\xfe"
_ECHO: Final[dict[str, tuple[str, ...]]] = {
    AUTH_REQUEST: ("3", "4", "7", "11", "12", "13", "37", "41", "42", "49"),
    FINANCIAL_REQUEST: ("3", "4", "7", "11", "12", "13", "37", "41", "42", "49"),
    COMPLETION_ADVICE: ("4", "7", "11", "37", "41", "42", "49"),
    COMPLETION_ADVICE_REPEAT: ("4", "7", "11", "37", "41", "42", "49"),
    REVERSAL_ADVICE: ("4", "7", "11", "37", "41", "42", "49"),
    REVERSAL_ADVICE_REPEAT: ("4", "7", "11", "37", "41", "42", "49"),
    NETWORK_REQUEST: ("7", "11", "70"),
}


_FIRST_OF_REPEAT: Final = {
    COMPLETION_ADVICE_REPEAT: COMPLETION_ADVICE,
    REVERSAL_ADVICE_REPEAT: REVERSAL_ADVICE,
}


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    slots: asyncio.Semaphore
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def closing(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


class AcquirerServer:
    """One listening socket and its connections. `start()`, then `close()`."""

    def __init__(
        self,
        settings: AcquirerSettings,
        *,
        issuer: Issuer | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.issuer = issuer if issuer is not None else Issuer(clock=clock)
        # Fault injection draws, not security: a seeded generator makes a run repeatable.
        self._random = random.Random(settings.seed)  # noqa: S311
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # requests in progress
        self._handlers: set[asyncio.Task[Any]] = set()  # one per connection
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the acquirer server is not started")
        return self._address

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._accept, self.settings.host, self.settings.port
        )
        sockname = self._server.sockets[0].getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))
        log.info("acquirer_listening", host=self._address[0], port=self._address[1])
        return self._address

    async def close(self) -> None:
        """Stop listening, close every connection and cancel requests still in progress."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
        requests = list(self._tasks)
        for task in requests:
            task.cancel()
        await asyncio.gather(*requests, return_exceptions=True)
        # Closed transports feed EOF to their readers, so the handlers end on their own; they are
        # not cancelled (asyncio logs a cancelled connection handler as an error).
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=_HANDLER_GRACE)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        log.info("acquirer_stopped")

    # --- Connections ------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.settings.max_connections:
            log.warning("acquirer_connection_refused", reason="max_connections")
            writer.close()
            return
        connection = _Connection(reader, writer, asyncio.Semaphore(self.settings.max_in_flight))
        self._connections.add(connection)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        try:
            await self._read_loop(connection)
        finally:
            self._connections.discard(connection)
            connection.close()
            if handler is not None:
                self._handlers.discard(handler)

    async def _read_loop(self, connection: _Connection) -> None:
        settings = self.settings
        while not connection.closing:
            try:
                frame = await read_frame(
                    connection.reader,
                    max_size=settings.max_frame_size,
                    idle_timeout=settings.idle_timeout,
                    body_timeout=settings.frame_timeout,
                )
            except FramingError as exc:
                log.warning("acquirer_frame_rejected", reason=type(exc).__name__)
                return
            except TimeoutError:
                log.info("acquirer_connection_idle")
                return
            except ConnectionError:
                return
            if frame is None:
                return
            await connection.slots.acquire()
            task = asyncio.create_task(self._request(connection, frame))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _request(self, connection: _Connection, frame: bytes) -> None:
        try:
            await self._handle(connection, frame)
        except Exception as exc:  # noqa: BLE001 - one broken request must not stop the host
            # Logged by type only: the exception's text or traceback could quote message fields,
            # and the message holds a card number (L3). The connection is closed: fail closed.
            log.error("acquirer_request_failed", reason=type(exc).__name__)  # noqa: TRY400
            connection.close()
        finally:
            connection.slots.release()

    # --- Requests ---------------------------------------------------------------------------------

    async def _handle(self, connection: _Connection, frame: bytes) -> None:
        try:
            message = decode_message(frame)
        except MessageError as exc:
            await self._reject(connection, frame, exc)
            return
        mti = message["t"]
        if mti not in RESPONSE_MTI:
            log.warning("acquirer_message_rejected", mti=mti, problem="not a request")
            connection.close()
            return
        fault, delay_ms = self._plan(message)
        if fault is Fault.LATE:
            await asyncio.sleep(self.settings.slow_ms / 1000)
        reply = self._process(message)
        log.info(
            "acquirer_request",
            mti=mti,
            stan=message["11"],
            rrn=message.get("37"),
            amount=int(message.get("4", "0")),
            last4=message["2"][-4:] if "2" in message else None,
            response_code=reply["39"],
            fault=str(fault) if fault else None,
        )
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        await self._deliver(connection, reply, fault)

    def _plan(self, message: Message) -> tuple[Fault | None, int]:
        mti = message["t"]
        # A repeat (0221, 0401) follows its first message's rule unless it has one of its own.
        rule = self.settings.faults.get(mti) or self.settings.faults.get(
            _FIRST_OF_REPEAT.get(mti, "")
        )
        fault = testcards.FAULT_CARDS.get(message["2"]) if mti == AUTH_REQUEST else None
        if (
            fault is None
            and rule is not None
            and rule.action is not None
            and self._random.random() < rule.probability
        ):
            fault = rule.action
        return fault, rule.delay_ms if rule is not None else 0

    async def _reject(self, connection: _Connection, frame: bytes, error: MessageError) -> None:
        log.warning("acquirer_message_rejected", field=error.field, problem=error.problem)
        try:
            raw = decode_raw(frame)
        except MessageError:
            connection.close()
            return
        mti = raw.get("t", "")
        stan, transmitted = raw.get("11", ""), raw.get("7", "")
        if mti not in RESPONSE_MTI or not _digits(stan, 6) or not _digits(transmitted, 10):
            connection.close()
            return
        reply = {"t": RESPONSE_MTI[mti], "7": transmitted, "11": stan, "39": FORMAT_ERROR}
        await self._write(connection, reply)

    # --- Issuer dispatch --------------------------------------------------------------------------

    def _process(self, message: Message) -> Message:
        mti = message["t"]
        reply: Message = {key: message[key] for key in _ECHO[mti] if key in message}
        reply["t"] = RESPONSE_MTI[mti]
        if mti == NETWORK_REQUEST:
            reply["39"] = "00" if message["70"] == NETWORK_ECHO else NOT_ALLOWED
            return reply
        if message["49"] not in ALPHA_BY_NUMERIC:
            reply["39"] = FORMAT_ERROR
            return reply
        answer = self._answer(mti, message)
        reply["39"] = answer.response_code
        if answer.approval_code is not None and mti not in {
            REVERSAL_ADVICE,
            REVERSAL_ADVICE_REPEAT,
        }:
            reply["38"] = answer.approval_code
        if mti == AUTH_REQUEST and answer.cvc_result is not None:
            reply["44"] = answer.cvc_result
        return reply

    def _answer(self, mti: str, message: Message) -> Answer:
        issuer = self.issuer
        acceptor, rrn = message["42"], message["37"]
        amount, currency = int(message["4"]), message["49"]
        if mti == AUTH_REQUEST:
            if message["3"] != PROCESSING_PURCHASE:
                return Answer(NOT_ALLOWED)
            if amount == 0:
                return Answer(INVALID_AMOUNT)  # account verification is not simulated
            private = decode_private_data(message["48"]) if "48" in message else {}
            return issuer.authorize(
                AuthorizationInput(
                    card_acceptor_id=acceptor,
                    rrn=rrn,
                    stan=message["11"],
                    amount=amount,
                    currency=currency,
                    expiry=message["14"],
                    pan=message["2"],
                    cvc=private.get(TAG_CVC),
                    eci=private.get(TAG_ECI),
                    cryptogram=private.get(TAG_CRYPTOGRAM),
                )
            )
        if mti in {COMPLETION_ADVICE, COMPLETION_ADVICE_REPEAT}:
            if message["3"] != PROCESSING_PURCHASE:
                return Answer(NOT_ALLOWED)
            return issuer.complete(
                acceptor, rrn, amount=amount, currency=currency, approval_code=message.get("38")
            )
        if mti in {REVERSAL_ADVICE, REVERSAL_ADVICE_REPEAT}:
            return issuer.reverse(acceptor, rrn, amount=amount, currency=currency)
        # FINANCIAL_REQUEST: refunds only.
        reference = decode_private_data(message["48"]).get(TAG_REFUND_REFERENCE)
        if message["3"] != PROCESSING_REFUND or reference is None:
            return Answer(NOT_ALLOWED)
        return issuer.refund(acceptor, rrn, reference=reference, amount=amount, currency=currency)

    # --- Answers (and the faults that replace them) -----------------------------------------------

    async def _deliver(self, connection: _Connection, reply: Message, fault: Fault | None) -> None:
        if fault is Fault.SLOW:
            await asyncio.sleep(self.settings.slow_ms / 1000)
        elif fault is Fault.NO_ANSWER:
            return
        elif fault is Fault.DROP:
            connection.writer.transport.abort()
            return
        elif fault is Fault.GARBAGE:
            await self._write_frame(connection, GARBAGE_PAYLOAD)
            return
        elif fault is Fault.WRONG_MTI:
            await self._write(connection, _as_other_type(reply))
            return
        elif fault in {Fault.WRONG_STAN, Fault.STRAY}:
            await self._write(connection, {**reply, "11": _other_stan(reply["11"])})
            if fault is Fault.WRONG_STAN:
                return
        await self._write(connection, reply)

    async def _write(self, connection: _Connection, reply: Message) -> None:
        await self._write_frame(connection, encode_message(reply))

    async def _write_frame(self, connection: _Connection, payload: bytes) -> None:
        async with connection.write_lock:
            if connection.closing:
                log.info("acquirer_reply_undeliverable", reason="connection closed")
                return
            try:
                connection.writer.write(
                    encode_frame(payload, max_size=self.settings.max_frame_size)
                )
                await connection.writer.drain()
            except ConnectionError as exc:
                log.info("acquirer_reply_undeliverable", reason=type(exc).__name__)
                connection.close()


def _digits(value: str, length: int) -> bool:
    return len(value) == length and value.isascii() and value.isdigit()


def _other_stan(stan: str) -> str:
    return f"{(int(stan) + 1) % 1_000_000:06d}"


def _as_other_type(reply: Message) -> Message:
    """The reply re-labelled as a valid message of an unrelated type (same STAN and time)."""
    other = REVERSAL_RESPONSE if reply["t"] != REVERSAL_RESPONSE else AUTH_RESPONSE
    allowed = REQUIRED_FIELDS[other] | OPTIONAL_FIELDS[other]
    return {"t": other, **{key: value for key, value in reply.items() if key in allowed}}


async def serve(
    settings: AcquirerSettings,
    *,
    issuer: Issuer | None = None,
    ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a server until `stop` is set (or forever); `ready(host, port)` once it listens."""
    server = AcquirerServer(settings, issuer=issuer)
    host, port = await server.start()
    try:
        if ready is not None:
            ready(host, port)
        await (stop or asyncio.Event()).wait()
    finally:
        await server.close()
