"""Shared fixtures for the vault's functional tests (no tests here).

`VaultEnv` is a whole vault process in this test process: both listeners on 127.0.0.1:0 in a
thread (real TLS, real mTLS), a real acquirer host on 127.0.0.1:0 in another, the dev PKI, a
frozen clock (CVC expiry), and the logs captured as JSON lines for the card-data scans.
"""

from __future__ import annotations

import io
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from tests.conftest import make_runtime

from bastionpay.acquirer.background import BackgroundAcquirer
from bastionpay.acquirer.client import AcquirerClient
from bastionpay.acquirer.settings import AcquirerSettings
from bastionpay.db import migrate
from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.ids import random_base62
from bastionpay.observability.logging import configure_logging
from bastionpay.payments.vault_connector import VaultConnector, card_vault
from bastionpay.runtime import Runtime
from bastionpay.vault.pki import VaultTls, vault_tls
from bastionpay.vault.runtime import VaultRuntime, build_vault_runtime
from bastionpay.vault.server import Listeners, VaultServer, bind
from bastionpay.vault.settings import VaultSettings

SHOP = "https://shop.example"
OTHER_SHOP = "https://other-shop.example"
EVIL = "https://evil.example"


@dataclass
class VaultEnv:
    data_dir: Path
    runtime: VaultRuntime
    tls: VaultTls
    server: VaultServer
    acquirer: BackgroundAcquirer
    clock: FrozenClock
    logs: io.StringIO

    @property
    def internal_url(self) -> str:
        return f"https://127.0.0.1:{self.server.listeners.internal_port}"

    @property
    def public_url(self) -> str:
        return f"https://127.0.0.1:{self.server.listeners.public_port}"

    def ca_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls.ca_file))

    def api_context(self) -> ssl.SSLContext:
        """What the api presents: the platform CA to trust, its client certificate to show."""
        context = self.ca_context()
        cert = self.tls.api_client_cert_file
        assert cert is not None
        context.load_cert_chain(str(cert), str(cert.with_suffix(".key")))
        return context

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.internal_url, verify=self.api_context(), timeout=15)

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.public_url, verify=self.ca_context(), timeout=15)

    def audit_actions(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(action, outcome, details) of every event, sealed or staged, in order."""
        self.server.worker.flush()
        with self.runtime.db.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT action, outcome, details FROM audit_entries ORDER BY seq")
            ).all()
        return [(row[0], row[1], _json(row[2])) for row in rows]


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll `check` until it holds (server-side work, like auditing a refused handshake, finishes
    a moment after the client has seen the refusal)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _json(value: Any) -> dict[str, Any]:
    import json  # noqa: PLC0415

    return value if isinstance(value, dict) else dict(json.loads(value))


def new_merchant() -> str:
    return f"acct_{random_base62(16)}"


def register_key(
    env: VaultEnv, merchant_id: str, *, origins: tuple[str, ...] = (SHOP,), livemode: bool = False
) -> str:
    key = f"pk_{'live' if livemode else 'test'}_{random_base62(32)}"
    with env.api() as api:
        response = api.post(
            "/internal/v1/publishable_keys",
            json={
                "id": f"key_{random_base62(16)}",
                "key": key,
                "merchant_id": merchant_id,
                "livemode": livemode,
                "allowed_origins": list(origins),
            },
        )
    assert response.status_code == 200, response.text
    return key


def tokenize(
    env: VaultEnv,
    key: str,
    number: str,
    *,
    cvc: str | None = "123",
    exp_month: str = "12",
    exp_year: str = "2031",
    origin: str | None = SHOP,
) -> httpx.Response:
    data = {"type": "card", "card[number]": number, "card[exp_month]": exp_month}
    data["card[exp_year]"] = exp_year
    if cvc is not None:
        data["card[cvc]"] = cvc
    headers = {"Authorization": f"Bearer {key}"}
    if origin is not None:
        headers["Origin"] = origin
    with env.browser() as browser:
        return browser.post("/v1/payment_methods", data=data, headers=headers)


def start_vault(tmp: Path, *, acquirer_timeout: float = 0.6, **settings: Any) -> Iterator[VaultEnv]:
    logs = io.StringIO()
    configure_logging(level=logging.INFO, stream=logs)
    clock = FrozenClock(int(time.time()))
    acquirer = BackgroundAcquirer(AcquirerSettings(port=0, slow_ms=200, max_connections=32))
    acquirer.start()
    options: dict[str, Any] = {
        "data_dir": tmp,
        "internal_port": 0,
        "public_port": 0,
        "acquirer_port": acquirer.port,
        "frame_ancestors": [SHOP],
        # The longest allowed: the tests purge when they choose (frozen clock), and a background
        # run in between only deletes what the test has already let expire.
        "purge_interval_seconds": 60,
        "rate_limit_tokenize_ip": "10000/minute",
        "rate_limit_tokenize_key": "10000/minute",
        "rate_limit_page_ip": "10000/minute",
        **settings,
    }
    vault_settings = VaultSettings(**options)
    client = AcquirerClient(
        acquirer.host,
        acquirer.port,
        timeout=acquirer_timeout,
        reversal_timeout=acquirer_timeout,
        reversal_attempts=2,
        retry_backoff=0.05,
    )
    runtime = build_vault_runtime(vault_settings, clock=clock, acquirer=client)
    tls = vault_tls(vault_settings)
    server = VaultServer(
        runtime, tls, Listeners(internal=bind("127.0.0.1", 0), public=bind("127.0.0.1", 0))
    )
    server.start()
    try:
        yield VaultEnv(tmp, runtime, tls, server, acquirer, clock, logs)
    finally:
        server.stop()
        acquirer.stop()
        runtime.close()
        root = logging.getLogger()
        for handler in list(root.handlers):  # stop capturing: later tests log elsewhere
            if getattr(handler, "stream", None) is logs:
                root.removeHandler(handler)


@pytest.fixture(scope="module")
def vault_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultEnv]:
    yield from start_vault(tmp_path_factory.mktemp("vault"))


def api_runtime_for(env: VaultEnv, data: Path) -> Runtime:
    """An api runtime (SQLite under `data`, migrated) whose payments go to `env`'s vault over
    mutual TLS with the api's client certificate. The caller disposes it (`close_api_runtime`)."""
    url = f"sqlite:///{data / 'api.db'}"
    migrate.upgrade(url)
    cert = env.tls.api_client_cert_file
    assert cert is not None
    runtime = make_runtime(
        url,
        data,
        vault_url=env.internal_url,
        vault_ca_file=env.tls.ca_file,
        vault_client_cert_file=cert,
        vault_client_key_file=cert.with_suffix(".key"),
        vault_timeout_seconds=20,
    )
    assert isinstance(runtime.connector, VaultConnector)
    return runtime


def close_api_runtime(runtime: Runtime) -> None:
    vault = card_vault(runtime.connector)
    assert vault is not None
    vault.close()
    runtime.db.dispose()
