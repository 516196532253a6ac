"""HTTP plumbing for the vault's two listeners: bounded bodies, strict decoding, one error path.

Request bodies on the public listener carry card numbers and CVCs, so decoding never lets them into
an exception: `parse_qsl(strict_parsing=True)` and `bytes.decode` put the offending input in their
error messages and arguments, so every decoding error is replaced (`from None`) by a fixed message
(C1, C5, L3). Bodies are bounded before they are read (T4) and never logged.

Handlers run in the thread pool (blocking database and acquirer calls). `BastionPayError`s become
Stripe's error object; anything else is logged by type only and answered with a generic 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from bastionpay.edge.respond import error_response
from bastionpay.kernel.errors import (
    BastionPayError,
    InvalidRequestError,
    RequestTooLarge,
    UnsupportedMediaType,
)
from bastionpay.kernel.ids import new_id
from bastionpay.observability.logging import get_logger

log = get_logger("bastionpay.vault.http")

MAX_FORM_FIELDS: Final = 40
JSON_TYPE: Final = "application/json"
FORM_TYPE: Final = "application/x-www-form-urlencoded"


class InternalError(BastionPayError):
    """Something unexpected failed; nothing about it is told to the caller."""


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestTooLarge(f"Request bodies are limited to {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request bodies are limited to {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: deeply nested arrays fit in the body limit (security review L3).
        raise InvalidRequestError("The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return value


def form_fields(body: bytes) -> dict[str, str]:
    """`a=1&card[number]=…` → {"a": "1", "card[number]": "…"}; repeated names are refused."""
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        # The input is in these exceptions' messages: never chain them (C5).
        raise InvalidRequestError("The request body is not valid form encoding.") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise InvalidRequestError(f"Repeated parameter: {name[:40]}.", param=name[:40])
        fields[name] = value
    return fields


async def decoded(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object or form fields, by content type (415 for anything else)."""
    kind = media_type(request)
    if kind not in (JSON_TYPE, FORM_TYPE):
        raise UnsupportedMediaType(
            "Content-Type must be application/json or application/x-www-form-urlencoded."
        )
    body = await read_body(request, limit)
    if kind == JSON_TYPE:
        return json_object(body)
    return dict(form_fields(body))


def json_response(payload: Any, request_id: str, *, status: int = 200) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        media_type=JSON_TYPE,
        headers={"request-id": request_id},
    )


async def answer(request_id: str, work: Callable[[], Any], *, status: int = 200) -> Response:
    """Run `work` in the thread pool and answer its JSON, or its error in Stripe's shape."""
    try:
        payload = await run_in_threadpool(work)
    except BastionPayError as exc:
        return error_response(exc, request_id)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: logged by type, not told
        return internal_error(exc, request_id)
    return json_response(payload, request_id, status=status)


def internal_error(exc: BaseException, request_id: str) -> Response:
    # The type only: an exception's message or arguments may hold request data (C5, L3).
    log.error("vault_unhandled_error", error=type(exc).__name__, request_id=request_id)
    return error_response(
        InternalError("An internal error occurred.", code="internal_error"), request_id
    )


def request_id() -> str:
    return new_id("req")
