"""`bastionpay acquirer` as a real process: port 0, the ready file, signals, exit codes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bastionpay.acquirer.client import AcquirerClient, AuthorizationRequest
from bastionpay.acquirer.results import Approved, Unknown
from bastionpay.kernel.pan import find_pans
from bastionpay.kernel.secrets import Secret

COMMAND = [sys.executable, "-m", "bastionpay.acquirer.cli"]
READY_TIMEOUT = 20.0


def _wait_for(path: Path, process: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + READY_TIMEOUT
    while not path.exists():
        assert process.poll() is None, "the acquirer exited before it was ready"
        assert time.monotonic() < deadline, "the acquirer did not become ready in time"
        time.sleep(0.05)
    info: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return info


def test_port_zero_ready_file_and_a_clean_stop(tmp_path: Path) -> None:
    ready = tmp_path / "acquirer.json"
    process = subprocess.Popen(
        [*COMMAND, "--port", "0", "--ready-file", str(ready), "--fault", "0220=no_answer"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        info = _wait_for(ready, process)
        assert info["host"] == "127.0.0.1"
        port = info["port"]
        assert isinstance(port, int)
        assert port > 0
        assert info["pid"] == process.pid
        with AcquirerClient("127.0.0.1", port, timeout=2.0, retry_attempts=1) as client:
            assert client.echo()
            outcome = client.authorize(
                AuthorizationRequest(
                    pan=Secret("4242424242424242"),
                    exp_month=12,
                    exp_year=2030,
                    amount=1000,
                    currency="eur",
                    reference="pi_cli:1",
                    cvc=Secret("672"),
                )
            )
            assert isinstance(outcome, Approved)
            client_timeout = AcquirerClient("127.0.0.1", port, timeout=0.3, retry_attempts=1)
            with client_timeout:
                assert isinstance(client_timeout.capture(outcome.ref, 1000), Unknown)  # --fault
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert not ready.exists()  # removed on exit
    assert json.loads(stdout.splitlines()[0]) == {"host": "127.0.0.1", "port": port}
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert {"acquirer_listening", "acquirer_request", "acquirer_stopped"} <= {
        line["event"] for line in lines
    }
    assert find_pans(stderr) == []
    assert "672" not in stderr


def test_a_taken_port_exits_non_zero_and_bad_options_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*COMMAND, "--port", str(port), "--ready-file", str(tmp_path / "r.json")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "acquirer_failed" in result.stderr
    assert not (tmp_path / "r.json").exists()
    bad = subprocess.run(
        [*COMMAND, "--fault", "0100=explode"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2
    assert "explode" in bad.stderr
