"""The full chain on real processes: browser → vault hosted fields, merchant → api → vault (mTLS)
→ acquirer (ISO 8583), started by `bastionpay up` (issue 4, items 1, 4 and "Done when").

Card entry goes to the vault's public tokenization endpoint with the merchant's publishable key,
as the hosted fields page would post it; payments go through the official Stripe SDK against the
api with the `pm_…` that came back. Afterwards: the api database (every text column), every
process's log and every api response body hold no card number and no CVC, and the vault database
holds no clear card number (C1, C3, C5).
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import stripe

from bastionpay.kernel.pan import find_pans

pytestmark = pytest.mark.e2e

# (number, CVC): CVCs distinct enough to look for next to a "cvc"-like word.
VISA = ("4242424242424242", "913")
AMEX = ("378282246310005", "7391")
INSUFFICIENT = ("4000000000009995", "846")
CARDS = (VISA, AMEX, INSUFFICIENT)
# A CVC written out stands alone: inside an id or a hex digest (`pm_x913…`, `"846a…"`), the same
# digits are not one, and random ids near `cvc_check` once failed the scan.
CVC_NEAR_NAME = re.compile(
    r"(?i)(cvc|cvv|csc|security)[^\n]{0,24}?(?<![A-Za-z0-9])(913|7391|846)(?![A-Za-z0-9])"
)


class RecordingHTTPClient(stripe.HTTPClient):
    """The SDK's transport on httpx, trusting the platform CA only, keeping every response body."""

    name = "bastionpay-e2e-recording"

    def __init__(self, ca_file: str, bodies: list[bytes]) -> None:
        super().__init__()
        self._http = httpx.Client(verify=ssl.create_default_context(cafile=ca_file), timeout=30)
        self._bodies = bodies

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        **_kwargs: Any,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        resp = self._http.request(method.upper(), url, headers=headers, content=post_data)
        self._bodies.append(resp.content)
        return resp.content, resp.status_code, resp.headers

    def close(self) -> None:
        self._http.close()


@pytest.fixture
def run_info(platform: Any) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((platform.data_dir / "run.json").read_text())
    assert info["vault_public_url"].startswith("https://127.0.0.1:")
    assert info["vault_url"].startswith("https://127.0.0.1:")
    assert {"acquirer", "vault", "api", "worker"} <= set(info["pids"])
    return info


def _merchant_with_vault(platform: Any, info: dict[str, Any]) -> dict[str, str]:
    """`bastionpay merchants create` with the vault configured: its publishable key is registered
    with the vault as it is issued."""
    env = {
        **platform.env,
        "BASTIONPAY_VAULT_URL": info["vault_url"],
        "BASTIONPAY_VAULT_CA_FILE": info["vault_ca_file"],
        "BASTIONPAY_VAULT_CLIENT_CERT_FILE": info["vault_client_cert_file"],
        "BASTIONPAY_VAULT_CLIENT_KEY_FILE": info["vault_client_key_file"],
    }
    command = ["merchants", "create", "--name", "Vault E2E", "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "bastionpay", *command, "--data-dir", str(platform.data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    merchant: dict[str, str] = json.loads(result.stdout)
    return merchant


@pytest.fixture
def browser(platform: Any, run_info: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=run_info["vault_public_url"],
        verify=ssl.create_default_context(cafile=platform.ca_file),
        timeout=30,
    ) as client:
        yield client


def _tokenize(browser: httpx.Client, publishable_key: str, card: tuple[str, str]) -> str:
    number, cvc = card
    response = browser.post(
        "/v1/payment_methods",
        data={
            "type": "card",
            "card[number]": number,
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": cvc,
        },
        headers={"Authorization": f"Bearer {publishable_key}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["card"]["last4"] == number[-4:]
    assert not find_pans(response.text)
    return str(body["id"])


def _text_columns(engine: sa.Engine) -> Iterator[tuple[str, str, Any]]:
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table in inspector.get_table_names():
            for column in inspector.get_columns(table):
                kind = str(column["type"]).upper()
                if not any(word in kind for word in ("CHAR", "TEXT", "JSON", "CLOB")):
                    continue
                query = sa.text(f'SELECT "{column["name"]}" FROM "{table}"')  # noqa: S608
                for value in conn.execute(query).scalars():
                    if value is not None:
                        yield table, column["name"], value


def _api_database_url(platform: Any) -> str:
    return str(
        platform.env.get("BASTIONPAY_DATABASE_URL") or f"sqlite:///{platform.data_dir / 'api.db'}"
    )


def _database_bytes(path: Path) -> bytes:
    parts = [path, path.with_name(path.name + "-wal")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


# Stripe's decline test PaymentMethods and what Stripe answers for each (code, decline_code).
DECLINES = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds"),
    "pm_card_chargeDeclinedLostCard": ("card_declined", "lost_card"),
    "pm_card_chargeDeclinedStolenCard": ("card_declined", "stolen_card"),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card"),
    "pm_card_chargeDeclinedIncorrectCvc": ("incorrect_cvc", "incorrect_cvc"),
    "pm_card_chargeDeclinedProcessingError": ("processing_error", "processing_error"),
    "pm_card_chargeDeclinedVelocityLimitExceeded": ("card_declined", "card_velocity_exceeded"),
}


def test_card_entry_then_payments_and_no_card_data_outside_the_vault(
    platform: Any, run_info: dict[str, Any], browser: httpx.Client
) -> None:
    merchant = _merchant_with_vault(platform, run_info)
    bodies: list[bytes] = []
    http_client = RecordingHTTPClient(platform.ca_file, bodies)
    client = stripe.StripeClient(
        merchant["secret_key"],
        base_addresses={"api": platform.api_url},
        http_client=http_client,
        max_network_retries=0,
    )
    try:
        visa = _tokenize(browser, merchant["publishable_key"], VISA)
        amex = _tokenize(browser, merchant["publishable_key"], AMEX)
        poor = _tokenize(browser, merchant["publishable_key"], INSUFFICIENT)
        # The demo merchant's key (registered by `up` itself) is accepted as well.
        _tokenize(browser, run_info["publishable_key"], VISA)

        # Manual capture, partial capture, refund — with a card that came from the hosted fields.
        intent = client.v1.payment_intents.create(
            {
                "amount": 5000,
                "currency": "usd",
                "payment_method": visa,
                "confirm": True,
                "capture_method": "manual",
            }
        )
        assert intent.status == "requires_capture"
        assert intent.amount_capturable == 5000
        captured = client.v1.payment_intents.capture(intent.id, {"amount_to_capture": 4000})
        assert captured.status == "succeeded"
        assert captured.amount_received == 4000
        refund = client.v1.refunds.create({"payment_intent": intent.id, "amount": 1500})
        assert refund.status == "succeeded"
        charge = client.v1.charges.retrieve(captured.latest_charge)
        assert charge.amount_refunded == 1500
        card = charge.payment_method_details.card
        assert (card.brand, card.last4) == ("visa", "4242")

        method = client.v1.payment_methods.retrieve(visa)
        assert method.card.last4 == "4242"
        assert method.card.fingerprint

        # Automatic capture with an amex (4-digit CVC), then a full refund.
        paid = client.v1.payment_intents.create(
            {"amount": 1234, "currency": "usd", "payment_method": amex, "confirm": True}
        )
        assert paid.status == "succeeded"
        assert client.v1.refunds.create({"payment_intent": paid.id}).status == "succeeded"

        # A void through the vault.
        held = client.v1.payment_intents.create(
            {
                "amount": 700,
                "currency": "usd",
                "payment_method": "pm_card_mastercard",
                "confirm": True,
                "capture_method": "manual",
            }
        )
        assert client.v1.payment_intents.cancel(held.id).status == "canceled"

        # The issuer declines: Stripe's card_error, through vault and acquirer.
        with pytest.raises(stripe.CardError) as declined:
            client.v1.payment_intents.create(
                {"amount": 2000, "currency": "usd", "payment_method": poor, "confirm": True}
            )
        assert declined.value.http_status == 402
        assert declined.value.code == "card_declined"
        assert declined.value.error.decline_code == "insufficient_funds"
        assert declined.value.error.payment_intent.status == "requires_payment_method"

        # Each of Stripe's decline test cards, through vault and acquirer (ISO 8583 response
        # codes mapped back to Stripe's code and decline_code).
        for payment_method, (code, decline_code) in DECLINES.items():
            with pytest.raises(stripe.CardError) as each:
                client.v1.payment_intents.create(
                    {
                        "amount": 1500,
                        "currency": "usd",
                        "payment_method": payment_method,
                        "confirm": True,
                    }
                )
            assert (each.value.code, each.value.error.decline_code) == (code, decline_code), (
                payment_method
            )
    finally:
        http_client.close()

    # --- C1, C5: no card number or CVC in any api response, the api database or any log ---
    numbers = [number for number, _ in CARDS]
    assert len(bodies) >= 10
    for body in bodies:
        decoded = body.decode("utf-8", errors="replace")
        assert find_pans(decoded) == [], decoded[:500]
        assert not CVC_NEAR_NAME.search(decoded), decoded[:500]

    engine = sa.create_engine(_api_database_url(platform))
    try:
        hits = [
            f"{table}.{column}"
            for table, column, value in _text_columns(engine)
            if find_pans(value if isinstance(value, str) else json.dumps(value))
            or CVC_NEAR_NAME.search(value if isinstance(value, str) else json.dumps(value))
        ]
    finally:
        engine.dispose()
    assert hits == []
    if platform.backend == "sqlite":
        raw = _database_bytes(platform.data_dir / "api.db")
        assert not any(number.encode() in raw for number in numbers)

    log = platform.log_file.read_text(errors="replace")  # api, worker, vault, acquirer, up
    assert '"bastionpay.acquirer' in log and "vault" in log  # the logs really are all there
    assert find_pans(log) == [], [line for line in log.splitlines() if find_pans(line)][:3]
    assert not CVC_NEAR_NAME.search(log)

    # --- C3: the vault database holds card numbers only encrypted ---
    vault_raw = _database_bytes(platform.data_dir / "vault.db")
    assert vault_raw, "the vault database is where `up` put it"
    for number in numbers:
        # (BIN and last 4 are stored, as C2 allows: adjacent columns, never the whole number.)
        assert number.encode() not in vault_raw
    vault_engine = sa.create_engine(f"sqlite:///{platform.data_dir / 'vault.db'}")
    try:
        clear = [
            f"{table}.{column}"
            for table, column, value in _text_columns(vault_engine)
            if isinstance(value, str) and find_pans(value)
        ]
    finally:
        vault_engine.dispose()
    assert clear == []
