"""`GET /metrics`: Prometheus text, behind its own token, with the numbers issue 3 asks for."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from tests.conftest import api_client
from tests.functional.helpers import pay

from bastionpay.runtime import Runtime


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _scrape(runtime: Runtime) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with api_client(runtime, None) as client:
        response = client.get(
            "/metrics", headers={"Authorization": f"Bearer {runtime.metrics_token.reveal()}"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


def test_metrics_need_the_metrics_token(runtime: Runtime, api: TestClient) -> None:
    assert api.get("/metrics").status_code == 401  # a merchant's secret key is not enough
    with api_client(runtime, None) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
        wrong = anonymous.get("/metrics", headers={"Authorization": "Bearer " + "0" * 64})
        assert wrong.status_code == 401


def test_metrics_count_requests_payments_postings_audit_and_auth_failures(
    runtime: Runtime, api: TestClient, merchant: dict[str, Any]
) -> None:
    before = _scrape(runtime)
    assert pay(api, 2000).status_code == 200
    assert pay(api, 2000, pm="pm_card_chargeDeclinedInsufficientFunds").status_code == 402
    with api_client(runtime, "sk_test_wrongwrongwrong") as bad:
        assert bad.get("/v1/balance").status_code == 401
    after = _scrape(runtime)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    route = {"route": "/v1/payment_intents", "method": "POST"}
    assert delta("bastionpay_http_requests_total", status="200", **route) == 1
    assert delta("bastionpay_http_requests_total", status="402", **route) == 1
    assert delta("bastionpay_http_request_duration_seconds_count", **route) == 2
    assert delta("bastionpay_payments_total", outcome="succeeded", decline_code="") == 1
    assert (
        delta("bastionpay_payments_total", outcome="declined", decline_code="insufficient_funds")
        == 1
    )
    assert delta("bastionpay_ledger_postings_total", kind="capture") == 1
    assert delta("bastionpay_audit_appends_total", outcome="success") >= 1
    assert delta("bastionpay_audit_appends_total", outcome="failure") >= 2  # decline + 401
    assert delta("bastionpay_authentication_failures_total", reason="invalid_key") == 1
    assert ("bastionpay_audit_checkpoint_age_seconds", ()) in after
