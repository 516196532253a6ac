"""Timeouts never double-charge (issue 4, item 6): every fault, over real TCP on 127.0.0.1.

Each test asserts on the issuer's state — what the card network believes is held or charged —
not only on what the client returned.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import structlog

from bastionpay.acquirer.background import BackgroundAcquirer
from bastionpay.acquirer.client import AcquirerClient, AuthorizationRequest
from bastionpay.acquirer.faults import Fault, MessageFault
from bastionpay.acquirer.issuer import Answer, AuthorizationInput, AuthorizationView, Issuer
from bastionpay.acquirer.results import (
    Approved,
    AuthorizationOutcome,
    Declined,
    ReversalPending,
    Reversed,
    Unknown,
)
from bastionpay.acquirer.settings import AcquirerSettings
from bastionpay.kernel.secrets import Secret

VISA = "4242424242424242"
SLOW = "4000009900000111"
LATE = "4000009900000129"
NO_ANSWER = "4000009900000210"
DROP = "4000009900000319"
GARBAGE = "4000009900000418"
WRONG_MTI = "4000009900000426"
WRONG_STAN = "4000009900000434"
STRAY = "4000009900000442"
ACCEPTOR = "BASTIONPAY     "
TIMEOUT = 0.5  # short for the tests, yet far above a loaded machine's answer time
SLOW_MS = 1200


def _client(server: BackgroundAcquirer, **options: float | int) -> AcquirerClient:
    settings: dict[str, float | int] = {
        "timeout": TIMEOUT,
        "reversal_timeout": 0.5,
        "reversal_attempts": 2,
        "retry_attempts": 2,
        "retry_backoff": 0.01,
    }
    settings.update(options)
    return AcquirerClient(server.host, server.port, **settings)  # type: ignore[arg-type]


@pytest.fixture
def acquirer() -> Iterator[BackgroundAcquirer]:
    with BackgroundAcquirer(AcquirerSettings(port=0, slow_ms=SLOW_MS)) as server:
        yield server


@pytest.fixture
def client(acquirer: BackgroundAcquirer) -> Iterator[AcquirerClient]:
    with _client(acquirer) as client:
        yield client


def _request(pan: str, reference: str = "pi_f:1", amount: int = 2000) -> AuthorizationRequest:
    return AuthorizationRequest(
        pan=Secret(pan),
        exp_month=12,
        exp_year=2030,
        amount=amount,
        currency="usd",
        reference=reference,
        cvc=Secret("123"),
    )


def _view(issuer: Issuer, rrn: str) -> AuthorizationView:
    view = issuer.authorization(ACCEPTOR, rrn)
    assert view is not None
    return view


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _assert_reversed_cleanly(outcome: AuthorizationOutcome, fault: str) -> Declined:
    assert isinstance(outcome, Declined), outcome
    assert (outcome.iso_code, outcome.reversed, outcome.fault) == ("68", True, fault)
    assert (outcome.code, outcome.decline_code) == ("processing_error", "try_again_later")
    return outcome


def test_a_slow_answer_is_reversed_and_the_late_answer_discarded(
    acquirer: BackgroundAcquirer, client: AcquirerClient
) -> None:
    started = time.monotonic()
    outcome = _assert_reversed_cleanly(client.authorize(_request(SLOW)), "timeout")
    assert time.monotonic() - started < SLOW_MS / 1000  # the hard timeout, not the host's pace
    view = _view(acquirer.issuer, outcome.rrn)
    assert (view.approved, view.reversed, view.held) == (True, True, 0)
    time.sleep(SLOW_MS / 1000 + 0.1)  # the late 0110 has now been sent (to a closed connection)
    nxt = client.authorize(_request(VISA, "pi_f:2"))
    assert isinstance(nxt, Approved)
    assert nxt.rrn != outcome.rrn  # its own answer, never the late one
    assert _view(acquirer.issuer, outcome.rrn).held == 0


def test_a_reversal_that_overtakes_its_authorization_declines_the_late_original(
    acquirer: BackgroundAcquirer, client: AcquirerClient
) -> None:
    outcome = _assert_reversed_cleanly(client.authorize(_request(LATE)), "timeout")
    assert acquirer.issuer.reversed_before_seen(ACCEPTOR, outcome.rrn)
    _eventually(lambda: acquirer.issuer.authorization(ACCEPTOR, outcome.rrn) is not None)
    view = _view(acquirer.issuer, outcome.rrn)
    assert (view.late, view.reversed, view.response_code, view.held) == (True, True, "12", 0)


@pytest.mark.parametrize(
    ("pan", "fault"),
    [
        (NO_ANSWER, "timeout"),
        (DROP, "connection"),
        (GARBAGE, "malformed"),
        (WRONG_MTI, "timeout"),  # discarded as a mismatch, then the deadline passes
        (WRONG_STAN, "timeout"),
    ],
)
def test_each_fault_is_reversed_and_nothing_stays_held(
    acquirer: BackgroundAcquirer, client: AcquirerClient, pan: str, fault: str
) -> None:
    outcome = _assert_reversed_cleanly(client.authorize(_request(pan)), fault)
    view = _view(acquirer.issuer, outcome.rrn)
    assert (view.approved, view.reversed, view.held, view.charged) == (True, True, 0, 0)


def test_a_stray_reply_is_discarded_and_the_right_one_accepted(
    acquirer: BackgroundAcquirer,
) -> None:
    with _client(acquirer, timeout=3.0) as patient:
        outcome = patient.authorize(_request(STRAY))
    assert isinstance(outcome, Approved)
    assert _view(acquirer.issuer, outcome.rrn).held == 2000


def test_an_unreachable_host_declines_without_a_reversal() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    with AcquirerClient("127.0.0.1", port, timeout=TIMEOUT) as client:
        outcome = client.authorize(_request(VISA))
    assert isinstance(outcome, Declined)
    assert (outcome.iso_code, outcome.fault, outcome.reversed) == ("91", "unreachable", False)


def test_when_the_reversal_fails_too_it_is_pending_until_the_janitor_retries() -> None:
    issuer = Issuer()
    first = BackgroundAcquirer(AcquirerSettings(port=0), issuer=issuer).start()
    port = first.port
    client = _client(first, timeout=10.0, reversal_timeout=0.3)
    outcomes: list[AuthorizationOutcome] = []
    worker = threading.Thread(target=lambda: outcomes.append(client.authorize(_request(NO_ANSWER))))
    try:
        worker.start()
        _eventually(lambda: bool(issuer.authorizations()))  # the issuer has processed the 0100
        first.stop()  # the host goes down: the connection drops and the reversal cannot connect
        worker.join(10)
        (outcome,) = outcomes
        assert isinstance(outcome, ReversalPending)
        assert outcome.fault == "unreachable"
        assert outcome.ref.approval_code == ""
        view = _view(issuer, outcome.ref.rrn)
        assert view.held == 2000  # money is held: this is why the janitor must not give up

        assert isinstance(client.reverse(outcome.ref), ReversalPending)  # still down

        queued = type(outcome.ref).from_dict(outcome.ref.to_dict())  # through the queue
        with BackgroundAcquirer(AcquirerSettings(port=port), issuer=issuer):
            assert isinstance(client.reverse(queued), Reversed)
        view = _view(issuer, outcome.ref.rrn)
        assert (view.reversed, view.held, view.charged) == (True, 0, 0)
    finally:
        first.stop()
        client.close()


def test_an_unanswered_reversal_is_repeated_and_a_later_retry_is_harmless() -> None:
    settings = AcquirerSettings(port=0, faults={"0400": MessageFault(Fault.NO_ANSWER)})
    # Both 0401 repeats reach the issuer but are never answered: the client cannot know.
    with BackgroundAcquirer(settings) as server, _client(server) as client:
        outcome = client.authorize(_request(DROP))
        assert isinstance(outcome, ReversalPending)
        assert outcome.fault == "timeout"
        view = _view(server.issuer, outcome.ref.rrn)
        assert (view.reversed, view.held) == (True, 0)
    with (
        BackgroundAcquirer(AcquirerSettings(port=0), issuer=server.issuer) as healthy,
        _client(healthy) as janitor,
    ):
        assert isinstance(janitor.reverse(outcome.ref), Reversed)  # idempotent
    assert _view(server.issuer, outcome.ref.rrn).held == 0


def test_unanswered_captures_and_refunds_are_retried_without_double_counting() -> None:
    faulty = AcquirerSettings(
        port=0,
        faults={"0220": MessageFault(Fault.NO_ANSWER), "0200": MessageFault(Fault.DROP)},
    )
    with BackgroundAcquirer(faulty) as server, _client(server) as client:
        approved = client.authorize(_request(VISA))
        assert isinstance(approved, Approved)
        captured = client.capture(approved.ref, 1500)
        assert isinstance(captured, Unknown)  # 0220 and 0221 both went unanswered
        refunded = client.refund(approved.ref, 500, reference="re_1")
        assert isinstance(refunded, Unknown)
        view = _view(server.issuer, approved.rrn)
        assert (view.captured, view.refunded) == (1500, 500)  # each applied once
    with (
        BackgroundAcquirer(AcquirerSettings(port=0), issuer=server.issuer) as healthy,
        _client(healthy) as retry,
    ):
        assert isinstance(retry.capture(approved.ref, 1500), Approved)
        assert isinstance(retry.refund(approved.ref, 500, reference="re_1"), Approved)
    view = _view(server.issuer, approved.rrn)
    assert (view.captured, view.refunded, view.charged) == (1500, 500, 1000)


def _random_run(seed: int) -> list[bool]:
    settings = AcquirerSettings(
        port=0, seed=seed, faults={"0100": MessageFault(Fault.DROP, probability=0.5, delay_ms=5)}
    )
    # Dropped connections fail fast: the generous timeout only keeps approvals from timing out.
    with BackgroundAcquirer(settings) as server, _client(server, timeout=3.0) as client:
        outcomes = [
            client.authorize(_request(VISA, f"pi_r:{index}", amount=100 + index))
            for index in range(12)
        ]
        for outcome in outcomes:
            if isinstance(outcome, Approved):
                assert _view(server.issuer, outcome.rrn).held == outcome.amount
            else:
                assert isinstance(outcome, Declined)
                assert outcome.reversed
                assert _view(server.issuer, outcome.rrn).held == 0
        held = sum(view.held for view in server.issuer.authorizations())
        assert held == sum(o.amount for o in outcomes if isinstance(o, Approved))
    return [isinstance(outcome, Approved) for outcome in outcomes]


def test_configured_random_faults_never_double_charge_and_replay_by_seed() -> None:
    """Drop half the authorizations at random: every approval is held exactly once, every other
    outcome holds nothing; the same seed replays the same faults."""
    pattern = _random_run(20261128)
    assert True in pattern
    assert False in pattern
    assert _random_run(20261128) == pattern


def test_a_configured_delay_slows_every_answer() -> None:
    settings = AcquirerSettings(port=0, faults={"0100": MessageFault(delay_ms=150)})
    with BackgroundAcquirer(settings) as server, _client(server, timeout=2.0) as client:
        started = time.monotonic()
        assert isinstance(client.authorize(_request(VISA)), Approved)
        assert time.monotonic() - started >= 0.15


class _BrokenIssuer(Issuer):
    def authorize(self, request: AuthorizationInput) -> Answer:
        raise RuntimeError(f"bug while handling {request.pan}")


def test_a_bug_in_one_request_closes_its_connection_and_is_logged_without_content() -> None:
    issuer = _BrokenIssuer()
    with (
        structlog.testing.capture_logs() as events,
        BackgroundAcquirer(AcquirerSettings(port=0), issuer=issuer) as server,
        _client(server) as client,
    ):
        outcome = _assert_reversed_cleanly(client.authorize(_request(VISA)), "connection")
        assert issuer.reversed_before_seen(ACCEPTOR, outcome.rrn)  # nothing was authorized
        assert client.echo()  # the host still serves
    failed = [event for event in events if event["event"] == "acquirer_request_failed"]
    assert failed == [
        {"event": "acquirer_request_failed", "reason": "RuntimeError", "log_level": "error"}
    ]
    assert VISA not in repr(events)
