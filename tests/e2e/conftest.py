"""End-to-end fixtures: the real platform (`bastionpay up`) per database backend.

One platform process tree is started per backend for the whole session (pytest groups the tests
by the session-scoped parameter, so each backend starts exactly once) and every test gets a fresh
merchant, so tests never see each other's objects.

Clients:
- ``client``: the official Stripe SDK (``stripe.StripeClient``) pointed at the platform, verifying
  TLS against the platform's development CA only (never disabled), with no network retries so a
  retry can never hide a server bug.
- ``raw``: a plain ``httpx.Client`` for wire-level checks the SDK hides (headers, form encoding,
  malformed bodies). It authenticates with HTTP Basic (the key as the user name), which Stripe
  documents as its primary scheme; the SDK uses a Bearer token, so both schemes are exercised.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import stripe

STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 20.0
CLI_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 30.0
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"
PG_URL_TEMPLATE = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: starts real platform processes")
    config.addinivalue_line("markers", "postgres: needs PostgreSQL")


# --------------------------------------------------------------------------------------------
# Platform lifecycle
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    backend: str
    data_dir: Path
    env: Mapping[str, str]
    api_url: str
    ca_file: str
    secret_key: str
    publishable_key: str
    merchant_id: str
    log_file: Path

    def log_tail(self, chars: int = 6000) -> str:
        return _tail(self.log_file, chars)


def _tail(path: Path, chars: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no output: {exc}>"
    return text[-chars:]


def _services_required() -> bool:
    return os.environ.get("BASTIONPAY_REQUIRE_SERVICES") == "1"


def _unavailable(reason: str) -> NoReturn:
    if _services_required():
        pytest.fail(f"{reason} (BASTIONPAY_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@dataclass
class _PgDatabase:
    name: str
    url: str


def _create_pg_database() -> _PgDatabase:
    try:
        import psycopg  # noqa: PLC0415 - only needed for the postgresql backend
        from psycopg import sql  # noqa: PLC0415
    except ImportError as exc:
        _unavailable(f"psycopg is not installed: {exc}")
    name = f"bp_e2e_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        _unavailable(f"PostgreSQL on 127.0.0.1:5432 is unreachable: {exc}")
    return _PgDatabase(name=name, url=PG_URL_TEMPLATE.format(db=name))


def _drop_pg_database(db: _PgDatabase) -> None:
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (db.name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(db.name)))


def _platform_env(database_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    # An inherited BASTIONPAY_DATABASE_URL must not leak into the SQLite run.
    env.pop("BASTIONPAY_DATABASE_URL", None)
    if database_url is not None:
        env["BASTIONPAY_DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    # The SDK suites drive one key faster than Stripe's test-mode 25 requests/s, and the client
    # never retries; the edge's own tests exercise the limits (tests/functional/test_edge_*.py).
    env["BASTIONPAY_RATE_LIMIT_TEST_READ"] = "2000/second"
    env["BASTIONPAY_RATE_LIMIT_TEST_WRITE"] = "2000/second"
    # The real payment path: every confirmation is scored by the simulator-trained model.
    env["BASTIONPAY_RISK_ENABLED"] = "1"
    # The risk budget (P3) is a production safety bound of 250 ms; here the platform shares two
    # cores with a parallel test run, and a scheduler stall once failed a payment closed
    # (`risk_unavailable`) in CI. The budget's overrun path has its own tests under a forced
    # timeout (tests/functional/test_risk_decisions.py); these suites test the payment path.
    env["BASTIONPAY_RISK_TIME_BUDGET_MS"] = "5000"
    return env


def _tls_context(ca_file: str) -> ssl.SSLContext:
    # Trust exactly the platform's development CA (no system roots), hostname checks on.
    return ssl.create_default_context(cafile=ca_file)


def _wait_for_run_json(
    proc: subprocess.Popen[bytes], run_json: Path, log_file: Path
) -> dict[str, str]:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"`bastionpay up` exited with code {proc.returncode} before it was ready.\n"
                f"--- output ---\n{_tail(log_file)}"
            )
        if run_json.exists():
            try:
                info = json.loads(run_json.read_text())
            except (json.JSONDecodeError, OSError):
                info = None  # still being written
            if isinstance(info, dict):
                missing = {
                    "api_url",
                    "ca_file",
                    "secret_key",
                    "publishable_key",
                    "merchant_id",
                } - info.keys()
                if not missing:
                    return info
        time.sleep(0.1)
    pytest.fail(
        f"`bastionpay up` did not write {run_json} within {STARTUP_TIMEOUT_S:.0f} s.\n"
        f"--- output ---\n{_tail(log_file)}"
    )


def _wait_healthy(api_url: str, ca_file: str, log_file: Path) -> None:
    deadline = time.monotonic() + 15.0
    last: object = None
    with httpx.Client(verify=_tls_context(ca_file), timeout=5.0) as http:
        while time.monotonic() < deadline:
            try:
                resp = http.get(f"{api_url}/healthz")
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
    pytest.fail(f"{api_url}/healthz never answered 200 (last: {last})\n{_tail(log_file)}")


def _process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PlatformRunner:
    """Runs `bastionpay up` on one data dir; can be stopped and started again on the same dir."""

    def __init__(self, backend: str, data_dir: Path, env: Mapping[str, str]) -> None:
        self.backend = backend
        self.data_dir = data_dir
        self.env = dict(env)
        self.log_file = data_dir.parent / f"{data_dir.name}-up.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Platform:
        assert self.proc is None, "already running"
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bastionpay",
                    "up",
                    "--data-dir",
                    str(self.data_dir),
                    "--host",
                    "127.0.0.1",
                    "--api-port",
                    "0",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # its own process group: children can be checked/reaped
            )
        info = _wait_for_run_json(self.proc, self.data_dir / "run.json", self.log_file)
        _wait_healthy(info["api_url"], info["ca_file"], self.log_file)
        return Platform(
            backend=self.backend,
            data_dir=self.data_dir,
            env=self.env,
            api_url=info["api_url"].rstrip("/"),
            ca_file=info["ca_file"],
            secret_key=info["secret_key"],
            publishable_key=info["publishable_key"],
            merchant_id=info["merchant_id"],
            log_file=self.log_file,
        )

    def stop(self, sig: signal.Signals = signal.SIGINT) -> None:
        """Signal the platform and require a clean exit (code 0) and no stray children."""
        proc, self.proc = self.proc, None
        assert proc is not None, "not running"
        pgid = proc.pid
        if proc.poll() is not None:
            pytest.fail(
                f"`bastionpay up` died while in use, with code {proc.returncode}.\n"
                f"{_tail(self.log_file)}"
            )
        proc.send_signal(sig)
        try:
            code = proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait(timeout=10)
            pytest.fail(
                f"`bastionpay up` did not exit within {SHUTDOWN_TIMEOUT_S:.0f} s of {sig.name}.\n"
                f"{_tail(self.log_file)}"
            )
        # Children (api, vault, acquirer, worker) must be gone too; give them a moment.
        deadline = time.monotonic() + 5.0
        while _process_group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        strays = _process_group_alive(pgid)
        if strays:
            os.killpg(pgid, signal.SIGKILL)
        assert code == 0, (
            f"`bastionpay up` exited with {code} after {sig.name}.\n{_tail(self.log_file)}"
        )
        assert not strays, f"child processes of `bastionpay up` survived {sig.name}"

    def kill(self) -> None:
        """Last-resort cleanup for a runner a failed test left running."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    backend: str = request.param
    pg_db = _create_pg_database() if backend == "postgresql" else None
    try:
        runner = PlatformRunner(
            backend,
            tmp_path_factory.mktemp(f"bastionpay-{backend}"),
            _platform_env(pg_db.url if pg_db else None),
        )
        try:
            yield runner.start()
            runner.stop(signal.SIGINT)
        finally:
            runner.kill()
    finally:
        if pg_db is not None:
            _drop_pg_database(pg_db)


@pytest.fixture
def sqlite_runner(tmp_path: Path) -> Iterator[PlatformRunner]:
    """A private platform on SQLite, for lifecycle tests that stop and restart it."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    runner = PlatformRunner("sqlite", data_dir, _platform_env(None))
    yield runner
    runner.kill()


# --------------------------------------------------------------------------------------------
# Merchants and clients
# --------------------------------------------------------------------------------------------


class MerchantCreationError(RuntimeError):
    pass


def _create_merchant(platform: Platform, name: str) -> dict[str, str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bastionpay",
            "merchants",
            "create",
            "--name",
            name,
            "--data-dir",
            str(platform.data_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=dict(platform.env),
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise MerchantCreationError(
            f"`bastionpay merchants create` failed with {result.returncode}:\n"
            f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
        )
    try:
        merchant = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise MerchantCreationError(
            f"`merchants create --json` did not print one JSON object:\n{result.stdout[-3000:]}"
        ) from exc
    if not (
        str(merchant.get("id", "")).startswith("acct_")
        and str(merchant.get("secret_key", "")).startswith("sk_test_")
        and str(merchant.get("publishable_key", "")).startswith("pk_test_")
    ):
        raise MerchantCreationError(f"unexpected merchant shape (keys: {sorted(merchant)})")
    return merchant


class MerchantPool:
    """Creates merchants ahead of use with the real CLI, a few at a time.

    `merchants create` is a separate Python process (about a second each); with a fresh merchant
    per test that would dominate the suite's run time, so a small pool works ahead in threads.
    """

    def __init__(self, platform: Platform, ahead: int = 4, workers: int = 3) -> None:
        self._platform = platform
        self._ahead = ahead
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="merchants")
        self._pending: deque[Future[dict[str, str]]] = deque()

    def _submit(self) -> None:
        name = f"E2E Shop {secrets.token_hex(4)}"
        self._pending.append(self._executor.submit(_create_merchant, self._platform, name))

    def take(self) -> dict[str, str]:
        while len(self._pending) < self._ahead + 1:
            self._submit()
        future = self._pending.popleft()
        try:
            return future.result(timeout=CLI_TIMEOUT_S + 10)
        except MerchantCreationError as exc:
            pytest.fail(str(exc))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def merchant_pool(platform: Platform) -> Iterator[MerchantPool]:
    pool = MerchantPool(platform)
    yield pool
    pool.close()


@pytest.fixture
def make_merchant(merchant_pool: MerchantPool) -> Callable[[], dict[str, str]]:
    return merchant_pool.take


@pytest.fixture
def merchant(make_merchant: Callable[[], dict[str, str]]) -> dict[str, str]:
    return make_merchant()


class DevCAHTTPClient(stripe.HTTPClient):
    """A synchronous `stripe.HTTPClient` on httpx that trusts one CA file.

    stripe-python's bundled clients take their trust store from the process-global
    ``stripe.ca_bundle_path`` (read per request by RequestsClient), which cannot differ between
    the two platforms of one session; subclassing ``stripe.HTTPClient`` is the SDK's documented
    extension point, and this one verifies certificates and hostnames against the platform's CA.
    """

    name = "bastionpay-e2e-httpx"

    def __init__(self, ca_file: str) -> None:
        super().__init__()
        self._http = httpx.Client(verify=_tls_context(ca_file), timeout=HTTP_TIMEOUT_S)

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        **_kwargs: Any,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            resp = self._http.request(method.upper(), url, headers=headers, content=post_data)
        except httpx.HTTPError as exc:
            raise stripe.APIConnectionError(
                f"could not reach BastionPay: {exc!r}", should_retry=False
            ) from exc
        return resp.content, resp.status_code, resp.headers

    def close(self) -> None:
        self._http.close()


class StripeClientFactory:
    """Makes Stripe SDK clients for any running platform and secret key; closes them all."""

    def __init__(self) -> None:
        self._http_clients: list[DevCAHTTPClient] = []

    def __call__(self, target: Platform, secret_key: str) -> stripe.StripeClient:
        http_client = DevCAHTTPClient(target.ca_file)
        self._http_clients.append(http_client)
        return stripe.StripeClient(
            secret_key,
            base_addresses={"api": target.api_url},
            http_client=http_client,
            max_network_retries=0,  # a retry must never hide a server bug
        )

    def close(self) -> None:
        """Close every client made so far (drops their keep-alive connections)."""
        while self._http_clients:
            self._http_clients.pop().close()


@pytest.fixture
def stripe_client_for() -> Iterator[StripeClientFactory]:
    factory = StripeClientFactory()
    yield factory
    factory.close()


@pytest.fixture
def make_client(
    platform: Platform, stripe_client_for: StripeClientFactory
) -> Callable[..., stripe.StripeClient]:
    def make(secret_key: str | dict[str, str]) -> stripe.StripeClient:
        key = secret_key["secret_key"] if isinstance(secret_key, dict) else secret_key
        return stripe_client_for(platform, key)

    return make


@pytest.fixture
def merchant_cli() -> Callable[[Platform, str], dict[str, str]]:
    """`bastionpay merchants create --json` against a given platform (raises on failure)."""
    return _create_merchant


@pytest.fixture
def client(
    make_client: Callable[..., stripe.StripeClient], merchant: dict[str, str]
) -> stripe.StripeClient:
    return make_client(merchant)


@pytest.fixture
def make_raw(platform: Platform) -> Iterator[Callable[..., httpx.Client]]:
    raws: list[httpx.Client] = []

    def make(secret_key: str | dict[str, str] | None) -> httpx.Client:
        if isinstance(secret_key, dict):
            secret_key = secret_key["secret_key"]
        http = httpx.Client(
            base_url=platform.api_url,
            verify=_tls_context(platform.ca_file),
            auth=(secret_key, "") if secret_key is not None else None,
            timeout=HTTP_TIMEOUT_S,
        )
        raws.append(http)
        return http

    yield make
    for http in raws:
        http.close()


@pytest.fixture
def raw(make_raw: Callable[..., httpx.Client], merchant: dict[str, str]) -> httpx.Client:
    return make_raw(merchant)


# --------------------------------------------------------------------------------------------
# Domain helpers shared by the modules (importlib import mode: no cross-module imports)
# --------------------------------------------------------------------------------------------


def fee_for(amount: int) -> int:
    """The contract's pricing: 2.9 % rounded half-up to a minor unit, plus 30 minor units."""
    percent = (Decimal(amount) * Decimal("0.029")).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(percent) + 30


@pytest.fixture
def stripe_fee() -> Callable[[int], int]:
    return fee_for


@pytest.fixture
def pay(client: stripe.StripeClient) -> Callable[..., stripe.PaymentIntent]:
    """Create and confirm a PaymentIntent in one call (Stripe's `confirm=true`)."""

    def make(
        amount: int = 2000, payment_method: str = "pm_card_visa", **params: Any
    ) -> stripe.PaymentIntent:
        return client.v1.payment_intents.create(
            {
                "amount": amount,
                "currency": "usd",
                "payment_method": payment_method,
                "confirm": True,
                **params,
            }
        )

    return make


def usd_balance_total(balance: stripe.Balance) -> int:
    """Available + pending funds in USD (test-mode charges settle into pending first)."""
    total = 0
    for bucket in ("available", "pending"):
        for fund in getattr(balance, bucket, None) or []:
            if fund.currency == "usd":
                total += fund.amount
    return total


@pytest.fixture
def balance_total(client: stripe.StripeClient) -> Callable[[], int]:
    def total() -> int:
        return usd_balance_total(client.v1.balance.retrieve())

    return total
