"""`bastionpay up` (the supervisor), `bastionpay api` and `bastionpay worker`.

`up` starts the whole chain: the acquirer simulator, then the card vault (pointed at the
acquirer), then the api (pointed at the vault's internal mTLS listener, with the api's client
certificate) and the worker. The acquirer and the vault pick free ports and report them in ready
files (`<data_dir>/acquirer-ready.json`, `vault-ready.json`), which `up` waits for with a bounded
timeout. `--no-vault` (or `BASTIONPAY_NO_VAULT=1`) runs only api + worker on the in-process sandbox
connector, for debugging.

The supervisor binds the api's listening socket itself and hands it to the api process, so
`--api-port 0` yields a real port before anything starts and a restart never races for the port.
It writes `run.json` only once `/healthz` answers over verified TLS, and on Ctrl-C or SIGTERM it
stops every child in reverse start order (SIGTERM, then SIGKILL after a grace period) and removes
`run.json`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import httpx

from bastionpay import bootstrap
from bastionpay.cli.common import configure_logging, data_dir_option, settings_for
from bastionpay.config import Settings
from bastionpay.crypto.keyfiles import write_private
from bastionpay.edge.tls import client_context
from bastionpay.jobs.worker import run_forever
from bastionpay.kernel.errors import BastionPayError
from bastionpay.runtime import build_runtime

READY_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 15.0
ACQUIRER_READY_FILE = "acquirer-ready.json"
VAULT_READY_FILE = "vault-ready.json"
# The api's settings for reaching the vault; `--no-vault` removes any inherited ones.
VAULT_CLIENT_ENV = (
    "BASTIONPAY_VAULT_URL",
    "BASTIONPAY_VAULT_CA_FILE",
    "BASTIONPAY_VAULT_CLIENT_CERT_FILE",
    "BASTIONPAY_VAULT_CLIENT_KEY_FILE",
)


class Stopping(click.ClickException):
    """A signal arrived while the platform was still starting."""

    exit_code = 0


def _bind(host: str, port: int) -> socket.socket:
    from bastionpay.server import bind  # noqa: PLC0415 - keeps the web stack out of admin commands

    return bind(host, port)


def _url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _child_env(settings: Settings, data: Path, port: int) -> dict[str, str]:
    env = {**os.environ, "BASTIONPAY_DATA_DIR": str(data)}
    public_url = _public_url_for(settings, port)
    if public_url is not None:
        env["BASTIONPAY_PUBLIC_URL"] = public_url
    return env


def _public_url_for(settings: Settings, port: int) -> str | None:
    """The public origin with the port actually bound, unless the operator set `public_url`.

    OAuth's issuer, WebAuthn's expected origin and invitation links all derive from
    `public_url`; with `--api-port 0` (tests, the benchmark) the default's port 8443 would name a
    server that is not there. The host is kept (`localhost`: WebAuthn's relying-party id).
    """
    if "public_url" in settings.model_fields_set:
        return None
    parts = urlsplit(settings.public_url)
    if parts.port == port:
        return None
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))


def _wait_ready(url: str, ca_file: Path | None, children: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    verify: ssl.SSLContext | bool = client_context(ca_file) if ca_file else True
    last_error = "no answer"
    while time.monotonic() < deadline:
        for child in children:
            if child.poll() is not None:
                raise click.ClickException(f"a platform process exited early ({child.args!r})")
        try:
            response = httpx.get(f"{url}/healthz", verify=verify, timeout=2.0)
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last_error = type(exc).__name__
        time.sleep(0.2)
    raise click.ClickException(f"the api did not become healthy in time ({last_error})")


def _stop_group(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _stop(children: list[subprocess.Popen[bytes]], layers: list[list[str]]) -> None:
    """Stop the api and worker first, then the vault, then the acquirer: nothing in flight is cut
    off from what it depends on."""
    by_name = dict(zip((name for layer in layers for name in layer), children, strict=False))
    for layer in reversed(layers):
        _stop_group([by_name[name] for name in layer if name in by_name])


def _start_reporting(
    name: str,
    command: list[str],
    env: dict[str, str],
    ready_file: Path,
    children: list[subprocess.Popen[bytes]],
    stopping: dict[str, bool],
) -> dict[str, Any]:
    """Start a process that writes a ready file, and return that file's content once it exists."""
    ready_file.unlink(missing_ok=True)  # a stale file from a killed run must not be believed
    child = subprocess.Popen(command, env=env)  # noqa: S603 - our own interpreter and module
    children.append(child)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if stopping["flag"]:
            raise Stopping(f"stopped while starting the {name}")
        if child.poll() is not None:
            raise click.ClickException(
                f"the {name} exited with {child.returncode} before it was ready (see its log above)"
            )
        try:
            info = json.loads(ready_file.read_text())
        except (OSError, ValueError):
            info = None  # not there yet (it is renamed into place, never half-written)
        if isinstance(info, dict):
            return info
        time.sleep(0.1)
    raise click.ClickException(
        f"the {name} did not report ready in {READY_TIMEOUT_SECONDS:.0f} s ({ready_file})"
    )


def _connect_host(host: str) -> str:
    # A wildcard listen address is not an address to connect to (nor a certificate name).
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104


def _start_card_chain(
    settings: Settings,
    base: list[str],
    env: dict[str, str],
    children: list[subprocess.Popen[bytes]],
    stopping: dict[str, bool],
) -> tuple[dict[str, str], dict[str, Any]]:
    """Acquirer, then vault; returns the api's vault settings (environment) and what to show."""
    data = settings.resolved_data_dir()
    host = _connect_host(settings.host)
    acquirer_file, vault_file = data / ACQUIRER_READY_FILE, data / VAULT_READY_FILE
    acquirer = _start_reporting(
        "acquirer",
        [*base, "acquirer", "--host", host, "--port", "0", "--ready-file", str(acquirer_file)],
        env,
        acquirer_file,
        children,
        stopping,
    )
    vault_env = {k: v for k, v in env.items() if k not in VAULT_CLIENT_ENV}
    vault = _start_reporting(
        "vault",
        [
            *base,
            "vault",
            *("--data-dir", str(data), "--host", settings.host, "--ready-file", str(vault_file)),
            *("--internal-port", "0", "--public-port", "0"),
            *("--acquirer-host", _connect_host(str(acquirer["host"]))),
            *("--acquirer-port", str(int(acquirer["port"]))),
        ],
        vault_env,
        vault_file,
        children,
        stopping,
    )
    cert = settings.vault_client_cert_file or (
        Path(vault["api_client_cert_file"]) if vault.get("api_client_cert_file") else None
    )
    if cert is None:
        raise click.ClickException(
            "the vault uses configured certificates: set BASTIONPAY_VAULT_CLIENT_CERT_FILE and "
            "BASTIONPAY_VAULT_CLIENT_KEY_FILE to the api's client certificate"
        )
    key = settings.vault_client_key_file or cert.with_suffix(".key")
    ca_file = settings.vault_ca_file or Path(vault["ca_file"])
    client_env = {
        "BASTIONPAY_VAULT_URL": _url(host, int(vault["internal_port"])),
        "BASTIONPAY_VAULT_CA_FILE": str(ca_file),
        "BASTIONPAY_VAULT_CLIENT_CERT_FILE": str(cert),
        "BASTIONPAY_VAULT_CLIENT_KEY_FILE": str(key),
    }
    shown = {
        "vault_url": client_env["BASTIONPAY_VAULT_URL"],
        "vault_public_url": _url(host, int(vault["public_port"])),
        "vault_ca_file": str(ca_file),
        "vault_client_cert_file": str(cert),
        "vault_client_key_file": str(key),
        "acquirer": f"{acquirer['host']}:{acquirer['port']}",
    }
    return client_env, shown


def _demo_with_vault(settings: Settings, shown: dict[str, Any]) -> dict[str, Any]:
    """The demo merchant, its publishable key registered with the vault's hosted fields."""
    chained = build_runtime(
        settings.model_copy(
            update={
                "vault_url": shown["vault_url"],
                "vault_ca_file": Path(shown["vault_ca_file"]),
                "vault_client_cert_file": Path(shown["vault_client_cert_file"]),
                "vault_client_key_file": Path(shown["vault_client_key_file"]),
            }
        )
    )
    try:
        return bootstrap.ensure_demo_merchant(chained)
    except BastionPayError as exc:
        raise click.ClickException(f"the vault refused the demo merchant: {exc.message}") from None
    finally:
        chained.db.dispose()


def _announce(info: dict[str, Any]) -> None:
    url = info["api_url"]
    click.echo("")
    click.echo("  BastionPay is running (test mode)")
    click.echo(f"  api          {url}/v1    health {url}/healthz")
    if "vault_public_url" in info:
        click.echo(f"  vault        {info['vault_public_url']}/hosted-fields (card entry)")
        click.echo(f"  acquirer     {info['acquirer']} (ISO 8583 simulator)")
    else:
        click.echo("  processor    in-process sandbox (--no-vault)")
    click.echo(f"  CA file      {info['ca_file']}")
    click.echo(f"  merchant     {info['merchant_id']}")
    click.echo(f"  secret key   {info['secret_key']}")
    click.echo(f"  publishable  {info['publishable_key']}")
    click.echo(f"  try: curl --cacert {info['ca_file']} {url}/v1/balance -u {info['secret_key']}:")
    click.echo("  Ctrl-C stops everything.")


@click.command("up")
@data_dir_option
@click.option("--host", default=None, help="Listen address (default 127.0.0.1).")
@click.option("--api-port", type=int, default=None, help="api HTTPS port (default 8443; 0 = any).")
@click.option(
    "--no-vault",
    is_flag=True,
    envvar="BASTIONPAY_NO_VAULT",
    help="Debugging: no vault or acquirer; payments use the in-process sandbox connector.",
)
def up(data_dir: Path | None, host: str | None, api_port: int | None, no_vault: bool) -> None:
    """Initialise the data dir on first run and start every platform process."""
    settings = settings_for(data_dir, host=host, api_port=api_port)
    click.echo("bastionpay: initialising data dir, keys, certificates and database…")
    runtime = bootstrap.initialise(settings)
    tls = bootstrap.tls_files(settings)
    runtime.db.dispose()

    sock = _bind(settings.host, settings.api_port)
    port = int(sock.getsockname()[1])
    url = _url(settings.host, port)
    data = settings.resolved_data_dir()
    base = [sys.executable, "-m", "bastionpay"]
    env = _child_env(settings, data, port)
    children: list[subprocess.Popen[bytes]] = []
    layers = [["api", "worker"]] if no_vault else [["acquirer"], ["vault"], ["api", "worker"]]
    stopping = {"flag": False}

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    run_file = data / "run.json"
    try:
        shown: dict[str, Any] = {}
        if no_vault:
            env = {k: v for k, v in env.items() if k not in VAULT_CLIENT_ENV}
            demo = bootstrap.ensure_demo_merchant(runtime)
        else:
            client_env, shown = _start_card_chain(settings, base, env, children, stopping)
            env.update(client_env)
            demo = _demo_with_vault(settings, shown)
        children.append(
            subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [*base, "api", "--fd", str(sock.fileno())], pass_fds=[sock.fileno()], env=env
            )
        )
        children.append(subprocess.Popen([*base, "worker"], env=env))  # noqa: S603
        sock.close()  # the api process owns the listening socket now
        _wait_ready(url, tls.ca_file, children)
        names = [name for layer in layers for name in layer]
        info = {
            "api_url": url,
            "ca_file": str(tls.ca_file) if tls.ca_file else None,
            "merchant_id": demo["id"],
            "secret_key": demo["secret_key"],
            "publishable_key": demo["publishable_key"],
            "metrics_token_file": str(settings.keys_dir / "metrics-token.key"),
            **shown,
            "pids": {
                "supervisor": os.getpid(),
                **{name: child.pid for name, child in zip(names, children, strict=True)},
            },
        }
        write_private(run_file, json.dumps(info, indent=2).encode())
        _announce(info)
        while not stopping["flag"]:
            for name, child in zip(names, children, strict=True):
                if child.poll() is not None:
                    raise click.ClickException(
                        f"platform process {name} exited with {child.returncode}"
                    )
            time.sleep(0.2)
        click.echo("bastionpay: stopping…")
    except Stopping:
        click.echo("bastionpay: stopping…")
    finally:
        sock.close()
        _stop(children, layers)
        run_file.unlink(missing_ok=True)
    click.echo("bastionpay: stopped")


@click.command("api")
@data_dir_option
@click.option("--fd", type=int, default=None, help="Inherited listening socket (from `up`).")
@click.option("--host", default=None)
@click.option("--api-port", type=int, default=None)
def api(data_dir: Path | None, fd: int | None, host: str | None, api_port: int | None) -> None:
    """Run the api process alone (HTTPS only)."""
    configure_logging()
    settings = settings_for(data_dir, host=host, api_port=api_port)
    runtime = bootstrap.initialise(settings)
    tls = bootstrap.tls_files(settings)
    sock = socket.socket(fileno=fd) if fd is not None else _bind(settings.host, settings.api_port)
    # Imported here so admin commands (`merchants create`, …) don't load the web stack.
    from bastionpay.server import serve_api  # noqa: PLC0415

    serve_api(runtime, sock, tls.cert_file, tls.key_file)


@click.command("worker")
@data_dir_option
def worker(data_dir: Path | None) -> None:
    """Run the background worker."""
    configure_logging()
    runtime = bootstrap.initialise(settings_for(data_dir))
    run_forever(runtime)
