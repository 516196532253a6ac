"""The vault's two real listeners over TLS on 127.0.0.1 (T1, T2, T3, T4).

Internal: mutual TLS with the platform CA as the only anchor — no certificate, a certificate from
another CA, a server certificate from the right CA and a client certificate with the wrong name
are all refused (and audited); the api's client certificate gets in.
Public: the hosted-fields page and its policies, CORS, publishable-key authentication, card
validation errors in Stripe's shape, and rate limits.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from starlette.testclient import TestClient
from tests.functional.test_vault_support import (
    EVIL,
    OTHER_SHOP,
    SHOP,
    VaultEnv,
    eventually,
    new_merchant,
    register_key,
    tokenize,
    vault_env,
)

from bastionpay.crypto.devpki import ensure_dev_pki, issue_leaf
from bastionpay.crypto.keyfiles import write_private
from bastionpay.edge.ratelimit import RateLimits
from bastionpay.kernel.pan import find_pans
from bastionpay.vault.public import create_public_app

__all__ = ["vault_env"]


def _client_context(env: VaultEnv, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = env.ca_context()
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def _leaf(tmp: Path, ca_dir: Path, name: str, *, server: bool) -> tuple[Path, Path]:
    """A certificate issued by the CA in `ca_dir` (created there if missing)."""
    ensure_dev_pki(ca_dir)
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    cert_pem, key_pem = issue_leaf(ca_cert, ca_key, common_name=name, server=server)  # type: ignore[arg-type]
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert.write_bytes(cert_pem)
    write_private(key, key_pem)
    return cert, key


def _refused(env: VaultEnv, context: ssl.SSLContext) -> None:
    with (
        httpx.Client(base_url=env.internal_url, verify=context, timeout=5) as client,
        pytest.raises(httpx.TransportError),
    ):
        client.get("/internal/v1/health")


def _mtls_reasons(env: VaultEnv) -> list[str]:
    return [
        details["reason"]
        for action, _, details in env.audit_actions()
        if action == "vault.mtls.reject"
    ]


# --- Internal listener: mutual TLS (T2) ---------------------------------------------------------


def test_the_api_certificate_gets_in(vault_env: VaultEnv) -> None:
    with vault_env.api() as api:
        response = api.get("/internal/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_no_client_certificate_fails_the_handshake(vault_env: VaultEnv) -> None:
    before = _mtls_reasons(vault_env).count("handshake_failed")
    _refused(vault_env, _client_context(vault_env, None, None))
    # With TLS 1.2 the client sees the refusal in the handshake itself.
    context = _client_context(vault_env, None, None)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    raw = socket.create_connection(("127.0.0.1", vault_env.server.listeners.internal_port), 5)
    with pytest.raises(ssl.SSLError):
        context.wrap_socket(raw, server_hostname="127.0.0.1").close()
    raw.close()
    assert eventually(lambda: _mtls_reasons(vault_env).count("handshake_failed") >= before + 2)


def test_a_certificate_from_another_ca_fails_the_handshake(
    vault_env: VaultEnv, tmp_path: Path
) -> None:
    cert, key = _leaf(tmp_path, tmp_path / "other-ca", "bastionpay-api", server=False)
    before = len(_mtls_reasons(vault_env))
    _refused(vault_env, _client_context(vault_env, cert, key))
    assert eventually(lambda: len(_mtls_reasons(vault_env)) == before + 1)
    last = [d for a, _, d in vault_env.audit_actions() if a == "vault.mtls.reject"][-1]
    assert last["reason"] == "handshake_failed"
    assert "CERTIFICATE" in str(last.get("tls_error", "")).upper()


def test_a_server_certificate_from_the_platform_ca_is_not_a_client(
    vault_env: VaultEnv, tmp_path: Path
) -> None:
    # Same CA, same name as the api, but issued for serverAuth: the api's *server* certificate.
    # OpenSSL already refuses it in the handshake ("unsupported certificate purpose"); the
    # vault's own EKU check stands behind that (tests/unit/vault/test_mtls_check.py).
    tls_dir = vault_env.data_dir / "tls"
    before = len(_mtls_reasons(vault_env))
    _refused(vault_env, _client_context(vault_env, tls_dir / "api.pem", tls_dir / "api.key"))
    assert eventually(lambda: len(_mtls_reasons(vault_env)) == before + 1)


def test_a_client_certificate_with_another_name_is_refused(
    vault_env: VaultEnv, tmp_path: Path
) -> None:
    cert, key = _leaf(tmp_path, vault_env.data_dir / "tls", "bastionpay-worker", server=False)
    _refused(vault_env, _client_context(vault_env, cert, key))
    assert eventually(lambda: "client_not_allowed" in _mtls_reasons(vault_env))
    last = [d for a, _, d in vault_env.audit_actions() if a == "vault.mtls.reject"][-1]
    assert last["subject"] == "bastionpay-worker"


def test_unknown_paths_and_fields_answer_in_stripe_shape(vault_env: VaultEnv) -> None:
    with vault_env.api() as api:
        missing = api.get("/internal/v1/nothing")
        unknown = api.post("/internal/v1/test_cards", json={"merchant_id": "acct_x", "pan": "1"})
        not_json = api.post(
            "/internal/v1/test_cards", content=b"{", headers={"content-type": "application/json"}
        )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "parameter_unknown"
    assert not_json.status_code == 400


# --- Public listener: hosted fields --------------------------------------------------------------


def test_the_hosted_fields_page_is_framable_by_the_key_s_origins_only(
    vault_env: VaultEnv,
) -> None:
    key = register_key(vault_env, new_merchant(), origins=(OTHER_SHOP,))
    with vault_env.browser() as browser:
        page = browser.get("/hosted-fields", params={"key": key, "origin": OTHER_SHOP})
        refused = browser.get("/hosted-fields", params={"key": key, "origin": EVIL})
        unknown = browser.get("/hosted-fields", params={"key": "pk_test_nope", "origin": SHOP})
        script = browser.get("/static/hosted-fields.js")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert f"frame-ancestors {OTHER_SHOP} {SHOP}" in policy or (
        f"frame-ancestors {SHOP} {OTHER_SHOP}" in policy
    )
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "form-action 'none'" in policy
    assert "x-frame-options" not in page.headers  # framing is governed by frame-ancestors here
    body = page.text
    assert '<script src="/static/hosted-fields.js" defer></script>' in body
    assert body.count("<script") == 1 and "style=" not in body  # nothing inline
    assert all(" name=" not in tag for tag in body.split("<input")[1:])  # nothing to submit
    assert f'data-parent-origin="{OTHER_SHOP}"' in body
    for bad in (refused, unknown):
        assert bad.status_code == 400
        assert "frame-ancestors 'none'" in bad.headers["content-security-policy"]
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-frame-options"] == "DENY"
    assert "postMessage" in script.text


def test_cors_preflight_allows_registered_origins_only(vault_env: VaultEnv) -> None:
    register_key(vault_env, new_merchant(), origins=(SHOP,))
    asked = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    with vault_env.browser() as browser:
        allowed = browser.options("/v1/payment_methods", headers={"origin": SHOP, **asked})
        refused = browser.options("/v1/payment_methods", headers={"origin": EVIL, **asked})
        odd_header = browser.options(
            "/v1/tokens",
            headers={"origin": SHOP, **asked, "access-control-request-headers": "x-custom"},
        )
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == SHOP
    assert allowed.headers["access-control-allow-methods"] == "POST"
    assert "access-control-allow-credentials" not in allowed.headers
    for bad in (refused, odd_header):
        assert bad.status_code == 403
        assert "access-control-allow-origin" not in bad.headers


def test_tokenization_returns_a_payment_method_and_never_the_card(vault_env: VaultEnv) -> None:
    key = register_key(vault_env, new_merchant(), origins=(SHOP,))
    response = tokenize(vault_env, key, "4242 4242 4242 4242", cvc="123")
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SHOP
    body = response.json()
    assert body["id"].startswith("pm_") and len(body["id"]) == 27
    assert body["object"] == "payment_method"
    card = body["card"]
    assert (card["brand"], card["last4"], card["exp_month"], card["exp_year"]) == (
        "visa",
        "4242",
        12,
        2031,
    )
    assert (card["funding"], card["country"], len(card["fingerprint"])) == ("credit", "US", 16)
    assert "4242424242424242" not in response.text and find_pans(response.text) == []
    # Exactly what may be shown (C1, C2): no number, no BIN, no CVC field.
    assert set(card) == {
        "brand",
        "last4",
        "exp_month",
        "exp_year",
        "funding",
        "country",
        "fingerprint",
        "checks",
        "three_d_secure_usage",
    }
    assert card["checks"] == {"cvc_check": "unchecked"}


def test_an_unregistered_or_revoked_key_is_refused(vault_env: VaultEnv) -> None:
    unknown = tokenize(vault_env, "pk_test_" + "x" * 24, "4242424242424242")
    assert unknown.status_code == 401
    assert unknown.json()["error"]["code"] == "api_key_invalid"
    merchant = new_merchant()
    key = register_key(vault_env, merchant)
    with vault_env.api() as api:
        listed = api.post(
            "/internal/v1/publishable_keys",
            json={"id": "k1", "key": key, "merchant_id": merchant, "livemode": False},
        )
    assert listed.status_code == 400  # the same key under another id is a conflict
    key_id = _key_id(vault_env, key)
    with vault_env.api() as api:
        revoked = api.post(
            f"/internal/v1/publishable_keys/{key_id}/revoke", json={"merchant_id": merchant}
        )
    assert revoked.status_code == 200
    assert tokenize(vault_env, key, "4242424242424242").status_code == 401
    rejected = [d for a, _, d in vault_env.audit_actions() if a == "vault.publishable_key.reject"]
    assert rejected and all(d["presented"] in ("pk_test_", None) for d in rejected)


def _key_id(env: VaultEnv, key: str) -> str:
    from sqlalchemy import text  # noqa: PLC0415

    digest = env.runtime.publishable_keys.hexdigest(key)
    with env.runtime.db.engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT id FROM vault_publishable_keys WHERE key_hash = :h"), {"h": digest}
            ).scalar_one()
        )


def test_an_origin_not_allowed_for_the_key_is_refused(vault_env: VaultEnv) -> None:
    register_key(vault_env, new_merchant(), origins=(OTHER_SHOP,))  # OTHER_SHOP is known…
    key = register_key(vault_env, new_merchant(), origins=(SHOP,))  # …but not for this key
    response = tokenize(vault_env, key, "4242424242424242", origin=OTHER_SHOP)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    ("number", "exp_month", "exp_year", "cvc", "code", "param"),
    [
        ("4242424242424241", "12", "2031", "123", "incorrect_number", "number"),
        ("1234", "12", "2031", "123", "invalid_number", "number"),
        ("4242424242424242", "13", "2031", "123", "invalid_expiry_month", "exp_month"),
        ("4242424242424242", "12", "20x1", "123", "invalid_expiry_year", "exp_year"),
        ("4242424242424242", "12", "2001", "123", "expired_card", "exp_year"),
        ("4242424242424242", "12", "2031", "12", "invalid_cvc", "cvc"),
        ("378282246310005", "12", "2031", "123", "invalid_cvc", "cvc"),
    ],
)
def test_card_errors_use_stripe_s_codes_and_params(
    vault_env: VaultEnv,
    number: str,
    exp_month: str,
    exp_year: str,
    cvc: str,
    code: str,
    param: str,
) -> None:
    key = register_key(vault_env, new_merchant())
    response = tokenize(vault_env, key, number, cvc=cvc, exp_month=exp_month, exp_year=exp_year)
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("card_error", code, param)
    assert number not in response.text
    assert response.headers["access-control-allow-origin"] == SHOP  # the page can show it


def test_requests_that_are_not_card_forms_are_refused(vault_env: VaultEnv) -> None:
    key = register_key(vault_env, new_merchant())
    with vault_env.browser() as browser:
        as_json = browser.post(
            "/v1/payment_methods",
            json={"card": {"number": "4242424242424242"}},
            headers={"Authorization": f"Bearer {key}"},
        )
        unknown = browser.post(
            "/v1/payment_methods",
            data={"card[number]": "4242424242424242", "card[pin]": "1234"},
            headers={"Authorization": f"Bearer {key}"},
        )
        huge = browser.post(
            "/v1/payment_methods",
            data={"card[number]": "4" * 20_000},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert as_json.status_code == 415
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "parameter_unknown"
    assert huge.status_code == 413


def test_tokenization_is_rate_limited_per_address_and_per_key(vault_env: VaultEnv) -> None:
    runtime = vault_env.runtime
    settings = runtime.settings.model_copy(
        update={"rate_limit_tokenize_ip": "3/minute", "rate_limit_tokenize_key": "2/minute"}
    )
    limited = dataclasses.replace(runtime, settings=settings, rate_limits=RateLimits())
    key = register_key(vault_env, new_merchant())
    form = {"card[number]": "4242424242424242", "card[exp_month]": "12", "card[exp_year]": "2031"}
    with TestClient(
        create_public_app(limited), base_url="https://localhost", client=("10.0.0.9", 1)
    ) as client:
        statuses = [
            client.post(
                "/v1/payment_methods", data=form, headers={"Authorization": f"Bearer {key}"}
            ).status_code
            for _ in range(4)
        ]
    assert statuses[:2] == [200, 200]
    assert statuses[2:] == [429, 429]  # the key's limit, then the address's
