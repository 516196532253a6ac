"""The TOTP configuration against RFC 6238 Appendix B (tests/vectors/rfc6238/sha1.json).

The RFC's SHA-1 values have 8 digits; a 6-digit code is the same truncated value mod 10^6
(RFC 4226 §5.3), i.e. its last 6 digits — what an authenticator app shows for the same seed.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from bastionpay.identity.mfa import totp

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "vectors" / "rfc6238" / "sha1.json").read_text()
)
SEED_B32 = base64.b32encode(VECTORS["seed_ascii"].encode()).decode()


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: str(v["time"]))
def test_rfc6238_sha1_vectors(vector: dict[str, object]) -> None:
    when = vector["time"]
    expected = vector["totp"]
    assert isinstance(when, int)
    assert isinstance(expected, str)
    assert totp._totp(SEED_B32).at(when) == expected[-totp.DIGITS :]


def test_parameters_are_the_authenticator_app_defaults() -> None:
    generator = totp._totp(SEED_B32)
    assert generator.digits == 6
    assert generator.interval == 30
    assert generator.digest().name == "sha1"
    assert totp.VALID_WINDOW == 1  # I3: ±1 step at most
