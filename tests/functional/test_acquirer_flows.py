"""The acquirer over real TCP on 127.0.0.1: approvals, Stripe's decline cards, 3-D Secure, capture,
void, refunds, duplicates, pipelining and protocol errors — asserting on the issuer's state."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import iso8583
import pytest

from bastionpay.acquirer.background import BackgroundAcquirer
from bastionpay.acquirer.client import AcquirerClient, AuthorizationRequest, ThreeDSecure
from bastionpay.acquirer.framing import FrameDecoder, encode_frame
from bastionpay.acquirer.issuer import AuthorizationView
from bastionpay.acquirer.messages import Message, decode_message, encode_message, time_fields
from bastionpay.acquirer.results import Approved, Declined, Reversed
from bastionpay.acquirer.settings import AcquirerSettings
from bastionpay.acquirer.spec import SPEC
from bastionpay.kernel.secrets import Secret

VISA = "4242424242424242"
SLOW = "4000009900000111"


@pytest.fixture
def acquirer() -> Iterator[BackgroundAcquirer]:
    with BackgroundAcquirer(AcquirerSettings(port=0, slow_ms=300, max_connections=16)) as server:
        yield server


@pytest.fixture
def client(acquirer: BackgroundAcquirer) -> Iterator[AcquirerClient]:
    with AcquirerClient(acquirer.host, acquirer.port, timeout=3.0) as client:
        yield client


def _request(
    pan: str = VISA,
    reference: str = "pi_1:1",
    *,
    amount: int = 2000,
    cvc: str | None = "123",
    three_d_secure: ThreeDSecure | None = None,
) -> AuthorizationRequest:
    return AuthorizationRequest(
        pan=Secret(pan),
        exp_month=12,
        exp_year=2030,
        amount=amount,
        currency="usd",
        reference=reference,
        cvc=Secret(cvc) if cvc is not None else None,
        three_d_secure=three_d_secure,
    )


def _view(acquirer: BackgroundAcquirer, rrn: str) -> AuthorizationView:
    view = acquirer.issuer.authorization("BASTIONPAY     ", rrn)
    assert view is not None
    return view


def _approved(client: AcquirerClient, request: AuthorizationRequest) -> Approved:
    outcome = client.authorize(request)
    assert isinstance(outcome, Approved), outcome
    return outcome


def test_the_host_answers_an_echo_test(client: AcquirerClient) -> None:
    assert client.echo()


def test_an_approval_holds_the_amount(acquirer: BackgroundAcquirer, client: AcquirerClient) -> None:
    approved = _approved(client, _request())
    assert len(approved.approval_code) == 6
    assert approved.cvc_check == "pass"
    assert approved.ref.approval_code == approved.approval_code
    assert approved.ref.stan == approved.stan
    view = _view(acquirer, approved.rrn)
    assert (view.held, view.approval_code, view.last4) == (2000, approved.approval_code, "4242")


@pytest.mark.parametrize(
    ("pan", "iso", "code", "decline_code"),
    [
        ("4000000000000002", "05", "card_declined", "generic_decline"),
        ("4000000000009995", "51", "card_declined", "insufficient_funds"),
        ("4000000000009987", "41", "card_declined", "lost_card"),
        ("4000000000009979", "43", "card_declined", "stolen_card"),
        ("4000000000000069", "54", "expired_card", "expired_card"),
        ("4000000000000127", "N7", "incorrect_cvc", "incorrect_cvc"),
        ("4000000000000119", "96", "processing_error", "processing_error"),
        ("4000000000006975", "65", "card_declined", "card_velocity_exceeded"),
        ("4100000000000019", "59", "card_declined", "fraudulent"),
        ("4000009900000913", "91", "card_declined", "issuer_not_available"),
        ("4000009900000616", "61", "card_declined", "card_velocity_exceeded"),
    ],
)
def test_stripe_s_decline_cards(
    acquirer: BackgroundAcquirer,
    client: AcquirerClient,
    pan: str,
    iso: str,
    code: str,
    decline_code: str,
) -> None:
    outcome = client.authorize(_request(pan))
    assert isinstance(outcome, Declined)
    assert (outcome.iso_code, outcome.code, outcome.decline_code) == (iso, code, decline_code)
    assert (outcome.reversed, outcome.fault) == (False, None)
    assert _view(acquirer, outcome.rrn).held == 0


def test_three_d_secure_travels_in_the_authorization(
    acquirer: BackgroundAcquirer, client: AcquirerClient
) -> None:
    required = client.authorize(_request("4000002760003184", "pi_3ds:1"))
    assert isinstance(required, Declined)
    assert (required.iso_code, required.code) == ("1A", "authentication_required")
    result = ThreeDSecure(eci="05", cryptogram="AQVINFYSNFZ4kBI0VgAAAAAAAAA=")
    approved = _approved(client, _request("4000002760003184", "pi_3ds:2", three_d_secure=result))
    assert _view(acquirer, approved.rrn).held == 2000
    then_declined = client.authorize(
        _request("4000008260003178", "pi_3ds:3", three_d_secure=result)
    )
    assert isinstance(then_declined, Declined)
    assert then_declined.decline_code == "insufficient_funds"


def test_cvc_checks(client: AcquirerClient) -> None:
    assert _approved(client, _request("4000000000000101", "a")).cvc_check == "fail"
    assert _approved(client, _request(VISA, "b", cvc=None)).cvc_check == "unchecked"


def test_full_capture(acquirer: BackgroundAcquirer, client: AcquirerClient) -> None:
    approved = _approved(client, _request())
    captured = client.capture(approved.ref, 2000)
    assert isinstance(captured, Approved)
    assert (captured.amount, captured.approval_code) == (2000, approved.approval_code)
    view = _view(acquirer, approved.rrn)
    assert (view.held, view.captured, view.charged) == (0, 2000, 2000)


def test_partial_capture_releases_the_rest_and_happens_once(
    acquirer: BackgroundAcquirer, client: AcquirerClient
) -> None:
    approved = _approved(client, _request())
    too_much = client.capture(approved.ref, 2001)
    assert isinstance(too_much, Declined)
    assert too_much.decline_code == "invalid_amount"
    assert isinstance(client.capture(approved.ref, 1200), Approved)
    assert isinstance(client.capture(approved.ref, 1200), Approved)  # a repeat: same answer
    second = client.capture(approved.ref, 800)
    assert isinstance(second, Declined)
    assert second.iso_code == "12"
    view = _view(acquirer, approved.rrn)
    assert (view.held, view.captured, view.charged) == (0, 1200, 1200)


def test_void_releases_the_hold_idempotently(
    acquirer: BackgroundAcquirer, client: AcquirerClient
) -> None:
    approved = _approved(client, _request())
    assert isinstance(client.void(approved.ref), Reversed)
    assert isinstance(client.void(approved.ref), Reversed)
    view = _view(acquirer, approved.rrn)
    assert (view.reversed, view.held, view.charged) == (True, 0, 0)
    after = client.capture(approved.ref, 2000)
    assert isinstance(after, Declined)
    assert after.iso_code == "12"


def test_a_captured_authorization_cannot_be_voided(
    acquirer: BackgroundAcquirer, client: AcquirerClient
) -> None:
    approved = _approved(client, _request())
    client.capture(approved.ref, 2000)
    refused = client.void(approved.ref)
    assert isinstance(refused, Declined)
    assert refused.iso_code == "12"
    assert _view(acquirer, approved.rrn).charged == 2000


def test_full_refund(acquirer: BackgroundAcquirer, client: AcquirerClient) -> None:
    approved = _approved(client, _request())
    client.capture(approved.ref, 2000)
    refunded = client.refund(approved.ref, 2000, reference="re_1")
    assert isinstance(refunded, Approved)
    assert refunded.approval_code != approved.approval_code
    view = _view(acquirer, approved.rrn)
    assert (view.refunded, view.charged) == (2000, 0)


def test_partial_refunds_never_exceed_the_capture(
    acquirer: BackgroundAcquirer, client: AcquirerClient
) -> None:
    approved = _approved(client, _request())
    early = client.refund(approved.ref, 100, reference="re_0")
    assert isinstance(early, Declined)
    assert early.iso_code == "12"  # nothing captured yet
    client.capture(approved.ref, 1500)
    assert isinstance(client.refund(approved.ref, 1000, reference="re_1"), Approved)
    assert isinstance(client.refund(approved.ref, 1000, reference="re_1"), Approved)  # a retry
    over = client.refund(approved.ref, 501, reference="re_2")
    assert isinstance(over, Declined)
    assert over.decline_code == "invalid_amount"
    assert isinstance(client.refund(approved.ref, 500, reference="re_2"), Approved)
    view = _view(acquirer, approved.rrn)
    assert (view.captured, view.refunded, view.charged) == (1500, 1500, 0)
    assert len(view.refunds) == 2


def test_a_retried_authorization_is_recognised_as_a_duplicate(
    acquirer: BackgroundAcquirer, client: AcquirerClient
) -> None:
    first = _approved(client, _request(reference="pi_9:attempt-1"))
    again = _approved(client, _request(reference="pi_9:attempt-1"))
    assert (again.approval_code, again.rrn) == (first.approval_code, first.rrn)
    assert again.stan != first.stan  # a new message; the same authorization
    view = _view(acquirer, first.rrn)
    assert (view.held, view.duplicates) == (2000, 1)
    assert len(acquirer.issuer.authorizations()) == 1
    other = _approved(client, _request(reference="pi_9:attempt-2"))
    assert other.rrn != first.rrn


def test_threads_share_one_client(acquirer: BackgroundAcquirer, client: AcquirerClient) -> None:
    outcomes: list[object] = []

    def pay(index: int) -> None:
        outcomes.append(client.authorize(_request(reference=f"pi_t:{index}")))

    threads = [threading.Thread(target=pay, args=(index,)) for index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(isinstance(outcome, Approved) for outcome in outcomes)
    assert len({outcome.stan for outcome in outcomes if isinstance(outcome, Approved)}) == 12
    assert sum(view.held for view in acquirer.issuer.authorizations()) == 12 * 2000


# --- Raw protocol: pipelining and errors ----------------------------------------------------------


def _auth_message(pan: str, stan: str, rrn: str) -> Message:
    times = time_fields(int(time.time()))
    return {
        "t": "0100",
        "2": pan,
        "3": "000000",
        "4": "000000001000",
        "7": times.transmitted,
        "11": stan,
        "12": times.local_time,
        "13": times.local_date,
        "14": "3012",
        "22": "812",
        "37": rrn,
        "41": "RAWTERM1",
        "42": "RAWMERCHANT    ",
        "49": "840",
    }


def _connect(acquirer: BackgroundAcquirer) -> socket.socket:
    sock = socket.create_connection((acquirer.host, acquirer.port), timeout=3)
    sock.settimeout(3)
    return sock


def _replies(sock: socket.socket, count: int) -> list[Message]:
    decoder = FrameDecoder()
    frames: list[bytes] = []
    while len(frames) < count:
        data = sock.recv(4096)
        assert data, "the host closed the connection"
        frames += decoder.feed(data)
    return [decode_message(frame) for frame in frames]


def test_requests_on_one_connection_are_answered_as_they_finish(
    acquirer: BackgroundAcquirer,
) -> None:
    with _connect(acquirer) as sock:
        sock.sendall(
            encode_frame(encode_message(_auth_message(SLOW, "000101", "RAWRRN000001")))
            + encode_frame(encode_message(_auth_message(VISA, "000102", "RAWRRN000002")))
        )
        fast, slow = _replies(sock, 2)
    assert (fast["11"], fast["37"], fast["39"]) == ("000102", "RAWRRN000002", "00")
    assert (slow["11"], slow["37"], slow["39"]) == ("000101", "RAWRRN000001", "00")
    assert "2" not in fast  # the PAN is never echoed


def test_an_invalid_field_is_answered_with_a_format_error(acquirer: BackgroundAcquirer) -> None:
    message = _auth_message(VISA, "000201", "RAWRRN000003")
    message["4"] = "0000000010XX"
    raw, _ = iso8583.encode(dict(message), SPEC)
    with _connect(acquirer) as sock:
        sock.sendall(encode_frame(raw))
        (reply,) = _replies(sock, 1)
    assert (reply["t"], reply["11"], reply["39"]) == ("0110", "000201", "30")
    assert acquirer.issuer.authorizations() == []


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x00",  # a zero-length frame
        b"\xff\xff" + b"x" * 10,  # longer than the limit
        encode_frame(b"\x00\xffnot iso 8583"),  # a frame, but not a message
        encode_frame(b"0110" + b"0" * 16),  # a response sent to the host
    ],
)
def test_malformed_frames_close_the_connection(
    acquirer: BackgroundAcquirer, payload: bytes
) -> None:
    with _connect(acquirer) as sock:
        sock.sendall(payload)
        assert sock.recv(4096) == b""


def test_connections_beyond_the_limit_are_closed() -> None:
    settings = AcquirerSettings(port=0, max_connections=1)
    with BackgroundAcquirer(settings) as server, _connect(server) as first:
        first.sendall(encode_frame(encode_message(_auth_message(VISA, "000301", "RAWRRN000004"))))
        assert _replies(first, 1)[0]["39"] == "00"
        with _connect(server) as second:
            assert second.recv(4096) == b""
