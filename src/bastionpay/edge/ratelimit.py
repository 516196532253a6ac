"""Rate limits (SECURITY-REQUIREMENTS T4) with the `limits` library: memory, or Redis if configured.

Counting uses the sliding-window-counter strategy: two counters per key and window, so a limit
costs O(1) memory per caller however many requests it makes, and bursts at a window edge cannot
double the rate the way fixed windows allow.

When Redis fails, each category follows its own policy (docs/security/edge.md):
- ``local``: count in this process's memory instead, with the same limits. With N api processes a
  caller can reach N times the limit while Redis is down — bounded, and never "allow everything".
  Used for the API itself, so payments keep flowing through a Redis outage.
- ``closed``: refuse with 503 `rate_limiter_unavailable`. Used for login and MFA, where an unlimited
  window is exactly what a credential-stuffing run needs (identity issue).
After a Redis failure the limiter stays on the fallback for `redis_retry_seconds` instead of paying
a connection timeout on every request, then tries Redis again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import SlidingWindowCounterRateLimiter

from bastionpay.kernel.errors import RateLimited, ServiceUnavailable
from bastionpay.observability.metrics import METRICS

log = logging.getLogger("bastionpay.edge")

Policy = Literal["local", "closed"]


@dataclass(frozen=True)
class Category:
    """One family of limits. `name` is a metrics label and part of the storage key."""

    name: str
    on_backend_failure: Policy
    message: str


API_READ = Category(
    "api_read",
    "local",
    "Too many requests hit the API too quickly. We recommend an exponential backoff of your "
    "requests.",
)
API_WRITE = Category("api_write", "local", API_READ.message)
UNAUTHENTICATED = Category(
    "unauthenticated_ip", "local", "Too many requests from this address. Try again later."
)
AUTH_FAILURES = Category(
    "auth_failures_ip",
    "local",
    "Too many failed authentication attempts from this address. Try again later.",
)
# Used by the identity issue's login and MFA endpoints: fail closed when the counter store is down.
LOGIN_ACCOUNT = Category("login_account", "closed", "Too many login attempts. Try again later.")
LOGIN_IP = Category("login_ip", "closed", LOGIN_ACCOUNT.message)
LOGIN_GLOBAL = Category("login_global", "closed", LOGIN_ACCOUNT.message)
# The OAuth token, introspection and revocation endpoints, per client address: bounds guessing of
# client secrets, codes and refresh tokens (I6, T4). Fails closed like login.
OAUTH_IP = Category("oauth_ip", "closed", "Too many OAuth requests from this address.")


@lru_cache(maxsize=256)
def parse_limit(text: str) -> RateLimitItem:
    """`"100/second"`, `"30/minute"`, … (the `limits` notation); ValueError on anything else."""
    return parse(text)


def check_limit(text: str) -> str:
    """Validate a limit string for settings and the CLI; returns it unchanged."""
    parse_limit(text)
    return text


class RateLimits:
    """Thread-safe: the pipeline calls it from worker threads."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis_timeout_seconds: float = 0.1,
        redis_retry_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared: SlidingWindowCounterRateLimiter | None = None
        self._backend = "memory"
        if redis_url:
            storage: Storage = RedisStorage(
                redis_url,
                wrap_exceptions=True,
                socket_timeout=redis_timeout_seconds,
                socket_connect_timeout=redis_timeout_seconds,
            )
            self._shared = SlidingWindowCounterRateLimiter(storage)
            self._backend = "redis"
        self._retry_seconds = redis_retry_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._shared_down_until = 0.0

    @property
    def backend(self) -> str:
        return self._backend

    def hit(self, category: Category, limit: str, *identifiers: str) -> None:
        """Count one request; raise RateLimited (429) over the limit.

        Raises ServiceUnavailable (503) for a fail-closed category whose shared store is down.
        """
        item = parse_limit(limit)
        keys = (category.name, *identifiers)
        limiter = self._limiter_for(category)
        try:
            allowed = limiter.hit(item, *keys)
        except StorageError:
            limiter = self._shared_failed(category)
            allowed = limiter.hit(item, *keys)
        if allowed:
            return
        METRICS.rate_limited.labels(category.name).inc()
        try:
            reset = limiter.get_window_stats(item, *keys).reset_time
        except StorageError:
            reset = time.time() + 1
        raise RateLimited(category.message, retry_after=math.ceil(reset - time.time()))

    def _limiter_for(self, category: Category) -> SlidingWindowCounterRateLimiter:
        if self._shared is None:
            return self._local
        with self._lock:
            down = self._monotonic() < self._shared_down_until
        if not down:
            return self._shared
        return self._fallback(category)

    def _shared_failed(self, category: Category) -> SlidingWindowCounterRateLimiter:
        METRICS.rate_limit_backend_errors.inc()
        with self._lock:
            first = self._monotonic() >= self._shared_down_until
            self._shared_down_until = self._monotonic() + self._retry_seconds
        if first:
            log.warning(
                "rate limit store unreachable; fallback for %.0f s (login fails closed)",
                self._retry_seconds,
            )
        return self._fallback(category)

    def _fallback(self, category: Category) -> SlidingWindowCounterRateLimiter:
        if category.on_backend_failure == "closed":
            raise ServiceUnavailable(
                "Rate limiting is temporarily unavailable; this request was refused for safety. "
                "Try again shortly.",
                code="rate_limiter_unavailable",
                retry_after=math.ceil(self._retry_seconds),
            )
        return self._local
