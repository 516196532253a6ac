"""Errors in Stripe's shape and status codes, malformed requests, authentication, and tenant
isolation: one merchant's key never sees or changes another merchant's objects."""

from __future__ import annotations

import secrets
import socket
import ssl
import warnings
from urllib.parse import urlsplit

import httpx
import pytest
import stripe

pytestmark = pytest.mark.e2e

MISSING_IDS = {
    "payment_intent": "pi_000000000000000000000000",
    "charge": "ch_000000000000000000000000",
    "refund": "re_000000000000000000000000",
    "customer": "cus_000000000000000000000000",
    "payment_method": "pm_000000000000000000000000",
    "balance_transaction": "txn_000000000000000000000000",
}


def error_of(resp: httpx.Response) -> dict:
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err.get("message"), str)
    assert err["message"]
    return err


def retrievers(client: stripe.StripeClient) -> dict:
    return {
        "payment_intent": client.v1.payment_intents.retrieve,
        "charge": client.v1.charges.retrieve,
        "refund": client.v1.refunds.retrieve,
        "customer": client.v1.customers.retrieve,
        "payment_method": client.v1.payment_methods.retrieve,
        "balance_transaction": client.v1.balance_transactions.retrieve,
    }


# ---------------------------------------------------------------------------------------------
# Parameter validation
# ---------------------------------------------------------------------------------------------


def test_unknown_parameter(client: stripe.StripeClient, raw: httpx.Client):
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.create({"amount": 1000, "currency": "usd", "flavour": "vanilla"})
    assert excinfo.value.http_status == 400
    assert excinfo.value.code == "parameter_unknown"
    assert excinfo.value.param == "flavour"
    assert client.v1.payment_intents.list().data == []

    resp = raw.post("/v1/customers", data={"email": "x@example.com", "nickname": "x"})
    assert resp.status_code == 400
    err = error_of(resp)
    assert (err["type"], err["code"], err["param"]) == (
        "invalid_request_error",
        "parameter_unknown",
        "nickname",
    )
    assert "nickname" in err["message"]


def test_missing_required_parameters(raw: httpx.Client):
    no_amount = raw.post("/v1/payment_intents", data={"currency": "usd"})
    assert no_amount.status_code == 400
    err = error_of(no_amount)
    assert (err["type"], err["code"], err["param"]) == (
        "invalid_request_error",
        "parameter_missing",
        "amount",
    )
    no_currency = raw.post("/v1/payment_intents", data={"amount": "1000"})
    assert no_currency.status_code == 400
    err = error_of(no_currency)
    assert (err["code"], err["param"]) == ("parameter_missing", "currency")


def test_amount_below_minimum_is_too_small(client: stripe.StripeClient):
    # Stripe's minimum charge amount for USD is $0.50.
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.create({"amount": 49, "currency": "usd"})
    assert excinfo.value.code == "amount_too_small"
    assert excinfo.value.param == "amount"
    assert client.v1.payment_intents.create({"amount": 50, "currency": "usd"}).amount == 50


@pytest.mark.parametrize("amount", [0, -1, -1000])
def test_zero_and_negative_amounts_are_rejected(client: stripe.StripeClient, amount):
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.create({"amount": amount, "currency": "usd"})
    assert excinfo.value.http_status == 400
    assert excinfo.value.param == "amount"
    assert excinfo.value.code in {"amount_too_small", "parameter_invalid_integer"}
    assert client.v1.payment_intents.list().data == []


def test_amount_above_maximum_is_too_large(client: stripe.StripeClient):
    # Stripe's maximum for USD is $999,999.99 (eight digits of minor units).
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.create({"amount": 100_000_000, "currency": "usd"})
    assert excinfo.value.code == "amount_too_large"
    assert excinfo.value.param == "amount"
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.create({"amount": 10**30, "currency": "usd"})
    assert excinfo.value.http_status == 400
    assert excinfo.value.param == "amount"
    ok = client.v1.payment_intents.create({"amount": 99_999_999, "currency": "usd"})
    assert ok.amount == 99_999_999


@pytest.mark.parametrize("amount", ["12.5", "1e3", "abc", "", "0x10"])
def test_non_integer_amounts_are_rejected(raw: httpx.Client, amount):
    resp = raw.post("/v1/payment_intents", data={"amount": amount, "currency": "usd"})
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == "amount"


@pytest.mark.parametrize("currency", ["xyz", "US", "dollars"])
def test_unknown_currency(client: stripe.StripeClient, currency):
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.create({"amount": 1000, "currency": currency})
    assert excinfo.value.http_status == 400
    assert excinfo.value.param == "currency"
    assert client.v1.payment_intents.list().data == []


def test_invalid_cancellation_reason(client: stripe.StripeClient):
    pi = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.payment_intents.cancel(pi.id, {"cancellation_reason": "bored"})
    assert excinfo.value.param == "cancellation_reason"
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"


def test_list_limit_bounds(client: stripe.StripeClient):
    for limit in (0, 101):
        with pytest.raises(stripe.InvalidRequestError) as excinfo:
            client.v1.payment_intents.list({"limit": limit})
        assert excinfo.value.http_status == 400
        assert excinfo.value.param == "limit"
    assert client.v1.payment_intents.list({"limit": 100}).data == []


def test_metadata_limits(client: stripe.StripeClient):
    ok = {f"k{i}": "v" for i in range(50)}
    pi = client.v1.payment_intents.create({"amount": 1000, "currency": "usd", "metadata": ok})
    assert len(pi.metadata.to_dict()) == 50
    edge = client.v1.customers.create({"metadata": {"k" * 40: "v" * 500}})
    assert edge.metadata.to_dict() == {"k" * 40: "v" * 500}

    too_many = {f"k{i}": "v" for i in range(51)}
    key_too_long = {"k" * 41: "v"}
    value_too_long = {"k": "v" * 501}
    for metadata in (too_many, key_too_long, value_too_long):
        with pytest.raises(stripe.InvalidRequestError) as excinfo:
            client.v1.customers.create({"metadata": metadata})
        assert excinfo.value.http_status == 400
        assert excinfo.value.error.type == "invalid_request_error"
        assert (excinfo.value.param or "metadata").startswith("metadata")
    assert [c.id for c in client.v1.customers.list().data] == [edge.id]

    # Adding one key to a full set of 50 is rejected too, and leaves the 50 in place.
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.update(pi.id, {"metadata": {"one_more": "x"}})
    assert client.v1.payment_intents.retrieve(pi.id).metadata.to_dict() == ok


# ---------------------------------------------------------------------------------------------
# Malformed requests
# ---------------------------------------------------------------------------------------------


def test_malformed_json_body(raw: httpx.Client, client: stripe.StripeClient):
    resp = raw.post(
        "/v1/payment_intents",
        content=b'{"amount": 1000, "currency": ',
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert error_of(resp)["type"] == "invalid_request_error"
    assert client.v1.payment_intents.list().data == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"amount=1000&currency=usd&metadata[a]=1&metadata=x", id="scalar-vs-hash"),
        pytest.param(b"amount=1000&currency=usd&amount[x]=1", id="hash-vs-scalar"),
        pytest.param(b"amount=1000&currency=us%ZZ", id="bad-percent-escape"),
        pytest.param(b"amount=1000&currency=usd&metadata[a=1", id="unclosed-bracket"),
    ],
)
def test_malformed_form_bodies(raw: httpx.Client, client: stripe.StripeClient, body):
    resp = raw.post(
        "/v1/payment_intents",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 400, resp.text
    assert error_of(resp)["type"] == "invalid_request_error"
    assert client.v1.payment_intents.list().data == []


def test_unknown_route_is_404_in_stripe_shape(raw: httpx.Client):
    resp = raw.get("/v1/not_a_resource")
    assert resp.status_code == 404
    assert error_of(resp)["type"] == "invalid_request_error"


# ---------------------------------------------------------------------------------------------
# Transport and authentication
# ---------------------------------------------------------------------------------------------


def test_healthz_and_hsts(platform, make_raw):
    resp = make_raw(None).get("/healthz")
    assert resp.status_code == 200
    # SECURITY-REQUIREMENTS T1: HSTS on HTTPS responses.
    assert "max-age=" in resp.headers.get("Strict-Transport-Security", "")
    assert platform.api_url.startswith("https://")


def _api_host_port(platform) -> tuple[str, int]:
    parsed = urlsplit(platform.api_url)
    return parsed.hostname, parsed.port


def _handshake(platform, version: ssl.TLSVersion) -> str:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(platform.ca_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated
        ctx.minimum_version = version
        ctx.maximum_version = version
        if version < ssl.TLSVersion.TLSv1_2:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer the legacy protocol
    host, port = _api_host_port(platform)
    with (
        socket.create_connection((host, port), timeout=10) as sock,
        ctx.wrap_socket(sock, server_hostname=host) as tls,
    ):
        return tls.version()


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_tls_12_and_13_are_accepted(platform, version):
    assert _handshake(platform, ssl.TLSVersion[version]) == version.replace("_", ".")


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_legacy_tls_is_refused(platform, version):
    # SECURITY-REQUIREMENTS T1 (PCI DSS 4.2.1): TLS 1.2 and 1.3 only, no fallback.
    try:
        negotiated = _handshake(platform, ssl.TLSVersion[version])
    except ssl.SSLError as exc:
        if "NO_PROTOCOLS_AVAILABLE" in str(exc) or "NO_CIPHERS_AVAILABLE" in str(exc):
            pytest.skip(f"this client's OpenSSL cannot offer {version}: {exc}")
        return  # the server refused the handshake
    except (ConnectionError, TimeoutError):
        return  # the server dropped the connection
    pytest.fail(f"the api negotiated {negotiated}")


def test_cleartext_http_is_not_served(platform):
    host, port = _api_host_port(platform)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try:
            reply = sock.recv(200)
        except (ConnectionError, TimeoutError):
            reply = b""
    assert not reply.startswith(b"HTTP/1.1 200"), reply


def test_certificate_is_verified(platform, merchant):
    # The suite's SDK client trusts only the dev CA; the SDK's own default client (public CA
    # bundle) must refuse the platform's certificate. This proves verification is really on.
    default = stripe.StripeClient(
        merchant["secret_key"], base_addresses={"api": platform.api_url}, max_network_retries=0
    )
    with pytest.raises(stripe.APIConnectionError):
        default.v1.balance.retrieve()


def test_bad_api_key_is_401(make_client, make_raw):
    bogus = "sk_test_" + secrets.token_urlsafe(24)
    with pytest.raises(stripe.AuthenticationError) as excinfo:
        make_client(bogus).v1.payment_intents.list()
    assert excinfo.value.http_status == 401

    resp = make_raw(bogus).get("/v1/payment_intents")
    assert resp.status_code == 401
    assert error_of(resp)["type"] == "invalid_request_error"
    # Never echo a presented secret in full.
    assert bogus not in resp.text


def test_missing_api_key_is_401(make_raw):
    resp = make_raw(None).get("/v1/customers")
    assert resp.status_code == 401
    assert error_of(resp)["type"] == "invalid_request_error"


def test_bearer_and_basic_auth_both_work(make_raw, merchant, client: stripe.StripeClient):
    cus = client.v1.customers.create({"email": "auth@example.com"})
    bearer = make_raw(None).get(
        f"/v1/customers/{cus.id}", headers={"Authorization": f"Bearer {merchant['secret_key']}"}
    )
    basic = make_raw(merchant).get(f"/v1/customers/{cus.id}")
    assert bearer.status_code == basic.status_code == 200
    assert bearer.json() == basic.json()
    assert basic.json()["email"] == "auth@example.com"


def test_publishable_key_cannot_read_secret_data(make_raw, merchant, client):
    cus = client.v1.customers.create({"email": "pk@example.com"})
    resp = make_raw(merchant["publishable_key"]).get(f"/v1/customers/{cus.id}")
    assert resp.status_code in {401, 403}
    assert "pk@example.com" not in resp.text


# ---------------------------------------------------------------------------------------------
# Missing objects and tenant isolation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MISSING_IDS))
def test_unknown_ids_are_resource_missing(client: stripe.StripeClient, kind):
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        retrievers(client)[kind](MISSING_IDS[kind])
    assert excinfo.value.http_status == 404
    assert excinfo.value.code == "resource_missing"


def _merchant_a_objects(client: stripe.StripeClient) -> dict[str, str]:
    # Deliberately independent of PaymentMethod attach: isolation must be tested on its own.
    cus = client.v1.customers.create({"email": "a@example.com"})
    pi = client.v1.payment_intents.create(
        {
            "amount": 5000,
            "currency": "usd",
            "customer": cus.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    refund = client.v1.refunds.create({"payment_intent": pi.id, "amount": 1000})
    charge = client.v1.charges.retrieve(pi.latest_charge)
    return {
        "payment_intent": pi.id,
        "charge": charge.id,
        "refund": refund.id,
        "customer": cus.id,
        "payment_method": pi.payment_method,
        "balance_transaction": charge.balance_transaction,
    }


@pytest.fixture
def two_merchants(make_merchant, make_client):
    a = make_client(make_merchant())
    b = make_client(make_merchant())
    return a, b


def test_other_merchants_objects_are_invisible(two_merchants):
    a, b = two_merchants
    ids = _merchant_a_objects(a)
    leaks = []
    for kind, object_id in ids.items():
        try:
            retrievers(b)[kind](object_id)
        except stripe.InvalidRequestError as exc:
            if (exc.http_status, exc.code) != (404, "resource_missing"):
                leaks.append(f"{kind}: {exc.http_status} {exc.code}")
        else:
            leaks.append(f"{kind}: merchant B can read merchant A's {object_id}")
    assert leaks == []

    assert b.v1.payment_intents.list().data == []
    assert b.v1.charges.list().data == []
    assert b.v1.refunds.list().data == []
    assert b.v1.customers.list().data == []
    assert b.v1.balance_transactions.list().data == []
    assert b.v1.payment_intents.list({"customer": ids["customer"]}).data == []
    assert b.v1.charges.list({"payment_intent": ids["payment_intent"]}).data == []
    assert b.v1.refunds.list({"payment_intent": ids["payment_intent"]}).data == []
    assert b.v1.customers.list({"email": "a@example.com"}).data == []
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        b.v1.customers.payment_methods.list(ids["customer"])
    assert excinfo.value.code == "resource_missing"


def test_other_merchant_cannot_change_objects(two_merchants, stripe_fee):
    a, b = two_merchants
    ids = _merchant_a_objects(a)
    authorized = a.v1.payment_intents.create(
        {
            "amount": 2000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "capture_method": "manual",
        }
    )
    attempts = {
        "update pi": lambda: b.v1.payment_intents.update(
            authorized.id, {"metadata": {"pwned": "1"}}
        ),
        "capture pi": lambda: b.v1.payment_intents.capture(authorized.id),
        "cancel pi": lambda: b.v1.payment_intents.cancel(authorized.id),
        "confirm pi": lambda: b.v1.payment_intents.confirm(
            authorized.id, {"payment_method": "pm_card_visa"}
        ),
        "update customer": lambda: b.v1.customers.update(
            ids["customer"], {"email": "evil@example.com"}
        ),
        "delete customer": lambda: b.v1.customers.delete(ids["customer"]),
        "detach pm": lambda: b.v1.payment_methods.detach(ids["payment_method"]),
        "attach pm": lambda: b.v1.payment_methods.attach(
            ids["payment_method"], {"customer": b.v1.customers.create().id}
        ),
        "refund by pi": lambda: b.v1.refunds.create({"payment_intent": ids["payment_intent"]}),
        "refund by charge": lambda: b.v1.refunds.create({"charge": ids["charge"]}),
        "pay with a's pm": lambda: b.v1.payment_intents.create(
            {
                "amount": 1000,
                "currency": "usd",
                "payment_method": ids["payment_method"],
                "confirm": True,
            }
        ),
        "pay for a's customer": lambda: b.v1.payment_intents.create(
            {"amount": 1000, "currency": "usd", "customer": ids["customer"]}
        ),
    }
    problems = []
    for name, attempt in attempts.items():
        try:
            attempt()
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing" or exc.http_status not in {400, 404}:
                problems.append(f"{name}: {exc.http_status} {exc.code}")
        except stripe.StripeError as exc:
            problems.append(f"{name}: {type(exc).__name__} {exc.http_status}")
        else:
            problems.append(f"{name}: succeeded for the wrong merchant")
    assert problems == []

    # Merchant A's objects are exactly as before.
    pi = a.v1.payment_intents.retrieve(authorized.id)
    assert (pi.status, pi.amount_capturable, pi.metadata.to_dict()) == (
        "requires_capture",
        2000,
        {},
    )
    cus = a.v1.customers.retrieve(ids["customer"])
    assert cus.email == "a@example.com"
    assert getattr(cus, "deleted", None) is not True
    assert a.v1.payment_methods.retrieve(ids["payment_method"]).customer is None
    assert a.v1.charges.retrieve(ids["charge"]).amount_refunded == 1000
    assert b.v1.payment_intents.list().data == []
    assert b.v1.balance_transactions.list().data == []


def test_wrong_state_transitions_change_nothing(client: stripe.StripeClient, pay, balance_total):
    canceled = client.v1.payment_intents.create(
        {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"}
    )
    canceled = client.v1.payment_intents.cancel(canceled.id)
    done = pay(amount=2000)
    expected_balance = balance_total()

    def state(pi_id: str) -> dict:
        pi = client.v1.payment_intents.retrieve(pi_id)
        return pi.to_dict()

    before = {canceled.id: state(canceled.id), done.id: state(done.id)}
    attempts = [
        lambda: client.v1.payment_intents.confirm(canceled.id),
        lambda: client.v1.payment_intents.capture(canceled.id),
        lambda: client.v1.payment_intents.cancel(canceled.id),
        lambda: client.v1.payment_intents.update(canceled.id, {"amount": 5000}),
        lambda: client.v1.payment_intents.capture(done.id),
        lambda: client.v1.payment_intents.cancel(done.id),
        lambda: client.v1.payment_intents.confirm(done.id),
        lambda: client.v1.payment_intents.update(done.id, {"amount": 5000}),
    ]
    for attempt in attempts:
        with pytest.raises(stripe.InvalidRequestError) as excinfo:
            attempt()
        assert excinfo.value.http_status == 400
    after = {canceled.id: state(canceled.id), done.id: state(done.id)}
    assert after == before
    assert balance_total() == expected_balance
    assert len(client.v1.charges.list().data) == 1
