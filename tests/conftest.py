"""Shared fixtures: databases on both backends, a runtime, merchants and an ASGI client.

Storage-touching tests take `db_url`, which is parametrized over SQLite and PostgreSQL. PostgreSQL
(127.0.0.1:5432, trust auth) is skipped when absent, except under CI, where
BASTIONPAY_REQUIRE_SERVICES=1 turns the skip into a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from bastionpay import bootstrap
from bastionpay.api.app import create_app
from bastionpay.config import Settings
from bastionpay.db import migrate
from bastionpay.db.engine import Database, dispose_all
from bastionpay.kernel.clock import FrozenClock
from bastionpay.payments.interfaces import ProcessorConnector
from bastionpay.runtime import Runtime, build_runtime

PG_ADMIN_URL = os.environ.get(
    "BASTIONPAY_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("BASTIONPAY_REQUIRE_SERVICES") == "1"
# Settings built in this process (CLI tests, TLS servers) skip risk scoring unless a test asks:
# it needs a trained model. The e2e platform turns it back on (tests/e2e/conftest.py).
os.environ.setdefault("BASTIONPAY_RISK_ENABLED", "0")


def _pg_admin() -> Any:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if REQUIRE_SERVICES:
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")


def create_pg_database() -> tuple[str, str]:
    name = f"bp_test_{secrets.token_hex(6)}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{base}/{name}"


def drop_pg_database(name: str) -> None:
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _fresh_url(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'api.db'}"
        return
    name, url = create_pg_database()
    try:
        yield url
    finally:
        dispose_all()
        drop_pg_database(name)


@pytest.fixture(scope="session")
def db_url(db_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database shared by a session (tests isolate themselves by merchant)."""
    for url in _fresh_url(db_backend, tmp_path_factory.mktemp("db")):
        migrate.upgrade(url)
        yield url


@pytest.fixture
def fresh_db_url(db_backend: str, tmp_path: Path) -> Iterator[str]:
    """A migrated database of its own, for tests that tamper with or count whole tables."""
    for url in _fresh_url(db_backend, tmp_path):
        migrate.upgrade(url)
        yield url


@pytest.fixture
def pg_db_url(tmp_path: Path) -> Iterator[str]:
    """A migrated PostgreSQL database of its own, for behaviour SQLite cannot show."""
    for url in _fresh_url("postgresql", tmp_path):
        migrate.upgrade(url)
        yield url


def make_runtime(
    url: str,
    data_dir: Path,
    *,
    clock: FrozenClock | None = None,
    connector: ProcessorConnector | None = None,
    **settings: Any,
) -> Runtime:
    # Tests drive one key far faster than Stripe's test-mode 25 requests/s; the edge's own tests
    # (tests/functional/test_edge_*.py) set the limits they exercise.
    for name in ("rate_limit_test_read", "rate_limit_test_write"):
        settings.setdefault(name, "100000/second")
    # Risk scoring needs a trained model; the risk tests bring their own engine (test_risk_*).
    settings.setdefault("risk_enabled", False)
    config = Settings(data_dir=data_dir, database_url=url, **settings)
    return build_runtime(config, clock=clock, connector=connector, db=Database(url))


@pytest.fixture(scope="session")
def runtime(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    rt = make_runtime(db_url, tmp_path_factory.mktemp("data"))
    yield rt
    rt.db.dispose()


@pytest.fixture
def merchant(runtime: Runtime) -> dict[str, Any]:
    return bootstrap.create_merchant_with_keys(runtime, "Test merchant")


def api_client(runtime: Runtime, secret_key: str | None) -> TestClient:
    client = TestClient(
        create_app(runtime),
        base_url="https://localhost",
        raise_server_exceptions=True,
        client=("127.0.0.1", 50000),
    )
    if secret_key is not None:
        client.headers["Authorization"] = f"Bearer {secret_key}"
    return client


@pytest.fixture
def api(runtime: Runtime, merchant: dict[str, Any]) -> Iterator[TestClient]:
    with api_client(runtime, merchant["secret_key"]) as client:
        yield client
