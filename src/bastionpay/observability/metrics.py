"""Prometheus metrics (issue 3, item 6), served at `GET /metrics` behind a bearer token.

Served on the api's own HTTPS listener rather than a plain-HTTP side port (T1: TLS on every
listener); the token lives in a key file (0600) and is compared in constant time. Labels are
bounded: route templates, never raw paths or ids.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class Metrics:
    """The process's metrics, in a registry of their own (not the library-wide default one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bastionpay_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "bastionpay_http_request_duration_seconds",
            "Request latency",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.payments = Counter(
            "bastionpay_payments",
            "Payment confirmations by outcome",
            ["outcome", "decline_code"],
            registry=r,
        )
        self.ledger_postings = Counter(
            "bastionpay_ledger_postings", "Ledger transactions posted", ["kind"], registry=r
        )
        self.audit_appends = Counter(
            "bastionpay_audit_appends", "Audit events recorded", ["outcome"], registry=r
        )
        self.audit_failures = Counter(
            "bastionpay_audit_append_failures",
            "Audit events that could not be recorded (the action failed closed)",
            registry=r,
        )
        self.auth_failures = Counter(
            "bastionpay_authentication_failures",
            "Failed API authentications and denials",
            ["reason"],
            registry=r,
        )
        # The edge (issue 6): every refusal is counted by its reason.
        self.edge_rejections = Counter(
            "bastionpay_edge_rejections",
            "Requests refused by the edge before the pipeline (filtering, allow-lists)",
            ["reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "bastionpay_rate_limited", "Requests refused by a rate limit", ["category"], registry=r
        )
        self.rate_limit_backend_errors = Counter(
            "bastionpay_rate_limit_backend_errors",
            "Rate-limit store (Redis) failures; the category's fallback policy applied",
            registry=r,
        )
        self.shed = Counter(
            "bastionpay_load_shed",
            "Requests answered 503 by load shedding",
            ["priority"],
            registry=r,
        )
        self.inflight = Gauge(
            "bastionpay_requests_in_flight",
            "API requests admitted and not yet answered",
            registry=r,
        )
        # Risk (issue 7, item 7).
        self.risk_decisions = Counter(
            "bastionpay_risk_decisions", "Risk decisions", ["action", "rule"], registry=r
        )
        self.risk_scores = Histogram(
            "bastionpay_risk_score",
            "Risk scores (0-100)",
            buckets=(10, 20, 30, 40, 50, 65, 75, 90, 100),
            registry=r,
        )
        self.risk_latency = Histogram(
            "bastionpay_risk_assessment_seconds",
            "Time to assess a payment (features, score, rules)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.risk_failures = Counter(
            "bastionpay_risk_failures",
            "Risk assessments that failed or overran their budget",
            ["reason", "policy"],
            registry=r,
        )
        self.risk_model = Gauge(
            "bastionpay_risk_model_info", "The active risk model (value 1)", ["version"], registry=r
        )
        self.checkpoint_age = Gauge(
            "bastionpay_audit_checkpoint_age_seconds",
            "Seconds since the newest signed audit checkpoint (-1: none yet)",
            registry=r,
        )

    def watch_checkpoint_age(self, read: Callable[[], float]) -> None:
        """Compute the gauge at scrape time (the worker writes checkpoints, not this process)."""
        self.checkpoint_age.set_function(read)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def token_matches(presented: str | None, expected: str) -> bool:
    if not presented or not presented.startswith("Bearer "):
        return False
    return hmac.compare_digest(presented.removeprefix("Bearer ").encode(), expected.encode())


METRICS = Metrics()
