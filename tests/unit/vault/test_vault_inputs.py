"""vault.settings and vault.http: origins, settings bounds, and decoding that never leaks input."""

from __future__ import annotations

import traceback

import pytest
from pydantic import ValidationError

from bastionpay.kernel.errors import InvalidRequestError
from bastionpay.kernel.pan import find_pans
from bastionpay.vault.http import form_fields, json_object
from bastionpay.vault.settings import VaultSettings, normalise_origin

PAN = "4242424242424242"


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://Shop.Example", "https://shop.example"),
        ("https://shop.example:443/", "https://shop.example"),
        ("https://shop.example:8443", "https://shop.example:8443"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_origins_are_normalised(raw: str, origin: str) -> None:
    assert normalise_origin(raw) == origin


@pytest.mark.parametrize(
    "raw",
    [
        "*",
        "null",
        "https://*.shop.example",
        "https://shop.example/checkout",
        "https://user:pw@shop.example",
        "ftp://shop.example",
        "https://shop.example?x=1",
        "shop.example",
        # Origins go into CSP headers: no host that could add a directive (review L1).
        "https://shop.example;frame-ancestors",
        "https://shop.example;script-src",
        "https://-shop.example",
    ],
)
def test_anything_but_an_exact_origin_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        normalise_origin(raw)


def test_settings_come_from_the_vault_prefix_and_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BASTIONPAY_VAULT_FRAME_ANCESTORS", "https://A.example, https://b.example")
    monkeypatch.setenv("BASTIONPAY_VAULT_INTERNAL_PORT", "9444")
    monkeypatch.setenv("BASTIONPAY_DATABASE_URL", "sqlite:///api.db")  # the api's: ignored
    settings = VaultSettings()
    assert settings.frame_ancestors == ["https://a.example", "https://b.example"]
    assert settings.internal_port == 9444
    assert settings.resolved_database_url().endswith("/vault.db")
    assert settings.resolved_kek_file == settings.keys_dir / "kek.json"
    with pytest.raises(ValidationError):
        VaultSettings(cvc_ttl_seconds=601)  # C1: at most 10 minutes
    with pytest.raises(ValidationError):
        VaultSettings(allowed_clients=[])
    with pytest.raises(ValidationError):
        VaultSettings(cors_origins=["*"])


def _leaks(exc: BaseException) -> bool:
    rendered = "".join(traceback.format_exception(exc))
    return PAN in rendered or bool(find_pans(rendered))


def test_form_decoding_errors_never_carry_the_input() -> None:
    for body in (
        f"card[number]={PAN}&card[number]={PAN}".encode(),  # repeated
        f"card[number]={PAN}&&x".encode(),  # malformed
        f"card[number]={PAN}\xff".encode("latin-1"),  # not ASCII
    ):
        with pytest.raises(InvalidRequestError) as caught:
            form_fields(body)
        assert not _leaks(caught.value)
    assert form_fields(f"card[number]={PAN}&card[cvc]=123".encode()) == {
        "card[number]": PAN,
        "card[cvc]": "123",
    }
    assert form_fields(b"") == {}


def test_json_decoding_errors_never_carry_the_input() -> None:
    for body in (f'{{"number": "{PAN}"'.encode(), f'["{PAN}"]'.encode(), b"\xff" + PAN.encode()):
        with pytest.raises(InvalidRequestError) as caught:
            json_object(body)
        assert not _leaks(caught.value)
    assert json_object(b'{"a": 1}') == {"a": 1}


def test_deeply_nested_json_is_a_bad_request_not_a_crash() -> None:
    """Nesting that exhausts the parser's recursion fits in the 64 KiB body limit (review L3)."""
    with pytest.raises(InvalidRequestError):
        json_object(b"[" * 60_000)
