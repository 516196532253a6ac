"""acquirer.issuer: the per-authorization state machine (issue 4, items 5 and 6).

capture ≤ authorized, refunds ≤ captured, reversal idempotence, reversal before the original, and
a duplicate authorization by reference answered with the original.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest

from bastionpay.acquirer.issuer import AuthorizationInput, Issuer
from bastionpay.kernel.clock import FrozenClock

NOW = 1_795_883_702  # 2026-11-28
ACCEPTOR = "BASTIONPAY     "
USD = "840"


def _auth(rrn: str = "RRN000000001", **changes: Any) -> AuthorizationInput:
    base = AuthorizationInput(
        card_acceptor_id=ACCEPTOR,
        rrn=rrn,
        stan="000001",
        amount=2000,
        currency=USD,
        expiry="3012",
        pan="4242424242424242",
        cvc="123",
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def issuer() -> Issuer:
    return Issuer(clock=FrozenClock(NOW))


def test_an_approval_holds_the_amount_until_captured(issuer: Issuer) -> None:
    answer = issuer.authorize(_auth())
    assert answer.approved
    assert answer.approval_code is not None
    assert len(answer.approval_code) == 6
    assert answer.cvc_result == "M"
    view = issuer.authorization(ACCEPTOR, "RRN000000001")
    assert view is not None
    assert (view.held, view.captured, view.last4) == (2000, 0, "4242")


def test_the_issuer_keeps_no_card_number_or_cvc(issuer: Issuer) -> None:
    issuer.authorize(_auth(cvc="987"))
    views = repr(issuer.authorizations()) + repr(issuer.__dict__)
    assert "4242424242424242" not in views
    assert "987" not in views
    assert "4242424242424242" not in repr(_auth())  # the input hides it too


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"pan": "4242424242424241"}, "14"),  # Luhn failure
        ({"expiry": "2610"}, "54"),  # ended last month
        ({"expiry": "3013"}, "54"),  # no month 13
        ({"pan": "4000000000000002"}, "05"),
        ({"pan": "4000000000009995"}, "51"),
        ({"pan": "4000000000000127"}, "N7"),
        ({"pan": "4000000000000119"}, "96"),
        ({"pan": "4100000000000019"}, "59"),
        ({"pan": "4000009900000913"}, "91"),
        ({"cvc": "12"}, "N7"),  # wrong length for a Visa
        ({"pan": "378282246310005", "cvc": "123"}, "N7"),  # Amex CIDs have 4 digits
        ({"pan": "4000002760003184"}, "1A"),  # needs 3-D Secure
        ({"pan": "4000002760003184", "eci": "07", "cryptogram": "AAAA"}, "1A"),  # not authenticated
        # Fully authenticated ECI, but no well-formed authentication value (acquirer.authentication)
        ({"pan": "4000002760003184", "eci": "05", "cryptogram": "AAAA"}, "1A"),
        (
            {"pan": "4000002760003184", "eci": "05", "cryptogram": "AAABBEg0VhI0VniQEjRWAAAAAAA="},
            "1A",
        ),
        (
            {"pan": "4000002760003184", "eci": "05", "cryptogram": "AQJINFYSNFZ4kBI0VgAAAAAAAAA="},
            "1A",
        ),
    ],
)
def test_declines(issuer: Issuer, changes: dict[str, Any], code: str) -> None:
    answer = issuer.authorize(_auth(**changes))
    assert answer.response_code == code
    assert answer.approval_code is None
    view = issuer.authorization(ACCEPTOR, "RRN000000001")
    assert view is not None
    assert view.held == 0


def test_the_current_month_has_not_expired(issuer: Issuer) -> None:
    assert issuer.authorize(_auth(expiry="2611")).approved


def test_three_d_secure_results_unlock_the_cards_that_need_them(issuer: Issuer) -> None:
    authenticated = {"eci": "05", "cryptogram": "AQVINFYSNFZ4kBI0VgAAAAAAAAA="}
    assert issuer.authorize(_auth("RRN000000001", pan="4000002760003184", **authenticated)).approved
    after = issuer.authorize(_auth("RRN000000002", pan="4000008260003178", **authenticated))
    assert after.response_code == "51"


def test_cvc_results(issuer: Issuer) -> None:
    assert issuer.authorize(_auth("RRN000000001", cvc=None)).cvc_result == "P"
    fail = issuer.authorize(_auth("RRN000000002", pan="4000000000000101"))
    assert (fail.response_code, fail.cvc_result) == ("00", "N")  # approved; a rule may block
    assert issuer.authorize(_auth("RRN000000003", pan="378282246310005", cvc="1234")).approved


def test_a_duplicate_authorization_is_answered_with_the_original(issuer: Issuer) -> None:
    first = issuer.authorize(_auth())
    again = issuer.authorize(_auth(stan="000002"))
    assert again.duplicate
    assert (again.response_code, again.approval_code) == ("00", first.approval_code)
    view = issuer.authorization(ACCEPTOR, "RRN000000001")
    assert view is not None
    assert (view.held, view.duplicates, len(issuer.authorizations())) == (2000, 1, 1)


def test_a_duplicate_decline_stays_a_decline(issuer: Issuer) -> None:
    issuer.authorize(_auth(pan="4000000000009995"))
    assert issuer.authorize(_auth(pan="4000000000009995")).response_code == "51"


@pytest.mark.parametrize(
    "changes", [{"amount": 2001}, {"currency": "978"}, {"pan": "5555555555554444"}]
)
def test_the_same_reference_with_other_content_is_refused(
    issuer: Issuer, changes: dict[str, Any]
) -> None:
    issuer.authorize(_auth())
    assert issuer.authorize(_auth(**changes)).response_code == "94"


def test_capture_at_most_the_authorized_amount_once(issuer: Issuer) -> None:
    code = issuer.authorize(_auth()).approval_code
    too_much = issuer.complete(ACCEPTOR, "RRN000000001", amount=2001, currency=USD)
    assert too_much.response_code == "13"
    assert issuer.complete(ACCEPTOR, "RRN000000001", amount=0, currency=USD).response_code == "13"
    partial = issuer.complete(
        ACCEPTOR, "RRN000000001", amount=1500, currency=USD, approval_code=code
    )
    assert partial.approved
    repeat = issuer.complete(ACCEPTOR, "RRN000000001", amount=1500, currency=USD)
    assert (repeat.approved, repeat.duplicate) == (True, True)
    second = issuer.complete(ACCEPTOR, "RRN000000001", amount=500, currency=USD)
    assert second.response_code == "12"
    view = issuer.authorization(ACCEPTOR, "RRN000000001")
    assert view is not None
    assert (view.captured, view.held, view.charged) == (1500, 0, 1500)  # the rest is released


def test_capture_needs_a_live_approved_authorization(issuer: Issuer) -> None:
    assert issuer.complete(ACCEPTOR, "NOSUCHRRN001", amount=1, currency=USD).response_code == "25"
    issuer.authorize(_auth("RRN000000001"))
    wrong_code = issuer.complete(
        ACCEPTOR, "RRN000000001", amount=1, currency=USD, approval_code="ZZZZZZ"
    )
    assert wrong_code.response_code == "25"
    assert issuer.complete(ACCEPTOR, "RRN000000001", amount=1, currency="978").response_code == "13"
    issuer.authorize(_auth("RRN000000002", pan="4000000000000002"))
    assert issuer.complete(ACCEPTOR, "RRN000000002", amount=1, currency=USD).response_code == "12"
    issuer.reverse(ACCEPTOR, "RRN000000001", amount=2000, currency=USD)
    assert issuer.complete(ACCEPTOR, "RRN000000001", amount=1, currency=USD).response_code == "12"


def test_reversal_releases_the_hold_and_is_idempotent(issuer: Issuer) -> None:
    issuer.authorize(_auth())
    assert issuer.reverse(ACCEPTOR, "RRN000000001", amount=2000, currency=USD).approved
    again = issuer.reverse(ACCEPTOR, "RRN000000001", amount=2000, currency=USD)
    assert (again.approved, again.duplicate) == (True, True)
    view = issuer.authorization(ACCEPTOR, "RRN000000001")
    assert view is not None
    assert (view.reversed, view.held) == (True, 0)
    # The reference is spent: a retry must not resurrect the approval.
    retry = issuer.authorize(_auth())
    assert (retry.response_code, retry.duplicate) == ("12", True)


def test_partial_reversals_are_refused_and_captured_ones_cannot_be_reversed(
    issuer: Issuer,
) -> None:
    issuer.authorize(_auth())
    partial = issuer.reverse(ACCEPTOR, "RRN000000001", amount=1000, currency=USD)
    assert partial.response_code == "13"
    issuer.complete(ACCEPTOR, "RRN000000001", amount=2000, currency=USD)
    after_capture = issuer.reverse(ACCEPTOR, "RRN000000001", amount=2000, currency=USD)
    assert after_capture.response_code == "12"
    view = issuer.authorization(ACCEPTOR, "RRN000000001")
    assert view is not None
    assert (view.reversed, view.charged) == (False, 2000)


def test_a_reversal_of_a_declined_authorization_is_acknowledged(issuer: Issuer) -> None:
    issuer.authorize(_auth(pan="4000000000000002"))
    assert issuer.reverse(ACCEPTOR, "RRN000000001", amount=1, currency=USD).approved


def test_a_reversal_before_the_original_declines_the_late_original(issuer: Issuer) -> None:
    """The timeout race: the 0400 overtakes the 0100; the late 0100 must hold nothing."""
    assert issuer.reverse(ACCEPTOR, "RRN000000001", amount=2000, currency=USD).approved
    assert issuer.reversed_before_seen(ACCEPTOR, "RRN000000001")
    late = issuer.authorize(_auth())
    assert late.response_code == "12"
    view = issuer.authorization(ACCEPTOR, "RRN000000001")
    assert view is not None
    assert (view.late, view.reversed, view.held, view.approval_code) == (True, True, 0, None)
    assert not issuer.reversed_before_seen(ACCEPTOR, "RRN000000001")
    assert issuer.reverse(ACCEPTOR, "RRN000000001", amount=2000, currency=USD).approved


def test_refunds_never_exceed_what_was_captured(issuer: Issuer) -> None:
    issuer.authorize(_auth())
    early = issuer.refund(ACCEPTOR, "RRN000000001", reference="R1", amount=100, currency=USD)
    assert early.response_code == "12"  # nothing captured yet
    issuer.complete(ACCEPTOR, "RRN000000001", amount=1500, currency=USD)
    first = issuer.refund(ACCEPTOR, "RRN000000001", reference="R1", amount=1000, currency=USD)
    assert first.approved
    too_much = issuer.refund(ACCEPTOR, "RRN000000001", reference="R2", amount=501, currency=USD)
    assert too_much.response_code == "13"
    rest = issuer.refund(ACCEPTOR, "RRN000000001", reference="R2", amount=500, currency=USD)
    assert rest.approved
    assert rest.approval_code != first.approval_code
    more = issuer.refund(ACCEPTOR, "RRN000000001", reference="R3", amount=1, currency=USD)
    assert more.response_code == "13"
    view = issuer.authorization(ACCEPTOR, "RRN000000001")
    assert view is not None
    assert (view.captured, view.refunded, view.charged) == (1500, 1500, 0)
    assert [(r.reference, r.amount) for r in view.refunds] == [("R1", 1000), ("R2", 500)]


def test_a_repeated_refund_is_answered_once(issuer: Issuer) -> None:
    issuer.authorize(_auth())
    issuer.complete(ACCEPTOR, "RRN000000001", amount=2000, currency=USD)
    first = issuer.refund(ACCEPTOR, "RRN000000001", reference="R1", amount=700, currency=USD)
    again = issuer.refund(ACCEPTOR, "RRN000000001", reference="R1", amount=700, currency=USD)
    assert (again.duplicate, again.approval_code) == (True, first.approval_code)
    conflict = issuer.refund(ACCEPTOR, "RRN000000001", reference="R1", amount=800, currency=USD)
    assert conflict.response_code == "94"
    view = issuer.authorization(ACCEPTOR, "RRN000000001")
    assert view is not None
    assert view.refunded == 700
    unknown = issuer.refund(ACCEPTOR, "NOSUCHRRN001", reference="R1", amount=1, currency=USD)
    assert unknown.response_code == "25"


def test_state_is_bounded() -> None:
    small = Issuer(clock=FrozenClock(NOW), max_records=2)
    for index in range(3):
        small.authorize(_auth(f"RRN00000000{index}"))
        small.reverse(ACCEPTOR, f"UNSEEN00000{index}", amount=1, currency=USD)
    assert [view.rrn for view in small.authorizations()] == ["RRN000000001", "RRN000000002"]
    assert not small.reversed_before_seen(ACCEPTOR, "UNSEEN000000")
    with pytest.raises(ValueError, match="max_records"):
        Issuer(max_records=0)


def test_concurrent_duplicates_authorize_once(issuer: Issuer) -> None:
    codes: list[str | None] = []

    def run() -> None:
        codes.append(issuer.authorize(_auth()).approval_code)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(codes)) == 1
    assert len(issuer.authorizations()) == 1
