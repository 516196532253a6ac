"""SECURITY-REQUIREMENTS L3 / C5 on the real processes: card numbers and secrets sent through every
input path never appear in any log line the platform writes, and are never stored.

The platform's stdout/stderr (supervisor, api and worker, JSON lines) go to `platform.log_file`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from bastionpay.kernel.pan import find_pans

PANS = ["4242424242424242", "5555 5555 5555 4444", "3782-822463-10005", "6011111111111117"]
CVC = "cvc=987"
PASSWORD = "hunter2-Sup3rSecret"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"


@pytest.mark.e2e
def test_no_card_number_or_secret_reaches_any_log_line(
    platform: object, make_raw: Callable[..., httpx.Client], merchant: dict[str, str]
) -> None:
    log_file = platform.log_file  # type: ignore[attr-defined]
    raw = make_raw(merchant)
    anonymous = make_raw(None)
    start = log_file.stat().st_size
    for pan in PANS:
        compact = pan.replace(" ", "").replace("-", "")
        # query string, unknown parameter names, values, metadata, JSON, path, headers, auth
        raw.get("/v1/payment_intents", params={"customer": pan, "card[number]": pan})
        raw.post(
            "/v1/payment_intents",
            data={
                "amount": "100",
                "currency": "usd",
                "description": f"card {pan} {CVC}",
                f"metadata[{compact}]": pan,
                compact: pan,
            },
        )
        raw.post(
            "/v1/customers", json={"name": pan, "metadata": {"note": pan}, "password": PASSWORD}
        )
        raw.get(f"/v1/payment_intents/{compact}")
        raw.get(f"/v1/customers/{pan}")
        raw.post(
            "/v1/payment_intents",
            data={"amount": "x", "currency": "usd"},
            headers={
                "Idempotency-Key": pan,
                "User-Agent": f"agent {pan}",
                "Cookie": f"session={PASSWORD}",
            },
        )
        anonymous.get("/v1/balance", headers={"Authorization": f"Bearer {pan}"})
        anonymous.get("/v1/balance", headers={"Authorization": f"Bearer {BEARER}"})
        anonymous.get(f"/v1/nothing/{pan}?cvc=123&password={PASSWORD}")
    raw.get("/v1/balance")  # a normal request still logs, with its request id
    time.sleep(2.5)  # let the worker seal and log a cycle too

    with log_file.open("rb") as stream:
        stream.seek(start)
        text = stream.read().decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) >= 40, text[-2000:]  # the requests above really produced log lines
    assert any(r.get("event") == "request_error" for r in records)
    assert any(r.get("request_id", "").startswith("req_") for r in records)
    assert find_pans(text) == [], [line for line in lines if find_pans(line)][:3]
    for secret in (PASSWORD, BEARER, merchant["secret_key"], CVC):
        assert secret not in text, secret

    # And nothing of it was stored: free-text fields refuse card numbers (C5).
    listed = raw.get("/v1/customers", params={"limit": 100}).json()["data"]
    assert not any(find_pans(json.dumps(customer)) for customer in listed)
