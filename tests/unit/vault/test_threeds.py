"""vault.threeds: the 3-D Secure state machine, challenge expiry and single use, the cryptogram.

A real vault runtime on a SQLite file, a frozen clock, and an acquirer client aimed at a closed
port: anything that reached the network would show up as an authorization row (issue 4, item 7).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bastionpay.acquirer import authentication as cavv
from bastionpay.acquirer.client import AcquirerClient
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.errors import IdempotencyError, InvalidRequestError
from bastionpay.vault import payments, threeds, tokens
from bastionpay.vault.models import Authentication, Authorization, Card
from bastionpay.vault.runtime import VaultRuntime, build_vault_runtime
from bastionpay.vault.settings import VaultSettings
from bastionpay.vault.tokens import Actor

MERCHANT = "acct_1234567890abcdefghijklmn"
API = Actor("service", "bastionpay-api")
CARDHOLDER = Actor("anonymous", "cardholder")


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[VaultRuntime]:
    settings = VaultSettings(data_dir=tmp_path, three_ds_challenge_ttl_seconds=300)
    rt = build_vault_runtime(
        settings,
        clock=FrozenClock(1_800_000_000),
        acquirer=AcquirerClient("127.0.0.1", 9, timeout=0.2, retry_attempts=1),
    )
    rt.public_url.bound("127.0.0.1", 8445)
    yield rt
    rt.close()


def _card(runtime: VaultRuntime, test_card: str) -> Card:
    created = tokens.create_test_card(runtime, MERCHANT, test_card, actor=API)
    return tokens.load_card(runtime, MERCHANT, created["id"], actor=API)


def _authorize(runtime: VaultRuntime, card: Card, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "merchant_id": MERCHANT,
        "payment_method": card.id,
        "livemode": False,
        "amount": 2000,
        "currency": "usd",
        "reference": "ch_attempt1",
        "return_url": "https://shop.example/done?order=7",
        **changes,
    }
    return payments.authorize(runtime, payments.AuthorizeRequest(**fields), actor=API)


def _challenge(answer: dict[str, Any]) -> str:
    url = str(answer["redirect_url"])
    assert url.startswith("https://127.0.0.1:8445/3ds/challenge/")
    return url.rsplit("/", 1)[1]


def _authorizations(runtime: VaultRuntime) -> list[Authorization]:
    with unit_of_work(runtime.db, write=False) as session:
        return list(session.scalars(select(Authorization)))


def _actions(runtime: VaultRuntime) -> list[tuple[str, str, dict[str, Any]]]:
    from bastionpay.audit.models import AuditStaged  # noqa: PLC0415 - test helper

    with unit_of_work(runtime.db, write=False) as session:
        rows = session.scalars(select(AuditStaged).order_by(AuditStaged.pk))
        return [(row.action, row.outcome, dict(row.details)) for row in rows]


def test_cards_that_require_authentication_are_flagged_at_tokenization(
    runtime: VaultRuntime,
) -> None:
    assert _card(runtime, "pm_card_threeDSecure2Required").three_d_secure == "required"
    assert _card(runtime, "pm_card_authenticationRequired").three_d_secure == "required"
    assert _card(runtime, "pm_card_visa").three_d_secure == "optional"


def test_nothing_is_sent_before_authentication_and_a_replay_returns_the_same_challenge(
    runtime: VaultRuntime,
) -> None:
    card = _card(runtime, "pm_card_threeDSecure2Required")
    first = _authorize(runtime, card)
    assert first["object"] == "vault.authentication"
    assert (first["status"], first["reason"]) == ("requires_action", "card_required")
    assert first["eci"] is None
    assert _authorizations(runtime) == []  # no 0100, no authorization row
    again = _authorize(runtime, card)
    assert (again["id"], again["redirect_url"]) == (first["id"], first["redirect_url"])
    with pytest.raises(IdempotencyError):
        _authorize(runtime, card, amount=2500)
    # Only a hash of the challenge id is stored.
    with unit_of_work(runtime.db, write=False) as session:
        row = session.scalars(select(Authentication)).one()
    assert row.challenge_hash == threeds.challenge_hash(_challenge(first))
    assert _challenge(first) not in repr(row.__dict__)


def test_risk_can_ask_for_authentication_on_any_card(runtime: VaultRuntime) -> None:
    visa = _card(runtime, "pm_card_visa")
    answer = _authorize(runtime, visa, request_three_d_secure="any")
    assert (answer["object"], answer["reason"]) == ("vault.authentication", "requested")


def test_success_records_the_eci_once_and_a_replay_is_refused(runtime: VaultRuntime) -> None:
    card = _card(runtime, "pm_card_threeDSecure2Required")
    challenge = _challenge(_authorize(runtime, card))
    row = threeds.complete(runtime, challenge, succeeded=True, actor=CARDHOLDER)
    assert (row.status, row.eci) == ("succeeded", "05")
    assert threeds.return_to(row) == ("https://shop.example/done?order=7&redirect_status=succeeded")
    for answer in (True, False):
        with pytest.raises(threeds.ChallengeRefused) as refused:
            threeds.complete(runtime, challenge, succeeded=answer, actor=CARDHOLDER)
        assert refused.value.reason == "already_completed"
    with pytest.raises(threeds.ChallengeRefused) as unknown:
        threeds.complete(runtime, challenge[:-2] + "xx", succeeded=True, actor=CARDHOLDER)
    assert unknown.value.reason == "unknown_challenge"
    actions = [(action, outcome) for action, outcome, _ in _actions(runtime)]
    assert ("vault.three_d_secure.create", "success") in actions
    assert ("vault.three_d_secure.complete", "success") in actions
    assert actions.count(("vault.three_d_secure.reject", "denied")) == 3
    # The challenge id is never in the audit log.
    assert all(challenge not in str(details) for _, _, details in _actions(runtime))


def test_failure_is_final(runtime: VaultRuntime) -> None:
    card = _card(runtime, "pm_card_threeDSecure2Required")
    answer = _authorize(runtime, card)
    row = threeds.complete(runtime, _challenge(answer), succeeded=False, actor=CARDHOLDER)
    assert (row.status, row.eci) == ("failed", None)
    assert threeds.return_to(row) == "https://shop.example/done?order=7&redirect_status=failed"
    with pytest.raises(InvalidRequestError) as unusable:
        _authorize(runtime, card, authentication=answer["id"])
    assert unusable.value.code == "authentication_unusable"
    assert _authorizations(runtime) == []


def test_a_challenge_expires(runtime: VaultRuntime) -> None:
    card = _card(runtime, "pm_card_threeDSecure2Required")
    answer = _authorize(runtime, card)
    assert isinstance(runtime.clock, FrozenClock)
    runtime.clock.advance(300)
    row = threeds.load(runtime, MERCHANT, answer["id"], actor=API)
    assert threeds.payload(runtime, row)["status"] == "expired"
    assert threeds.payload(runtime, row)["redirect_url"] is None  # no capability handed out
    with pytest.raises(threeds.ChallengeRefused) as refused:
        threeds.complete(runtime, _challenge(answer), succeeded=True, actor=CARDHOLDER)
    assert refused.value.reason == "expired"


def test_the_cryptogram_is_a_mac_over_the_transaction(runtime: VaultRuntime) -> None:
    card = _card(runtime, "pm_card_threeDSecure2Required")
    answer = _authorize(runtime, card)
    threeds.complete(runtime, _challenge(answer), succeeded=True, actor=CARDHOLDER)
    row = threeds.load(runtime, MERCHANT, answer["id"], actor=API)
    value = threeds.cryptogram(runtime, row)
    assert cavv.well_formed("05", value)
    assert not cavv.well_formed("02", value)
    assert len(base64.b64decode(value)) == cavv.LENGTH
    assert threeds.cryptogram(runtime, row) == value  # recomputable, so never stored
    row.amount += 1
    assert threeds.cryptogram(runtime, row) != value  # bound to the transaction
    row.amount -= 1
    result = threeds.result_for(
        runtime,
        answer["id"],
        card=card,
        amount=2000,
        currency="usd",
        reference="ch_attempt1",
        actor=API,
    )
    assert (result.eci, result.cryptogram) == ("05", value)
    for other in ({"amount": 1999}, {"reference": "ch_other"}, {"currency": "eur"}):
        arguments: dict[str, Any] = {
            "card": card,
            "amount": 2000,
            "currency": "usd",
            "reference": "ch_attempt1",
            **other,
        }
        with pytest.raises(InvalidRequestError):
            threeds.result_for(runtime, answer["id"], actor=API, **arguments)
    # The vault's stored authentication row holds no cryptogram.
    assert value not in repr(row.__dict__)


def test_another_merchant_cannot_read_or_use_an_authentication(runtime: VaultRuntime) -> None:
    card = _card(runtime, "pm_card_threeDSecure2Required")
    answer = _authorize(runtime, card)
    with pytest.raises(InvalidRequestError) as missing:
        threeds.load(runtime, "acct_someoneelse000000000000", answer["id"], actor=API)
    assert missing.value.code == "resource_missing"
    assert ("vault.access.deny", "denied") in [(a, o) for a, o, _ in _actions(runtime)]


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "/relative",
        "https://user:pw@shop.example/",
        "data:text/html,x",
        "",
        # The origin becomes the challenge page's CSP form-action (review L1).
        "https://shop.example;script-src/done",
        "https://shop.example/done now",
    ],
)
def test_return_urls_must_be_absolute_web_urls(url: str) -> None:
    with pytest.raises(InvalidRequestError):
        threeds.check_return_url(url)


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),  # not a browser: no Origin
        ({"origin": "https://127.0.0.1:8445"}, False),
        ({"origin": "https://pay.example"}, False),  # PUBLIC_URL behind the WAF
        ({"origin": "https://evil.example"}, True),
        ({"origin": "null"}, True),
        ({"sec-fetch-site": "cross-site"}, True),
        ({"sec-fetch-site": "same-site"}, True),
        ({"sec-fetch-site": "same-origin", "origin": "https://127.0.0.1:8445"}, False),
    ],
)
def test_cross_site_posts_are_recognised(headers: dict[str, str], refused: bool) -> None:
    from starlette.requests import Request  # noqa: PLC0415 - only this test builds requests

    from bastionpay.vault.challenge import cross_site  # noqa: PLC0415

    raw = [(b"host", b"127.0.0.1:8445")] + [(k.encode(), v.encode()) for k, v in headers.items()]
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": raw})
    assert cross_site(request, "https://pay.example") is refused
