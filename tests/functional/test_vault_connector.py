"""The api's vault connector against a real vault and a real ISO 8583 acquirer (issue 4, item 4).

Both run in this process on 127.0.0.1 (`test_vault_support.start_vault`): real TLS, real mutual
TLS with the api's client certificate, real ISO 8583. First the connector alone — approval,
Stripe decline codes, capture, void, refund, replays, the `reversal_pending` mapping — then the
api app (ASGI) configured with `vault_url`: test PaymentMethods become vault records, hosted-fields
PaymentMethods are recorded on first use, publishable keys are registered, a timeout whose
reversal is unanswered leaves the PaymentIntent `processing` until the janitor settles it, and
the api database holds no card number.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, Text, inspect, select, text
from starlette.testclient import TestClient
from tests.conftest import api_client
from tests.functional.test_vault_support import (
    VaultEnv,
    api_runtime_for,
    close_api_runtime,
    new_merchant,
    register_key,
    tokenize,
    vault_env,
)

from bastionpay import bootstrap
from bastionpay.acquirer.faults import Fault, MessageFault
from bastionpay.audit.models import AuditStaged
from bastionpay.db.uow import unit_of_work
from bastionpay.jobs import janitor
from bastionpay.kernel.errors import InvalidRequestError, ProcessorError
from bastionpay.kernel.ids import new_id
from bastionpay.kernel.pan import find_pans
from bastionpay.payments.interfaces import AuthorizationRequest
from bastionpay.payments.models import Charge, PaymentMethod
from bastionpay.payments.vault_connector import (
    VaultClient,
    VaultConnector,
    card_vault,
    split_reference,
    vault_token,
)
from bastionpay.runtime import Runtime

__all__ = ["vault_env"]

TIMEOUT_CARD = "4000009900000210"  # the simulator's "no answer" card
UNANSWERED_REVERSALS = {
    "0400": MessageFault(Fault.NO_ANSWER),
    "0401": MessageFault(Fault.NO_ANSWER),
}


def _client(env: VaultEnv) -> VaultClient:
    cert = env.tls.api_client_cert_file
    assert cert is not None
    return VaultClient(
        env.internal_url,
        ca_file=env.tls.ca_file,
        cert_file=cert,
        key_file=cert.with_suffix(".key"),
        timeout=20,
    )


@pytest.fixture(scope="module")
def connector(vault_env: VaultEnv) -> Iterator[VaultConnector]:
    client = _client(vault_env)
    yield VaultConnector(client)
    client.close()


def _vault_authorization(env: VaultEnv, reference: str) -> dict[str, Any]:
    merchant, authorization = split_reference(reference)
    with env.api() as api:
        response = api.get(
            f"/internal/v1/authorizations/{authorization}", params={"merchant_id": merchant}
        )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _request(merchant: str, token: str, amount: int = 2000, charge: str | None = None) -> Any:
    return AuthorizationRequest(
        merchant_id=merchant,
        livemode=False,
        charge_id=charge or new_id("ch"),
        processor_token=token,
        amount=amount,
        currency="usd",
    )


@dataclasses.dataclass
class _Unanswered:
    env: VaultEnv

    def __enter__(self) -> None:
        server = self.env.acquirer.server
        self.normal = server.settings
        server.settings = dataclasses.replace(self.normal, faults=UNANSWERED_REVERSALS)

    def __exit__(self, *exc: object) -> None:
        self.env.acquirer.server.settings = self.normal


# --- The connector alone -------------------------------------------------------------------------


def test_approval_capture_refund_and_replays(
    vault_env: VaultEnv, connector: VaultConnector
) -> None:
    merchant = new_merchant()
    card = connector.client.create_test_card(merchant, "pm_card_visa")
    assert (card.brand, card.last4, card.funding, card.country) == ("visa", "4242", "credit", "US")
    request = _request(merchant, vault_token(card.id, "pm_card_visa"))
    result = connector.authorize(request)
    assert result.approved and result.reference is not None
    assert result.reference.startswith(f"{merchant}/vauth_")
    assert result.authorization_code is not None and len(result.authorization_code) == 6
    # The same call again (a retry after a lost answer): the vault replays, nothing new is sent.
    assert connector.authorize(request) == result

    captured = connector.capture(result.reference, 1500, "usd")
    assert captured.succeeded
    assert connector.capture(result.reference, 1500, "usd").succeeded  # a retried capture
    refund = connector.refund(result.reference, "re_one", 500, "usd")
    assert refund.succeeded and refund.reference is not None
    assert refund.reference.startswith("vre_")
    assert connector.refund(result.reference, "re_one", 500, "usd") == refund  # same refund
    too_much = connector.refund(result.reference, "re_two", 5000, "usd")
    assert not too_much.succeeded and too_much.failure_message
    stored = _vault_authorization(vault_env, result.reference)
    assert (stored["status"], stored["amount_captured"], stored["amount_refunded"]) == (
        "captured",
        1500,
        500,
    )


def test_void_releases_the_authorization(vault_env: VaultEnv, connector: VaultConnector) -> None:
    merchant = new_merchant()
    card = connector.client.create_test_card(merchant, "pm_card_mastercard")
    result = connector.authorize(_request(merchant, vault_token(card.id)))
    assert result.reference is not None
    assert connector.void(result.reference).succeeded
    assert _vault_authorization(vault_env, result.reference)["status"] == "voided"
    assert connector.void(result.reference).succeeded  # idempotent
    # A voided authorization cannot be captured: refused, not an exception.
    refused = connector.capture(result.reference, 2000, "usd")
    assert not refused.succeeded


@pytest.mark.parametrize(
    ("test_card", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card"),
        ("pm_card_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
        ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
        (
            "pm_card_chargeDeclinedVelocityLimitExceeded",
            "card_declined",
            "card_velocity_exceeded",
        ),
    ],
)
def test_declines_carry_stripe_s_codes(
    connector: VaultConnector, test_card: str, code: str, decline_code: str
) -> None:
    merchant = new_merchant()
    card = connector.client.create_test_card(merchant, test_card)
    result = connector.authorize(_request(merchant, vault_token(card.id, test_card)))
    assert not result.approved
    assert result.decline is not None
    assert (result.decline.code, result.decline.decline_code) == (code, decline_code)
    assert result.decline.message


def test_a_timeout_whose_reversal_is_unanswered_is_pending(
    vault_env: VaultEnv, connector: VaultConnector
) -> None:
    merchant = new_merchant()
    pm = tokenize(vault_env, register_key(vault_env, merchant), TIMEOUT_CARD).json()["id"]
    charge = new_id("ch")
    with _Unanswered(vault_env):
        result = connector.authorize(_request(merchant, vault_token(pm), charge=charge))
        assert (result.approved, result.pending, result.decline) == (False, True, None)
        assert result.reference is not None
        assert connector.settle_pending(result.reference) == "pending"  # still unanswered
    assert connector.settle_pending(result.reference) == "reversed"  # the acquirer is back
    assert connector.settle_pending(result.reference) == "reversed"  # idempotent
    # The vault's answer for that reference is now the reversed authorization (no second 0100).
    with vault_env.api() as api:
        replay = api.post(
            "/internal/v1/authorizations",
            json={
                "merchant_id": merchant,
                "payment_method": pm,
                "livemode": False,
                "amount": 2000,
                "currency": "usd",
                "reference": charge,
            },
        ).json()
    assert replay["status"] == "reversed"


def test_a_timeout_that_is_reversed_is_a_decline(
    vault_env: VaultEnv, connector: VaultConnector
) -> None:
    merchant = new_merchant()
    pm = tokenize(vault_env, register_key(vault_env, merchant), TIMEOUT_CARD).json()["id"]
    result = connector.authorize(_request(merchant, vault_token(pm)))
    assert not result.approved and result.decline is not None
    assert (result.decline.code, result.decline.decline_code) == (
        "processing_error",
        "try_again_later",
    )


def test_tokens_and_cards_of_others_are_refused(
    vault_env: VaultEnv, connector: VaultConnector
) -> None:
    merchant, other = new_merchant(), new_merchant()
    card = connector.client.create_test_card(merchant, "pm_card_visa")
    assert connector.client.payment_method(merchant, card.id) == card
    assert connector.client.payment_method(other, card.id) is None  # 404 in the vault
    assert connector.client.payment_method(merchant, "pm_card_visa") is None  # not a vault id
    with pytest.raises(InvalidRequestError) as raised:
        connector.authorize(_request(merchant, "sandbox:pm_card_visa"))
    assert raised.value.code == "payment_method_unexpected_state"
    with pytest.raises(InvalidRequestError):
        connector.authorize(_request(other, vault_token(card.id)))  # another merchant's card


def test_no_client_certificate_no_vault(vault_env: VaultEnv, tmp_path: Path) -> None:
    """T2: without the api's client certificate the handshake fails: fail closed (502)."""
    other_ca = tmp_path / "tls"
    from bastionpay.crypto.devpki import ensure_dev_pki  # noqa: PLC0415

    stranger = ensure_dev_pki(other_ca)  # a server certificate from another CA
    client = VaultClient(
        vault_env.internal_url,
        ca_file=vault_env.tls.ca_file,
        cert_file=stranger.cert_file,
        key_file=stranger.key_file,
        timeout=5,
    )
    try:
        with pytest.raises(ProcessorError):
            client.health()
    finally:
        client.close()


# --- The api with `vault_url` --------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain(vault_env: VaultEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    runtime = api_runtime_for(vault_env, tmp_path_factory.mktemp("api-data"))
    yield runtime
    close_api_runtime(runtime)


@pytest.fixture
def shop(chain: Runtime) -> dict[str, Any]:
    # Registers the publishable key with the vault (bootstrap hook).
    return bootstrap.create_merchant_with_keys(chain, "Vault shop")


@pytest.fixture
def api(chain: Runtime, shop: dict[str, Any]) -> Iterator[TestClient]:
    with api_client(chain, shop["secret_key"]) as client:
        yield client


def _method(runtime: Runtime, pm: str) -> PaymentMethod:
    with unit_of_work(runtime.db, write=False) as session:
        found = session.scalar(select(PaymentMethod).where(PaymentMethod.id == pm))
        assert found is not None
        session.expunge(found)
        return found


def test_test_payment_methods_are_vault_records(
    vault_env: VaultEnv, chain: Runtime, api: TestClient, shop: dict[str, Any]
) -> None:
    response = api.post(
        "/v1/payment_intents",
        data={"amount": "2000", "currency": "usd", "payment_method": "pm_card_visa"},
    )
    assert response.status_code == 200, response.text
    pm = response.json()["payment_method"]
    method = _method(chain, pm)
    assert method.processor_token == f"vault:{pm}:pm_card_visa"
    card = card_vault(chain.connector).payment_method(shop["id"], pm)  # type: ignore[union-attr]
    assert card is not None and card.fingerprint == method.fingerprint
    confirmed = api.post(f"/v1/payment_intents/{response.json()['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "succeeded"


def test_a_test_card_is_one_vault_record_per_merchant_and_a_new_payment_method_per_use(
    vault_env: VaultEnv, chain: Runtime, api: TestClient, shop: dict[str, Any]
) -> None:
    """Issue 4, item 4: test PaymentMethods are vault records made once per merchant; each use is
    still a new PaymentMethod (as on Stripe), without a vault write inside the payment."""
    body = {"amount": "1200", "currency": "usd", "payment_method": "pm_card_mastercard"}
    paid = [api.post("/v1/payment_intents", data={**body, "confirm": "true"}) for _ in range(3)]
    assert [r.status_code for r in paid] == [200, 200, 200], paid[-1].text
    assert {r.json()["status"] for r in paid} == {"succeeded"}
    methods = [_method(chain, r.json()["payment_method"]) for r in paid]
    assert len({m.id for m in methods}) == 3
    assert len({m.processor_token for m in methods}) == 1
    [token] = {m.processor_token for m in methods}
    assert token.endswith(":pm_card_mastercard")
    assert {(m.card_brand, m.card_last4) for m in methods} == {("mastercard", "4444")}
    with vault_env.runtime.db.engine.connect() as conn:
        records = conn.execute(
            text(
                "SELECT count(*) FROM vault_cards WHERE merchant_id = :m AND source = 'test_card' "
                "AND last4 = '4444'"
            ),
            {"m": shop["id"]},
        ).scalar_one()
    assert records == 1


def test_a_hosted_fields_card_pays_captures_refunds_and_cancels(
    vault_env: VaultEnv, chain: Runtime, api: TestClient, shop: dict[str, Any]
) -> None:
    # The api's publishable key works at the vault's hosted fields (registered at creation).
    tokenized = tokenize(vault_env, shop["publishable_key"], "5555555555554444", origin=None)
    assert tokenized.status_code == 200, tokenized.text
    pm = tokenized.json()["id"]
    created = api.post(
        "/v1/payment_intents",
        data={
            "amount": "3000",
            "currency": "usd",
            "payment_method": pm,
            "confirm": "true",
            "capture_method": "manual",
        },
    )
    assert created.status_code == 200, created.text
    intent = created.json()
    assert intent["status"] == "requires_capture"
    method = _method(chain, pm)
    assert (method.card_brand, method.card_last4, method.processor_token) == (
        "mastercard",
        "4444",
        f"vault:{pm}",
    )
    captured = api.post(
        f"/v1/payment_intents/{intent['id']}/capture", data={"amount_to_capture": "2500"}
    )
    assert captured.status_code == 200, captured.text
    assert captured.json()["amount_received"] == 2500
    refund = api.post("/v1/refunds", data={"payment_intent": intent["id"], "amount": "1000"})
    assert refund.status_code == 200, refund.text
    assert refund.json()["status"] == "succeeded"

    # A second intent with the same (known) PaymentMethod, canceled: the vault voids it.
    second = api.post(
        "/v1/payment_intents",
        data={
            "amount": "1200",
            "currency": "usd",
            "payment_method": pm,
            "confirm": "true",
            "capture_method": "manual",
        },
    ).json()
    canceled = api.post(f"/v1/payment_intents/{second['id']}/cancel")
    assert canceled.status_code == 200, canceled.text
    with unit_of_work(chain.db, write=False) as session:
        references = session.execute(
            text("SELECT processor_reference FROM charges WHERE payment_intent_id = :pi"),
            {"pi": second["id"]},
        ).scalars()
        [reference] = list(references)
    assert _vault_authorization(vault_env, reference)["status"] == "voided"


def test_another_merchant_s_hosted_card_is_not_found(vault_env: VaultEnv, api: TestClient) -> None:
    other = new_merchant()
    pm = tokenize(vault_env, register_key(vault_env, other), "4242424242424242").json()["id"]
    response = api.post(
        "/v1/payment_intents",
        data={"amount": "2000", "currency": "usd", "payment_method": pm, "confirm": "true"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


def test_a_decline_through_the_vault(api: TestClient) -> None:
    response = api.post(
        "/v1/payment_intents",
        data={
            "amount": "2000",
            "currency": "usd",
            "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
            "confirm": "true",
        },
    )
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["code"], error["decline_code"]) == ("card_declined", "insufficient_funds")
    assert error["payment_intent"]["status"] == "requires_payment_method"


def test_reversal_pending_shows_processing_until_the_janitor_settles_it(
    vault_env: VaultEnv, chain: Runtime, api: TestClient, shop: dict[str, Any]
) -> None:
    pm = tokenize(vault_env, shop["publishable_key"], TIMEOUT_CARD, origin=None).json()["id"]
    intent = api.post(
        "/v1/payment_intents",
        data={"amount": "2000", "currency": "usd", "payment_method": pm},
    ).json()
    with _Unanswered(vault_env):
        response = api.post(
            f"/v1/payment_intents/{intent['id']}/confirm",
            headers={"Idempotency-Key": "timeout-1"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "processing"  # never succeeded, never declined yet
        assert janitor.run(chain)["payments_reversed"] == 0  # the reversal still goes unanswered
    after = api.get(f"/v1/payment_intents/{intent['id']}", params={"expand[]": "latest_charge"})
    body = after.json()
    assert (body["status"], body["amount_received"]) == ("processing", 0)
    assert body["latest_charge"]["status"] == "pending"
    assert api.post(f"/v1/payment_intents/{intent['id']}/cancel").status_code == 400
    # The acquirer answers again: the janitor gets the reversal through and fails the attempt.
    assert janitor.run(chain)["payments_reversed"] == 1
    assert janitor.run(chain)["payments_reversed"] == 0
    settled = api.get(f"/v1/payment_intents/{intent['id']}", params={"expand[]": "latest_charge"})
    body = settled.json()
    assert body["status"] == "requires_payment_method"
    assert body["last_payment_error"]["decline_code"] == "try_again_later"
    assert body["latest_charge"]["status"] == "failed"
    assert body["amount_received"] == 0
    _, authorization = split_reference(_charge_reference(chain, body["latest_charge"]["id"]))
    assert _vault_authorization(vault_env, f"{shop['id']}/{authorization}")["status"] == "reversed"
    with unit_of_work(chain.db, write=False) as session:
        actions = session.scalars(
            select(AuditStaged.action).where(AuditStaged.target_id == intent["id"])
        ).all()
    assert "payments.payment_intent.resolve" in actions
    # The replayed confirmation answers what it answered then (P1); a new attempt is clean.
    replay = api.post(
        f"/v1/payment_intents/{intent['id']}/confirm", headers={"Idempotency-Key": "timeout-1"}
    )
    assert replay.json()["status"] == "processing"
    retried = api.post(
        f"/v1/payment_intents/{intent['id']}/confirm", data={"payment_method": "pm_card_visa"}
    )
    assert retried.json()["status"] == "succeeded"


def _charge_reference(runtime: Runtime, charge_id: str) -> str:
    with unit_of_work(runtime.db, write=False) as session:
        reference = session.scalar(select(Charge.processor_reference).where(Charge.id == charge_id))
    assert reference is not None
    return reference


def test_the_api_database_holds_no_card_number(chain: Runtime, api: TestClient) -> None:
    for pm in ("pm_card_visa", "pm_card_amex", "pm_card_chargeDeclined"):
        api.post(
            "/v1/payment_intents",
            data={"amount": "2000", "currency": "usd", "payment_method": pm, "confirm": "true"},
        )
    hits: list[str] = []
    with chain.db.engine.connect() as conn:
        inspector = inspect(conn)
        for table in inspector.get_table_names():
            columns = [
                c["name"]
                for c in inspector.get_columns(table)
                if isinstance(c["type"], String | Text) or "JSON" in str(c["type"]).upper()
            ]
            for column in columns:
                rows = conn.execute(text(f'SELECT "{column}" FROM "{table}"')).scalars()  # noqa: S608
                for value in rows:
                    if value is not None and find_pans(
                        value if isinstance(value, str) else json.dumps(value)
                    ):
                        hits.append(f"{table}.{column}")
    assert hits == []


def test_keys_created_and_revoked_by_the_cli_reach_the_vault(
    vault_env: VaultEnv, chain: Runtime, shop: dict[str, Any]
) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from bastionpay.cli.main import cli  # noqa: PLC0415

    settings = chain.settings
    cert = settings.vault_client_cert_file
    assert cert is not None
    env = {
        "BASTIONPAY_DATABASE_URL": settings.resolved_database_url(),
        "BASTIONPAY_VAULT_URL": vault_env.internal_url,
        "BASTIONPAY_VAULT_CA_FILE": str(vault_env.tls.ca_file),
        "BASTIONPAY_VAULT_CLIENT_CERT_FILE": str(cert),
        "BASTIONPAY_VAULT_CLIENT_KEY_FILE": str(cert.with_suffix(".key")),
        "BASTIONPAY_RISK_ENABLED": "0",
    }
    data = ["--data-dir", str(settings.resolved_data_dir())]
    runner = CliRunner(env=env)
    created = runner.invoke(
        cli, ["keys", "create", "--merchant", shop["id"], "--kind", "publishable", *data]
    )
    assert created.exit_code == 0, created.output
    issued = json.loads(created.output)
    assert tokenize(vault_env, issued["key"], "4242424242424242", origin=None).status_code == 200
    revoked = runner.invoke(cli, ["keys", "revoke", issued["id"], *data])
    assert revoked.exit_code == 0, revoked.output
    assert tokenize(vault_env, issued["key"], "4242424242424242", origin=None).status_code == 401
