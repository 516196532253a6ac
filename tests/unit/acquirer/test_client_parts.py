"""acquirer.client and acquirer.results without a server: STANs, request checks, results."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bastionpay.acquirer.cli import _faults, write_ready_file
from bastionpay.acquirer.client import (
    AcquirerClient,
    AuthorizationRequest,
    InvalidRequest,
    StanCounter,
    ThreeDSecure,
)
from bastionpay.acquirer.faults import Fault, MessageFault
from bastionpay.acquirer.messages import (
    Message,
    decode_message,
    decode_original_data,
    decode_private_data,
)
from bastionpay.acquirer.results import AuthorizationRef, Declined, ReversalPending
from bastionpay.acquirer.settings import AcquirerSettings
from bastionpay.acquirer.transport import Expectation, TransportFailure
from bastionpay.kernel.errors import CardError
from bastionpay.kernel.secrets import Secret

PAN = "4242424242424242"


def test_stans_are_six_digits_and_wrap_past_999999() -> None:
    counter = StanCounter(start=999_998)
    assert [counter.next() for _ in range(3)] == ["999998", "999999", "000001"]
    assert 1 <= int(StanCounter().next()) <= 999_999  # a random start
    with pytest.raises(ValueError, match="STAN"):
        StanCounter(start=0)


def test_stans_are_unique_across_threads() -> None:
    counter = StanCounter(start=1)
    seen: list[str] = []
    lock = threading.Lock()

    def take() -> None:
        mine = [counter.next() for _ in range(500)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 2000


def _request(**changes: object) -> AuthorizationRequest:
    fields: dict[str, object] = {
        "pan": Secret(PAN),
        "exp_month": 12,
        "exp_year": 2030,
        "amount": 2000,
        "currency": "usd",
        "reference": "pi_1:1",
        "cvc": Secret("123"),
        "three_d_secure": ThreeDSecure(eci="05", cryptogram="AQVINFYSNFZ4kBI0VgAAAAAAAAA="),
    }
    fields.update(changes)
    return AuthorizationRequest(**fields)  # type: ignore[arg-type]


def test_requests_print_no_card_data() -> None:
    text = repr(_request()) + str(_request())
    assert PAN not in text
    assert "123" not in text.replace("pi_1", "")
    assert "AAABBEg0" not in text


@pytest.mark.parametrize(
    "changes",
    [
        {"pan": Secret("4242")},
        {"pan": Secret("42424242424242424242")},
        {"pan": Secret("4242 4242 4242 4242")},
        {"cvc": Secret("12345")},
        {"three_d_secure": ThreeDSecure(eci="5", cryptogram="x")},
        {"exp_month": 13},
        {"exp_year": 30},
        {"amount": 0},
        {"amount": True},
        {"amount": 10**12},
        {"currency": "xxx"},
        {"reference": ""},
        {"card_acceptor_id": "a merchant id far too long"},
    ],
)
def test_invalid_requests_are_refused_before_anything_is_sent(changes: dict[str, object]) -> None:
    # Port 9 on loopback: nothing listens, and nothing must be attempted anyway.
    client = AcquirerClient("127.0.0.1", 9, timeout=0.2)
    with pytest.raises(InvalidRequest) as caught:
        client.authorize(_request(**changes))
    assert "4242" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_client_limits_are_bounded() -> None:
    with pytest.raises(ValueError, match="attempts"):
        AcquirerClient("127.0.0.1", 9, reversal_attempts=0)
    with pytest.raises(ValueError, match="attempts"):
        AcquirerClient("127.0.0.1", 9, retry_attempts=100)
    client = AcquirerClient(
        "127.0.0.1", 9, timeout=1.0, reversal_timeout=0.5, reversal_attempts=3, retry_backoff=0.1
    )
    assert client.worst_case_seconds == pytest.approx(1.0 + 3 * 0.5 + 0.1 + 0.2)


def test_an_authorization_ref_survives_a_queue() -> None:
    ref = AuthorizationRef(
        rrn="KTYYIOD2F632",
        stan="000042",
        transmitted="1128163502",
        approval_code="",
        amount=2000,
        currency="usd",
        card_acceptor_id="BASTIONPAY     ",
        terminal_id="BPVAULT1",
    )
    assert AuthorizationRef.from_dict(ref.to_dict()) == ref


def test_a_decline_becomes_stripe_s_card_error() -> None:
    declined = Declined.from_iso("51", rrn="KTYYIOD2F632", stan="000042")
    error = declined.error()
    assert isinstance(error, CardError)
    assert error.http_status == 402
    assert error.to_wire()["error"] == {
        "type": "card_error",
        "message": "Your card has insufficient funds.",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
    }
    too_late = Declined.from_iso("68", rrn="R", stan="S", reversed=True, fault="timeout")
    assert (too_late.code, too_late.decline_code, too_late.reversed) == (
        "processing_error",
        "try_again_later",
        True,
    )


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown message types"):
        AcquirerSettings(faults={"0110": MessageFault(Fault.DROP)})
    with pytest.raises(ValueError, match="port"):
        AcquirerSettings(port=70000)
    with pytest.raises(ValueError, match="probability"):
        MessageFault(Fault.DROP, probability=1.5)
    with pytest.raises(ValueError, match="delay"):
        MessageFault(delay_ms=-1)


def test_cli_fault_options_become_settings() -> None:
    faults = _faults(["0400=no_answer", "0220=drop:0.25"], ["0100=40", "0220=5"])
    assert faults == {
        "0100": MessageFault(None, 1.0, 40),
        "0220": MessageFault(Fault.DROP, 0.25, 5),
        "0400": MessageFault(Fault.NO_ANSWER, 1.0, 0),
    }
    with pytest.raises(ValueError, match="MTI"):
        _faults(["0110=drop"], [])
    with pytest.raises(ValueError, match="explode"):
        _faults(["0100=explode"], [])


def test_the_ready_file_is_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "run" / "acquirer.json"
    write_ready_file(path, "127.0.0.1", 40123)
    assert path.read_text(encoding="utf-8").startswith('{"host": "127.0.0.1", "port": 40123')
    assert [p.name for p in path.parent.iterdir()] == ["acquirer.json"]  # no temporary left


class ScriptedTransport:
    """A fake transport (the injectable contract): records requests, plays scripted replies."""

    def __init__(self, script: list[str | None]) -> None:
        self.script = script  # per request: a response code, or None for a timeout
        self.sent: list[Message] = []

    def exchange(self, payload: bytes, expect: Expectation, timeout: float) -> Message:
        request = decode_message(payload[2:])
        self.sent.append(request)
        code = self.script.pop(0)
        if code is None:
            raise TransportFailure("timeout")
        reply = {"t": expect.mti, "7": expect.transmitted, "11": expect.stan, "39": code}
        assert expect.mismatch(reply) is None
        return reply

    def close(self) -> None:
        self.sent.append({"t": "closed"})


def test_a_timed_out_authorization_is_reversed_with_repeats_and_no_card_data() -> None:
    transport = ScriptedTransport([None, None, "00"])
    with AcquirerClient("unused", 0, transport=transport, retry_backoff=0) as client:
        outcome = client.authorize(_request())
    assert isinstance(outcome, Declined)
    assert (outcome.iso_code, outcome.reversed, outcome.fault) == ("68", True, "timeout")
    auth, reversal, repeat, closed = transport.sent
    assert [auth["t"], reversal["t"], repeat["t"], closed["t"]] == [
        "0100",
        "0400",
        "0401",
        "closed",
    ]
    assert auth["2"] == PAN
    assert "92" in decode_private_data(auth["48"])  # the CVC travels in the 0100 only (C1)
    for follow_up in (reversal, repeat):
        assert "2" not in follow_up
        assert "48" not in follow_up
        assert follow_up["37"] == auth["37"]
        assert decode_original_data(follow_up["90"]).stan == auth["11"]
    assert reversal["11"] == repeat["11"]  # a repeat is the same message


def test_an_approval_without_an_approval_code_is_treated_as_malformed() -> None:
    transport = ScriptedTransport(["00", "00"])
    outcome = AcquirerClient("unused", 0, transport=transport).authorize(_request())
    assert isinstance(outcome, Declined)
    assert (outcome.fault, outcome.reversed) == ("malformed", True)
    assert [message["t"] for message in transport.sent] == ["0100", "0400"]


def test_a_refused_reversal_stays_pending() -> None:
    transport = ScriptedTransport([None, "30"])
    outcome = AcquirerClient("unused", 0, transport=transport).authorize(_request())
    assert isinstance(outcome, ReversalPending)
    assert outcome.fault == "reversal_refused_30"
