"""`bastionpay up`: the public origin follows the port actually bound (issue 5: OAuth issuer,
WebAuthn origin and invitation links derive from `public_url`)."""

from __future__ import annotations

from pathlib import Path

from bastionpay.cli.processes import _public_url_for
from bastionpay.config import Settings


def test_the_default_public_url_takes_the_bound_port(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert _public_url_for(settings, 38881) == "https://localhost:38881"


def test_the_default_port_needs_no_rewrite(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert _public_url_for(settings, 8443) is None


def test_an_operator_set_public_url_is_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_url="https://pay.example.com")
    assert _public_url_for(settings, 38881) is None
