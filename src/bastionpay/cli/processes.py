"""`bastionpay up` (the supervisor), `bastionpay api` and `bastionpay worker`.

The supervisor binds the api's listening socket itself and hands it to the api process, so
`--api-port 0` yields a real port before anything starts and a restart never races for the port.
It writes `run.json` only once `/healthz` answers over verified TLS, and on Ctrl-C or SIGTERM it
stops every child (SIGTERM, then SIGKILL after a grace period) and removes `run.json`.
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

import click
import httpx

from bastionpay import bootstrap
from bastionpay.cli.common import configure_logging, data_dir_option, settings_for
from bastionpay.crypto.keyfiles import write_private
from bastionpay.edge.tls import client_context
from bastionpay.jobs.worker import run_forever

READY_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 15.0


def _bind(host: str, port: int) -> socket.socket:
    from bastionpay.server import bind  # noqa: PLC0415 - keeps the web stack out of admin commands

    return bind(host, port)


def _url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


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


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
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


@click.command("up")
@data_dir_option
@click.option("--host", default=None, help="Listen address (default 127.0.0.1).")
@click.option("--api-port", type=int, default=None, help="api HTTPS port (default 8443; 0 = any).")
def up(data_dir: Path | None, host: str | None, api_port: int | None) -> None:
    """Initialise the data dir on first run and start every platform process."""
    settings = settings_for(data_dir, host=host, api_port=api_port)
    click.echo("bastionpay: initialising data dir, keys, certificates and database…")
    runtime = bootstrap.initialise(settings)
    tls = bootstrap.tls_files(settings)
    demo = bootstrap.ensure_demo_merchant(runtime)
    runtime.db.dispose()

    sock = _bind(settings.host, settings.api_port)
    port = int(sock.getsockname()[1])
    url = _url(settings.host, port)
    data = settings.resolved_data_dir()
    base = [sys.executable, "-m", "bastionpay"]
    env = {**os.environ, "BASTIONPAY_DATA_DIR": str(data)}
    children: list[subprocess.Popen[bytes]] = []
    stopping = {"flag": False}

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    run_file = data / "run.json"
    try:
        children.append(
            subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [*base, "api", "--fd", str(sock.fileno())], pass_fds=[sock.fileno()], env=env
            )
        )
        children.append(subprocess.Popen([*base, "worker"], env=env))  # noqa: S603
        sock.close()  # the api process owns the listening socket now
        _wait_ready(url, tls.ca_file, children)
        info = {
            "api_url": url,
            "ca_file": str(tls.ca_file) if tls.ca_file else None,
            "merchant_id": demo["id"],
            "secret_key": demo["secret_key"],
            "publishable_key": demo["publishable_key"],
            "metrics_token_file": str(settings.keys_dir / "metrics-token.key"),
            "pids": {"supervisor": os.getpid(), "api": children[0].pid, "worker": children[1].pid},
        }
        write_private(run_file, json.dumps(info, indent=2).encode())
        click.echo("")
        click.echo("  BastionPay is running (test mode)")
        click.echo(f"  api          {url}/v1    health {url}/healthz")
        click.echo(f"  CA file      {info['ca_file']}")
        click.echo(f"  merchant     {demo['id']}")
        click.echo(f"  secret key   {demo['secret_key']}")
        click.echo(f"  publishable  {demo['publishable_key']}")
        click.echo(
            f"  try: curl --cacert {info['ca_file']} {url}/v1/balance -u {demo['secret_key']}:"
        )
        click.echo("  Ctrl-C stops everything.")
        while not stopping["flag"]:
            for name, child in zip(("api", "worker"), children, strict=True):
                if child.poll() is not None:
                    raise click.ClickException(
                        f"platform process {name} exited with {child.returncode}"
                    )
            time.sleep(0.2)
        click.echo("bastionpay: stopping…")
    finally:
        _stop(children)
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
