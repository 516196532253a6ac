"""Request filtering, security headers and IP allow-lists (edge issue, items 2, 5, 6; T3, T4, I7).

Every refusal is in the API's error shape and counted in `bastionpay_edge_rejections`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import pay

from bastionpay import bootstrap
from bastionpay.audit.models import AuditStaged
from bastionpay.db.uow import unit_of_work
from bastionpay.edge.headers import API_HEADERS
from bastionpay.edge.networks import client_address, parse_networks
from bastionpay.kernel.errors import InvalidRequestError
from bastionpay.merchants import service as merchants
from bastionpay.observability.metrics import METRICS
from bastionpay.runtime import Runtime


def _rejections(reason: str) -> float:
    return float(METRICS.edge_rejections.labels(reason)._value.get())


def _assert_error(response: Any, status: int, code: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error.get("code") == code
    return error


# --- security headers (item 2) ----------------------------------------------------------------


def _assert_security_headers(response: Any) -> None:
    for name, value in API_HEADERS:
        assert response.headers.get(name.decode()) == value.decode(), name
    assert "server" not in response.headers
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


def test_every_kind_of_response_carries_the_security_headers(
    runtime: Runtime, api: TestClient
) -> None:
    responses = [
        api.get("/livez"),
        api.get("/healthz"),
        pay(api),  # 200
        pay(api, pm="pm_card_chargeDeclined"),  # 402
        api.get("/v1/nothing_here"),  # 404
        api.request("PUT", "/v1/customers"),  # 405 from the filter
        api.post("/v1/customers", content=b"<x/>", headers={"content-type": "text/xml"}),  # 415
        api.get("/v1/customers", headers={"Authorization": "Bearer sk_test_wrong"}),  # 401
        api.get("/metrics"),  # 401
        api.get("/v1/customers", headers={"Host": "evil.example"}),  # 400 invalid_host
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 402, 404, 405, 415, 401, 401, 400]
    for response in responses:
        _assert_security_headers(response)


# --- methods, content types, headers, Host (item 5) -------------------------------------------


@pytest.mark.parametrize("method", ["TRACE", "PUT", "PATCH", "CONNECT", "PROPFIND"])
def test_methods_the_api_does_not_serve_are_refused_everywhere(
    api: TestClient, method: str
) -> None:
    before = _rejections("method_not_allowed")
    _assert_error(api.request(method, "/v1/payment_intents"), 405, None)
    _assert_error(api.request(method, "/livez"), 405, None)
    assert _rejections("method_not_allowed") == before + 2


def test_a_route_answers_only_its_own_methods(api: TestClient) -> None:
    _assert_error(api.delete("/v1/payment_intents"), 405, None)
    _assert_error(api.post("/v1/balance"), 405, None)


def test_only_form_and_json_bodies_are_accepted(api: TestClient) -> None:
    for content_type in ("text/plain", "multipart/form-data; boundary=x", "application/xml"):
        response = api.post(
            "/v1/customers", content=b"email=a@example.com", headers={"content-type": content_type}
        )
        _assert_error(response, 415, "unsupported_media_type")
    json_ok = api.post("/v1/customers", json={"email": "a@example.com"})
    assert json_ok.status_code == 200


def test_too_many_headers_are_refused(api: TestClient) -> None:
    before = _rejections("too_many_headers")
    headers = {f"x-filler-{i}": "1" for i in range(80)}
    _assert_error(api.get("/v1/customers", headers=headers), 431, "too_many_headers")
    assert _rejections("too_many_headers") == before + 1


def test_oversized_headers_are_refused(api: TestClient) -> None:
    _assert_error(
        api.get("/v1/customers", headers={"x-big": "a" * 20_000}), 431, "headers_too_large"
    )


def test_the_host_header_must_name_this_service(api: TestClient) -> None:
    before = _rejections("invalid_host")
    for host in ("evil.example", "localhost.evil.example", "127.0.0.2"):
        _assert_error(api.get("/v1/customers", headers={"Host": host}), 400, "invalid_host")
    assert _rejections("invalid_host") == before + 3
    for host in ("localhost", "localhost:8443", "127.0.0.1:443", "[::1]:8443"):
        assert api.get("/v1/customers", headers={"Host": host}).status_code == 200, host


def test_the_host_allow_list_is_configurable(db_url: str, tmp_path: Path) -> None:
    runtime = make_runtime(db_url, tmp_path, allowed_hosts="api.shop.example, *")
    with api_client(runtime, None) as client:
        assert client.get("/livez", headers={"Host": "anything.example"}).status_code == 200
    runtime.db.dispose()


# --- IP allow-lists (item 6, I7) ---------------------------------------------------------------


@pytest.fixture
def proxied(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(db_url, tmp_path, trusted_proxies=["127.0.0.1/32"])
    yield runtime
    runtime.db.dispose()


def _restricted_key(runtime: Runtime, cidrs: list[str]) -> tuple[dict[str, Any], str]:
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with unit_of_work(runtime.db, write=True) as session:
        issued = merchants.issue_key(
            session,
            runtime.api_keys,
            merchant_id=merchant["id"],
            kind="secret",
            livemode=False,
            now=runtime.clock.now(),
        )
        merchants.set_allowed_ips(session, issued.record.id, cidrs)
    return merchant, issued.plaintext


def test_a_key_restricted_to_networks_works_only_from_them(proxied: Runtime) -> None:
    merchant, key = _restricted_key(proxied, ["10.20.0.0/16", "2001:db8::/32"])
    with api_client(proxied, key) as api:
        inside = api.get("/v1/customers", headers={"X-Forwarded-For": "10.20.3.4"})
        assert inside.status_code == 200
        assert api.get("/v1/customers", headers={"X-Forwarded-For": "2001:db8::7"}).is_success
        outside = api.get("/v1/customers", headers={"X-Forwarded-For": "10.21.0.1"})
        error = outside.json()["error"]
        assert outside.status_code == 403 and error["code"] == "ip_not_allowed"
        assert "10.20" not in outside.text  # the allow-list itself is not disclosed
        # A spoofed hop to the left of the real client changes nothing.
        spoofed = api.get("/v1/customers", headers={"X-Forwarded-For": "10.20.3.4, 10.21.0.1"})
        assert spoofed.status_code == 403
    with unit_of_work(proxied.db, write=False) as session:
        denied = session.scalars(
            select(AuditStaged).where(
                AuditStaged.merchant_id == merchant["id"], AuditStaged.outcome == "denied"
            )
        ).all()
    assert [d.details["reason"] for d in denied] == ["ip_not_allowed", "ip_not_allowed"]
    assert {d.origin_ip for d in denied} == {"10.21.0.1"}


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    runtime: Runtime,
) -> None:
    _, key = _restricted_key(runtime, ["10.20.0.0/16"])
    with api_client(runtime, key) as api:  # this runtime trusts no proxy
        response = api.get("/v1/customers", headers={"X-Forwarded-For": "10.20.3.4"})
    assert response.status_code == 403


def test_lifting_the_restriction(proxied: Runtime) -> None:
    _, key = _restricted_key(proxied, ["10.20.0.0/16"])
    with unit_of_work(proxied.db, write=False) as session:
        found = merchants.authenticate(session, proxied.api_keys, key)
    with unit_of_work(proxied.db, write=True) as session:
        merchants.set_allowed_ips(session, found.record.id, None)
    with api_client(proxied, key) as api:
        assert api.get("/v1/customers", headers={"X-Forwarded-For": "192.0.2.9"}).is_success


def test_operator_endpoints_only_from_operator_networks(db_url: str, tmp_path: Path) -> None:
    runtime = make_runtime(db_url, tmp_path, operator_allowed_cidrs=["10.99.0.0/16"])
    token = {"Authorization": f"Bearer {runtime.metrics_token.reveal()}"}
    with api_client(runtime, None) as client:
        response = client.get("/metrics", headers=token)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "ip_not_allowed"
    runtime.db.dispose()
    # The default: loopback only (this client is 127.0.0.1).
    default = make_runtime(db_url, tmp_path)
    with api_client(default, None) as client:
        assert client.get("/metrics", headers=token).status_code == 200
    default.db.dispose()


def test_invalid_networks_are_refused_where_they_are_set(runtime: Runtime) -> None:
    _, key = _restricted_key(runtime, ["10.0.0.0/8"])
    with unit_of_work(runtime.db, write=False) as session:
        key_id = merchants.authenticate(session, runtime.api_keys, key).record.id
    with (
        pytest.raises(InvalidRequestError, match="not an IP network"),
        unit_of_work(runtime.db, write=True) as session,
    ):
        merchants.set_allowed_ips(session, key_id, ["10.0.0.0/33"])


# --- client address behind proxies (unit) ------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "203.0.113.5", "203.0.113.5"),
        # Rightmost untrusted hop wins; anything the client wrote to its left is ignored.
        ("127.0.0.1", "1.1.1.1, 203.0.113.5", "203.0.113.5"),
        ("127.0.0.1", "203.0.113.5, 10.0.0.7", "203.0.113.5"),  # 10/8 is a trusted proxy hop
        ("127.0.0.1", "10.0.0.7", "127.0.0.1"),  # only proxies: attributed to the proxy
        ("127.0.0.1", "203.0.113.5, not-an-ip", "127.0.0.1"),  # garbage: stop believing
        ("198.51.100.1", "203.0.113.5", "198.51.100.1"),  # untrusted peer: header ignored
        ("::ffff:127.0.0.1", "203.0.113.5", "203.0.113.5"),  # IPv4-mapped peer
        ("testclient", "203.0.113.5", "testclient"),  # not an address at all
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    trusted = parse_networks(["127.0.0.1/32", "10.0.0.0/8"])
    assert client_address(peer, forwarded, trusted) == expected
