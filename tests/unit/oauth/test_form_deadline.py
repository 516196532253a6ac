"""The OAuth endpoints' form reader is bounded in time as well as size (T4: slow POST)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from starlette.requests import Request

from bastionpay.oauth import web


def _request(receive: Any) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/oauth/token",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "query_string": b"",
    }
    return Request(scope, receive)


def test_a_trickled_body_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "BODY_TIMEOUT_SECONDS", 0.05)

    async def trickle() -> dict[str, Any]:
        await anyio.sleep(0.02)
        return {"type": "http.request", "body": b"a", "more_body": True}

    async def read() -> None:
        await web._read_form(_request(trickle))

    with pytest.raises(web.FormError, match="did not arrive in time"):
        anyio.run(read)


def test_a_prompt_body_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "BODY_TIMEOUT_SECONDS", 5.0)

    async def whole() -> dict[str, Any]:
        return {
            "type": "http.request",
            "body": b"grant_type=client_credentials",
            "more_body": False,
        }

    async def read() -> list[tuple[str, str]]:
        return await web._read_form(_request(whole))

    assert anyio.run(read) == [("grant_type", "client_credentials")]
