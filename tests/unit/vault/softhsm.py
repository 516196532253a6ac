"""A throwaway SoftHSM2 token for the PKCS#11 tests (C4).

SoftHSM2 reads `SOFTHSM2_CONF` once, when the module is initialised, and does not see tokens created
afterwards; so each test process gets one temporary token directory, set up before the first
PKCS#11 call, holding two tokens: `bp-test` for the tests, `bp-probe` for the wrong-PIN test
(PKCS#11 login state is per process, so a token someone already logged in to would accept any
PIN). Tests keep apart by giving each KEK its own key label prefix.

Absent SoftHSM2 or python-pkcs11, the tests skip — except in CI, where
BASTIONPAY_REQUIRE_SERVICES=1 turns the skip into a failure (`.ci/run` installs SoftHSM2).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
TOKEN = "bp-test"
PROBE_TOKEN = "bp-probe"
PIN = "test-user-pin-7d41"
SO_PIN = "test-so-pin-93be"
REQUIRE = os.environ.get("BASTIONPAY_REQUIRE_SERVICES") == "1"


@dataclass(frozen=True)
class SoftHsm:
    module: str
    conf: Path

    def prefix(self) -> str:
        """A fresh key label prefix, so each test sees only its own KEK versions."""
        return f"t{secrets.token_hex(6)}"

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should use the same tokens."""
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}


_shared: SoftHsm | None = None
_lock = threading.Lock()


def _unavailable(reason: str) -> NoReturn:
    if REQUIRE:
        pytest.fail(f"{reason} (BASTIONPAY_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def softhsm() -> SoftHsm:
    global _shared  # noqa: PLW0603 - one token directory per process, see the module docstring
    with _lock:
        if _shared is not None:
            return _shared
        try:
            import pkcs11  # noqa: F401, PLC0415 - only to find out whether it is installed
        except ImportError:
            _unavailable("python-pkcs11 is not installed")
        module = next((path for path in MODULE_CANDIDATES if Path(path).exists()), None)
        util = shutil.which("softhsm2-util")
        if module is None or util is None:
            _unavailable("SoftHSM2 is not installed (Debian package softhsm2)")
        root = Path(tempfile.mkdtemp(prefix="bp-softhsm-"))
        atexit.register(shutil.rmtree, root, True)
        tokens = root / "tokens"
        tokens.mkdir(mode=0o700)
        conf = root / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
        )
        os.environ["SOFTHSM2_CONF"] = str(conf)
        for label in (TOKEN, PROBE_TOKEN):
            subprocess.run(
                [
                    util,
                    "--init-token",
                    "--free",
                    "--label",
                    label,
                    "--pin",
                    PIN,
                    "--so-pin",
                    SO_PIN,
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
        _shared = SoftHsm(module=module, conf=conf)
        return _shared
