"""The acquirer client the vault uses: blocking, thread-safe, with a hard timeout per request.

The vault is a Starlette app whose card operations run in worker threads, so this client blocks.
One `AcquirerClient` is shared by all threads. Messages travel through a `transport.Transport`
(by default `TcpTransport`: a small pool of connections, each used by one request at a time and
closed rather than reused after anything unexpected); tests may inject another.

Matching (issue 4, item 5): a reply must have the expected response MTI, echo the request's STAN
(DE 11) and transmission time (DE 7), and, where present, its RRN (DE 37). Anything else is logged
and discarded, and the client keeps waiting until the deadline. STANs come from a counter per
client (000001–999999, wrapping, starting at a random point so replicas rarely overlap).

Timeouts never double-charge (issue 4, item 6): an authorization that is not answered in time,
whose connection drops, or whose reply is garbage is reversed (`0400`, repeated as `0401`, at most
`reversal_attempts` times). The result is `Declined` with ISO code `68` when the reversal was
acknowledged, or `ReversalPending` when it was not — the caller queues it, shows `processing` and a
janitor calls `reverse(ref)` until it succeeds. If the connection could not even be opened, nothing
was sent: the result is `Declined` `91` with no reversal.

Idempotency: the RRN is derived from the caller's reference (`messages.derive_reference`), so a
retried authorization with the same reference is recognised by the issuer and answered with the
first answer. A reference is spent once its authorization is reversed: use a new one per attempt.
Captures (`0220`/`0221`) and refunds (`0200`, refund reference in DE 48.71) are retried with the
same content on a timeout; the issuer answers repeats with the first answer, so retries are safe.

Worst case, `authorize` returns within `timeout + reversal_attempts × reversal_timeout` plus the
backoff between attempts (`worst_case_seconds`).

Card data: the PAN and CVC arrive as `Secret`s, are revealed only into the `0100`, and are never
logged — log lines carry the last 4 digits (L3, C1). Errors name fields, never values.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Final

from bastionpay.acquirer.codes import APPROVED, TOO_LATE
from bastionpay.acquirer.currencies import UnknownCurrencyCode, to_numeric
from bastionpay.acquirer.framing import DEFAULT_MAX_SIZE, encode_frame
from bastionpay.acquirer.messages import (
    Message,
    MessageError,
    derive_reference,
    encode_message,
    encode_original_data,
    encode_private_data,
    time_fields,
)
from bastionpay.acquirer.results import (
    Approved,
    AuthorizationOutcome,
    AuthorizationRef,
    Declined,
    FollowUpOutcome,
    ReversalOutcome,
    ReversalPending,
    Reversed,
    Unknown,
)
from bastionpay.acquirer.spec import (
    AUTH_REQUEST,
    AUTH_RESPONSE,
    COMPLETION_ADVICE,
    COMPLETION_ADVICE_REPEAT,
    CVC_CHECK,
    FINANCIAL_REQUEST,
    NETWORK_ECHO,
    NETWORK_REQUEST,
    POS_ENTRY_ECOMMERCE,
    PROCESSING_PURCHASE,
    PROCESSING_REFUND,
    RESPONSE_MTI,
    REVERSAL_ADVICE,
    REVERSAL_ADVICE_REPEAT,
    TAG_CRYPTOGRAM,
    TAG_CVC,
    TAG_ECI,
    TAG_REFUND_REFERENCE,
)
from bastionpay.acquirer.transport import Expectation, TcpTransport, Transport, TransportFailure
from bastionpay.kernel.clock import Clock, SystemClock
from bastionpay.kernel.secrets import Secret
from bastionpay.observability.logging import get_logger

log = get_logger("bastionpay.acquirer.client")

ISSUER_UNAVAILABLE: Final = "91"
MAX_AMOUNT: Final = 999_999_999_999  # DE 4 is n 12


class InvalidRequest(ValueError):
    """A request the client refuses to send. The message names the field, never its value."""


@dataclass(frozen=True, slots=True)
class ThreeDSecure:
    """The authentication result that rides in DE 48 (subelements 42 and 43)."""

    eci: str
    cryptogram: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    pan: Secret
    exp_month: int
    exp_year: int
    amount: int
    currency: str
    reference: str  # the caller's idempotency reference for this attempt (1..255 characters)
    cvc: Secret | None = None
    three_d_secure: ThreeDSecure | None = None
    card_acceptor_id: str | None = None  # DE 42; the client's default when None


class StanCounter:
    """System trace audit numbers 000001–999999, wrapping; thread-safe."""

    def __init__(self, start: int | None = None) -> None:
        first = start if start is not None else secrets.randbelow(999_999) + 1
        if not 1 <= first <= 999_999:
            raise ValueError("a STAN is within 1..999999")
        self._next = first
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            value = self._next
            self._next = value % 999_999 + 1
        return f"{value:06d}"


class AcquirerClient:
    """Thread-safe blocking client; see the module docstring for the guarantees."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        card_acceptor_id: str = "BASTIONPAY",
        terminal_id: str = "BPVAULT1",
        timeout: float = 5.0,
        connect_timeout: float | None = None,
        reversal_timeout: float | None = None,
        reversal_attempts: int = 3,
        retry_attempts: int = 3,
        retry_backoff: float = 0.2,
        pool_size: int = 4,
        max_frame_size: int = DEFAULT_MAX_SIZE,
        clock: Clock | None = None,
        stans: StanCounter | None = None,
        transport: Transport | None = None,
    ) -> None:
        if timeout <= 0 or retry_backoff < 0:
            raise ValueError("timeouts must be positive")
        if not 1 <= reversal_attempts <= 20 or not 1 <= retry_attempts <= 20:
            raise ValueError("attempts must be within 1..20")  # bounded, always
        self._acceptor = _padded(card_acceptor_id, 15, "card_acceptor_id")
        self._terminal = _padded(terminal_id, 8, "terminal_id")
        self._timeout = timeout
        self._reversal_timeout = reversal_timeout if reversal_timeout is not None else timeout
        self._reversal_attempts = reversal_attempts
        self._retry_attempts = retry_attempts
        self._retry_backoff = retry_backoff
        self._max_frame_size = max_frame_size
        self._clock = clock or SystemClock()
        self._stans = stans or StanCounter()
        self._transport: Transport = transport or TcpTransport(
            host,
            port,
            connect_timeout=connect_timeout if connect_timeout is not None else timeout,
            pool_size=pool_size,
            max_frame_size=max_frame_size,
        )

    @property
    def worst_case_seconds(self) -> float:
        """The longest `authorize` can take: its timeout, then every reversal attempt."""
        backoff = sum(self._backoff(attempt) for attempt in range(1, self._reversal_attempts))
        return self._timeout + self._reversal_attempts * self._reversal_timeout + backoff

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> AcquirerClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- Authorization ----------------------------------------------------------------------------

    def authorize(self, request: AuthorizationRequest) -> AuthorizationOutcome:
        acceptor = (
            _padded(request.card_acceptor_id, 15, "card_acceptor_id")
            if request.card_acceptor_id is not None
            else self._acceptor
        )
        currency = _currency(request.currency)
        _check_amount(request.amount)
        try:
            rrn = derive_reference("auth", acceptor, request.reference)
        except ValueError:
            raise InvalidRequest("invalid reference") from None
        stan = self._stans.next()
        times = time_fields(self._clock.now())
        ref = AuthorizationRef(
            rrn=rrn,
            stan=stan,
            transmitted=times.transmitted,
            approval_code="",
            amount=request.amount,
            currency=request.currency.lower(),
            card_acceptor_id=acceptor,
            terminal_id=self._terminal,
        )
        message: Message = {
            "t": AUTH_REQUEST,
            "2": request.pan.reveal(),
            "3": PROCESSING_PURCHASE,
            "4": f"{request.amount:012d}",
            "7": times.transmitted,
            "11": stan,
            "12": times.local_time,
            "13": times.local_date,
            "14": _expiry(request.exp_month, request.exp_year),
            "22": POS_ENTRY_ECOMMERCE,
            "37": rrn,
            "41": self._terminal,
            "42": acceptor,
            "49": currency,
        }
        private = _authorization_private_data(request)
        if private:
            message["48"] = private
        last4 = request.pan.reveal()[-4:]
        try:
            payload = self._encode(message)
        finally:
            message.clear()  # the PAN and CVC live no longer than needed (C1)
        try:
            reply = self._transport.exchange(
                payload, Expectation(AUTH_RESPONSE, stan, times.transmitted, rrn), self._timeout
            )
        except TransportFailure as failure:
            if not failure.sent:
                log.warning("acquirer_unreachable", stan=stan, rrn=rrn, last4=last4)
                return Declined.from_iso(ISSUER_UNAVAILABLE, rrn=rrn, stan=stan, fault=failure.kind)
            return self._reverse_unanswered(ref, failure.kind)
        code = reply["39"]
        if code == APPROVED:
            approval_code = reply.get("38")
            if approval_code is None:
                return self._reverse_unanswered(ref, "malformed")
            log.info("acquirer_authorized", stan=stan, rrn=rrn, last4=last4, amount=request.amount)
            return Approved(
                approval_code=approval_code,
                rrn=rrn,
                stan=stan,
                amount=request.amount,
                currency=ref.currency,
                ref=dataclasses.replace(ref, approval_code=approval_code),
                cvc_check=CVC_CHECK.get(reply.get("44", "")),
            )
        log.info("acquirer_declined", stan=stan, rrn=rrn, last4=last4, iso_code=code)
        return Declined.from_iso(code, rrn=rrn, stan=stan)

    def _reverse_unanswered(self, ref: AuthorizationRef, fault: str) -> AuthorizationOutcome:
        log.warning("acquirer_no_answer", stan=ref.stan, rrn=ref.rrn, fault=fault)
        outcome = self.reverse(ref)
        if isinstance(outcome, Reversed):
            return Declined.from_iso(
                TOO_LATE, rrn=ref.rrn, stan=ref.stan, reversed=True, fault=fault
            )
        if isinstance(outcome, Declined):
            # The issuer refused the reversal: money may be held. Only a person or the janitor's
            # escalation can resolve that; never report it as a clean failure (P3).
            log.error("acquirer_reversal_refused", rrn=ref.rrn, iso_code=outcome.iso_code)
            return ReversalPending(ref=ref, fault=f"reversal_refused_{outcome.iso_code}")
        return ReversalPending(ref=ref, fault=outcome.fault)

    # --- Reversal, capture, refund ----------------------------------------------------------------

    def reverse(self, ref: AuthorizationRef) -> ReversalOutcome:
        """Reverse (void) an authorization; for the janitor too. Idempotent at the issuer."""
        stan = self._stans.next()
        times = time_fields(self._clock.now())
        message = self._follow_up(REVERSAL_ADVICE, ref, ref.amount, stan, times.transmitted)
        message["12"], message["13"] = times.local_time, times.local_date
        fault = "timeout"
        for attempt in range(self._reversal_attempts):
            if attempt:
                message["t"] = REVERSAL_ADVICE_REPEAT
                time.sleep(self._backoff(attempt))
            try:
                reply = self._exchange(message, self._reversal_timeout)
            except TransportFailure as failure:
                fault = failure.kind
                log.warning("acquirer_reversal_unanswered", rrn=ref.rrn, attempt=attempt + 1)
                continue
            if reply["39"] == APPROVED:
                log.info("acquirer_reversed", rrn=ref.rrn, stan=stan)
                return Reversed(rrn=ref.rrn, stan=stan)
            return Declined.from_iso(reply["39"], rrn=ref.rrn, stan=stan)
        log.error("acquirer_reversal_pending", rrn=ref.rrn, fault=fault)
        return ReversalPending(ref=ref, fault=fault)

    def void(self, ref: AuthorizationRef) -> ReversalOutcome:
        """Cancel an uncaptured authorization: a reversal, like a timeout's."""
        return self.reverse(ref)

    def capture(self, ref: AuthorizationRef, amount: int) -> FollowUpOutcome:
        """Complete an authorization for `amount` ≤ the authorized amount (once; the rest is
        released). Repeats (`0221`) on a timeout are answered with the first answer."""
        _check_amount(amount)
        stan = self._stans.next()
        times = time_fields(self._clock.now())
        message = self._follow_up(COMPLETION_ADVICE, ref, amount, stan, times.transmitted)
        message["12"], message["13"] = times.local_time, times.local_date
        return self._retrying(message, ref, amount, repeat_mti=COMPLETION_ADVICE_REPEAT)

    def refund(self, ref: AuthorizationRef, amount: int, *, reference: str) -> FollowUpOutcome:
        """Refund part or all of a captured authorization. `reference` identifies this refund:
        a retry with the same reference is answered with the first answer, never paid twice."""
        _check_amount(amount)
        try:
            refund_reference = derive_reference("refund", ref.card_acceptor_id, reference)
        except ValueError:
            raise InvalidRequest("invalid reference") from None
        stan = self._stans.next()
        times = time_fields(self._clock.now())
        message = self._follow_up(FINANCIAL_REQUEST, ref, amount, stan, times.transmitted)
        message["3"] = PROCESSING_REFUND
        message["12"], message["13"] = times.local_time, times.local_date
        message["48"] = encode_private_data({TAG_REFUND_REFERENCE: refund_reference})
        return self._retrying(message, ref, amount, repeat_mti=FINANCIAL_REQUEST)

    def echo(self) -> bool:
        """A network management echo test (`0800`/`301`): is the host there and answering?"""
        times = time_fields(self._clock.now())
        message = {"t": NETWORK_REQUEST, "7": times.transmitted, "11": self._stans.next()}
        message["70"] = NETWORK_ECHO
        try:
            return self._exchange(message, self._timeout)["39"] == APPROVED
        except TransportFailure:
            return False

    def _follow_up(
        self, mti: str, ref: AuthorizationRef, amount: int, stan: str, transmitted: str
    ) -> Message:
        message: Message = {
            "t": mti,
            "3": PROCESSING_PURCHASE,
            "4": f"{amount:012d}",
            "7": transmitted,
            "11": stan,
            "37": ref.rrn,
            "41": ref.terminal_id,
            "42": ref.card_acceptor_id,
            "49": _currency(ref.currency),
            "90": encode_original_data(AUTH_REQUEST, ref.stan, ref.transmitted),
        }
        if ref.approval_code:
            message["38"] = ref.approval_code
        return message

    def _retrying(
        self, message: Message, ref: AuthorizationRef, amount: int, *, repeat_mti: str
    ) -> FollowUpOutcome:
        fault = "timeout"
        for attempt in range(self._retry_attempts):
            if attempt:
                message["t"] = repeat_mti
                time.sleep(self._backoff(attempt))
            try:
                reply = self._exchange(message, self._timeout)
            except TransportFailure as failure:
                fault = failure.kind
                log.warning("acquirer_follow_up_unanswered", rrn=ref.rrn, attempt=attempt + 1)
                continue
            code, stan = reply["39"], message["11"]
            if code != APPROVED:
                log.info("acquirer_follow_up_declined", rrn=ref.rrn, iso_code=code)
                return Declined.from_iso(code, rrn=ref.rrn, stan=stan)
            return Approved(
                approval_code=reply.get("38") or ref.approval_code,
                rrn=ref.rrn,
                stan=stan,
                amount=amount,
                currency=ref.currency,
                ref=ref,
            )
        log.error("acquirer_follow_up_unknown", rrn=ref.rrn, fault=fault)
        return Unknown(rrn=ref.rrn, fault=fault)

    def _backoff(self, attempt: int) -> float:
        return float(min(self._retry_backoff * 2 ** (attempt - 1), 5.0))

    # --- Exchange ---------------------------------------------------------------------------------

    def _encode(self, message: Message) -> bytes:
        try:
            return encode_frame(encode_message(message), max_size=self._max_frame_size)
        except MessageError as exc:
            raise InvalidRequest(str(exc)) from None

    def _exchange(self, message: Message, timeout: float) -> Message:
        expect = Expectation(
            RESPONSE_MTI[message["t"]], message["11"], message["7"], message.get("37")
        )
        return self._transport.exchange(self._encode(message), expect, timeout)


def _padded(value: str, length: int, name: str) -> str:
    if not 0 < len(value) <= length or not value.isascii() or not value.isprintable():
        raise InvalidRequest(f"{name} must be 1..{length} printable ASCII characters")
    return value.ljust(length)


def _currency(alpha: str) -> str:
    try:
        return to_numeric(alpha)
    except UnknownCurrencyCode:
        raise InvalidRequest("unknown currency") from None


def _check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidRequest(f"amount must be an integer within 1..{MAX_AMOUNT} minor units")


def _expiry(month: int, year: int) -> str:
    if not 1 <= month <= 12 or not 2000 <= year <= 2099:
        raise InvalidRequest("invalid expiry date")
    return f"{year % 100:02d}{month:02d}"


def _authorization_private_data(request: AuthorizationRequest) -> str | None:
    items: dict[str, str] = {}
    if request.cvc is not None:
        items[TAG_CVC] = request.cvc.reveal()  # DE 48.92, in this message only (C1)
    if request.three_d_secure is not None:
        items[TAG_ECI] = request.three_d_secure.eci
        items[TAG_CRYPTOGRAM] = request.three_d_secure.cryptogram
    if not items:
        return None
    try:
        return encode_private_data(items)
    except MessageError as exc:
        raise InvalidRequest(str(exc)) from None
