"""settings.api_concurrency bounds how many requests run the /v1 pipeline at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import pay

from bastionpay import bootstrap
from bastionpay.payments.interfaces import AuthorizationRequest, AuthorizationResult
from bastionpay.payments.sandbox import SandboxConnector


class CountingConnector(SandboxConnector):
    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.05)  # long enough for the other requests to arrive meanwhile
        with self.lock:
            self.active -= 1
        return super().authorize(request)


@pytest.mark.parametrize("limit", [1, 3])
def test_pipeline_concurrency_is_bounded(pg_db_url: str, tmp_path: Path, limit: int) -> None:
    # On SQLite the single writer serializes payments anyway; PostgreSQL shows the bound itself.
    connector = CountingConnector()
    runtime = make_runtime(pg_db_url, tmp_path, connector=connector, api_concurrency=limit)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    statuses: list[int] = []
    with api_client(runtime, merchant["secret_key"]) as api:

        def one() -> None:
            statuses.append(pay(api).status_code)

        threads = [threading.Thread(target=one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert statuses == [200] * 6
    # Payments share no lock on PostgreSQL, so only the limiter keeps them from overlapping.
    if limit == 1:
        assert connector.peak == 1
    else:
        assert 2 <= connector.peak <= limit
    runtime.db.dispose()
