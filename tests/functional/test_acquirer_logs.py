"""No card number and no CVC in any log line of a whole acquirer run (L3, C1, C5).

The scan looks at two things: every event *as the code emitted it* — before the redacting
pipeline, so a PAN that redaction would mask still fails the test — and every rendered JSON line.
The run covers approvals, declines, 3-D Secure, capture, refund, void, duplicates, every kind of
fault with its reversal, a pending reversal, protocol errors and refused requests.
"""

from __future__ import annotations

import io
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.typing import EventDict, WrappedLogger

from bastionpay.acquirer.background import BackgroundAcquirer
from bastionpay.acquirer.client import (
    AcquirerClient,
    AuthorizationRequest,
    InvalidRequest,
    ThreeDSecure,
)
from bastionpay.acquirer.framing import encode_frame
from bastionpay.acquirer.results import Approved, ReversalPending
from bastionpay.acquirer.settings import AcquirerSettings
from bastionpay.kernel.pan import find_pans
from bastionpay.kernel.secrets import Secret
from bastionpay.observability.logging import ROUTED_LOGGERS, configure_logging

VISA_CVC = "672"
AMEX_CVC = "8317"
CRYPTOGRAM = "AQVINFYSNFZ4kBI0VgAAAAAAAAA="
PANS = [
    "4242424242424242",
    "378282246310005",
    "4000000000000127",
    "4000000000009995",
    "4000002760003184",
    "4000009900000111",
    "4000009900000210",
    "4000009900000319",
    "4000009900000418",
    "4000009900000442",
]
_CVC = re.compile(rf"(?<![0-9A-Za-z])(?:{VISA_CVC}|{AMEX_CVC})(?![0-9A-Za-z])")


class _RawRecords(logging.Handler):
    """Standard-library records as emitted (asyncio's own errors would land here)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{record.getMessage()} {record.args!r} {record.exc_text or ''}")


@pytest.fixture
def captured() -> Iterator[tuple[list[EventDict], _RawRecords, io.StringIO]]:
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_routed = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in ROUTED_LOGGERS
    }
    stream = io.StringIO()
    configure_logging(level=logging.DEBUG, stream=stream)
    raw_events: list[EventDict] = []

    def keep_raw(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        raw_events.append(dict(event_dict))
        return event_dict

    structlog.configure(processors=[keep_raw, *structlog.get_config()["processors"]])
    raw_records = _RawRecords()
    root.addHandler(raw_records)
    yield raw_events, raw_records, stream
    root.handlers[:] = saved_root[0]
    root.setLevel(saved_root[1])
    for name, (handlers, propagate) in saved_routed.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate
    structlog.reset_defaults()


def _request(pan: str, reference: str, **extra: Any) -> AuthorizationRequest:
    cvc = AMEX_CVC if pan.startswith("37") else VISA_CVC
    return AuthorizationRequest(
        pan=Secret(pan),
        exp_month=12,
        exp_year=2030,
        amount=2000,
        currency="usd",
        reference=reference,
        cvc=Secret(cvc),
        **extra,
    )


def _whole_run() -> list[str]:
    """Drive every path; returns the text of the errors raised to the caller."""
    errors: list[str] = []
    with (
        BackgroundAcquirer(AcquirerSettings(port=0, slow_ms=700)) as server,
        AcquirerClient(
            server.host, server.port, timeout=0.5, reversal_timeout=0.5, retry_backoff=0.01
        ) as client,
    ):
        for index, pan in enumerate(PANS):
            outcome = client.authorize(_request(pan, f"pi_log:{index}"))
            if isinstance(outcome, Approved) and index == 0:
                client.authorize(_request(pan, f"pi_log:{index}"))  # a duplicate
                client.capture(outcome.ref, 1500)
                client.refund(outcome.ref, 500, reference="re_log")
                client.refund(outcome.ref, 5000, reference="re_log_2")  # declined
            elif isinstance(outcome, Approved):
                client.void(outcome.ref)
        authenticated = ThreeDSecure(eci="05", cryptogram=CRYPTOGRAM)
        client.authorize(_request("4000002760003184", "pi_log:3ds", three_d_secure=authenticated))
        for bad in ("424242424242424299999", "4242 4242 4242 4242"):
            try:
                client.authorize(
                    AuthorizationRequest(
                        pan=Secret(bad),
                        exp_month=1,
                        exp_year=2030,
                        amount=1,
                        currency="usd",
                        reference="pi_log:bad",
                    )
                )
            except InvalidRequest as exc:
                errors.append(repr(exc))
        with socket.create_connection((server.host, server.port), timeout=2) as raw:
            raw.sendall(encode_frame(b"0100" + b"F" * 16 + b"164242424242424242"))
            raw.recv(100)  # the host closes the connection on an undecodable message
        time.sleep(0.3)  # let the slow answer go out (to a closed connection)
        # A reversal that cannot be delivered: the host stops while an answer is awaited.
        pending: list[object] = []
        slow_client = AcquirerClient(
            server.host, server.port, timeout=5.0, reversal_timeout=0.2, reversal_attempts=1
        )
        worker = threading.Thread(
            target=lambda: pending.append(
                slow_client.authorize(_request("4000009900000210", "pi_log:pending"))
            )
        )
        worker.start()
        deadline = time.monotonic() + 5
        while len(server.issuer.authorizations()) < len(PANS) + 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.stop()
        worker.join(10)
        slow_client.close()
        assert isinstance(pending[0], ReversalPending)
    return errors


def test_no_card_number_or_cvc_in_any_log_line(
    captured: tuple[list[EventDict], _RawRecords, io.StringIO],
) -> None:
    raw_events, raw_records, stream = captured
    errors = _whole_run()

    assert len(errors) == 2
    events = {event.get("event") for event in raw_events}
    assert {
        "acquirer_listening",
        "acquirer_request",
        "acquirer_authorized",
        "acquirer_declined",
        "acquirer_reply_discarded",
        "acquirer_no_answer",
        "acquirer_reversed",
        "acquirer_reversal_pending",
        "acquirer_message_rejected",
    } <= events
    lines = stream.getvalue().splitlines()
    assert len(lines) >= len(raw_events) > 40
    texts = [repr(event) for event in raw_events] + raw_records.texts + lines + errors
    for text in texts:
        assert find_pans(text) == [], text
        assert not _CVC.search(text), text
        assert CRYPTOGRAM not in text
    for event in raw_events:
        assert not {"pan", "cvc", "card_number", "number"} & set(event)
    assert any(event.get("last4") == "4242" for event in raw_events)  # what is logged instead
