"""`bastionpay vault` as a real process: ready file with both ports, mTLS and public health, a card
tokenized and authorized end to end, a clean stop on SIGTERM, start and stop in the audit log."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from bastionpay.acquirer.background import BackgroundAcquirer
from bastionpay.acquirer.settings import AcquirerSettings
from bastionpay.kernel.pan import find_pans

READY_TIMEOUT = 30.0
RUN = "from bastionpay.vault.cli import vault_group; vault_group(prog_name='bastionpay vault')"


def _wait_for(path: Path, process: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if path.exists():
            return dict(json.loads(path.read_text()))
        assert process.poll() is None, "the vault exited early"
        time.sleep(0.1)
    raise AssertionError("no ready file")


def test_the_vault_process_serves_both_listeners_and_stops_cleanly(tmp_path: Path) -> None:
    ready = tmp_path / "vault-ready.json"
    with BackgroundAcquirer(AcquirerSettings(port=0)) as acquirer:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                RUN,
                "--data-dir",
                str(tmp_path / "data"),
                "--internal-port",
                "0",
                "--public-port",
                "0",
                "--ready-file",
                str(ready),
                "--acquirer-port",
                str(acquirer.port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            info = _wait_for(ready, process)
            tls = tmp_path / "data" / "tls"
            api_context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
            api_context.load_cert_chain(str(tls / "api-client.pem"), str(tls / "api-client.key"))
            internal = f"https://127.0.0.1:{info['internal_port']}"
            public = f"https://127.0.0.1:{info['public_port']}"
            assert info["internal_port"] != info["public_port"]
            assert info["api_client_cert_file"] == str(tls / "api-client.pem")
            with httpx.Client(base_url=internal, verify=api_context, timeout=10) as api:
                assert api.get("/internal/v1/health").status_code == 200
                key = "pk_test_processprocessprocess"
                registered = api.post(
                    "/internal/v1/publishable_keys",
                    json={"id": "key_p", "key": key, "merchant_id": "acct_p", "livemode": False},
                )
                assert registered.status_code == 200
                browser_context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
                with httpx.Client(base_url=public, verify=browser_context, timeout=10) as browser:
                    assert browser.get("/healthz").status_code == 200
                    card = browser.post(
                        "/v1/payment_methods",
                        data={
                            "card[number]": "4242424242424242",
                            "card[exp_month]": "12",
                            "card[exp_year]": "2031",
                            "card[cvc]": "123",
                        },
                        headers={"Authorization": f"Bearer {key}"},
                    )
                assert card.status_code == 200, card.text
                authorized = api.post(
                    "/internal/v1/authorizations",
                    json={
                        "merchant_id": "acct_p",
                        "payment_method": card.json()["id"],
                        "livemode": False,
                        "amount": 500,
                        "currency": "eur",
                        "reference": "pi_process:1",
                    },
                )
                assert authorized.json()["status"] == "approved"
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    assert not ready.exists()  # removed on the way out
    logs = stderr.decode()
    assert "vault_listening" in logs
    assert find_pans(logs) == []
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'vault.db'}")
    try:
        with engine.connect() as conn:
            actions = list(
                conn.execute(
                    text(
                        "SELECT action FROM audit_entries UNION ALL SELECT action FROM audit_staged"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()
    assert actions[0] == "vault.process.start" and "vault.process.stop" in actions
    assert "vault.card.detokenize" in actions
