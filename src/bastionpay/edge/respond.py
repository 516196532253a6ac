"""Errors answered by the edge and the api in one shape: Stripe's error object as JSON (T4)."""

from __future__ import annotations

import json

from starlette.responses import Response

from bastionpay.kernel.errors import BastionPayError, RateLimited, ServiceUnavailable


def error_body(exc: BastionPayError) -> str:
    wire = exc.to_wire()
    wire["error"]["request_log_url"] = None
    return json.dumps(wire, separators=(",", ":"), ensure_ascii=False)


def error_response(exc: BastionPayError, request_id: str) -> Response:
    headers = {"request-id": request_id}
    if isinstance(exc, RateLimited | ServiceUnavailable):
        headers["retry-after"] = str(exc.retry_after)
    return Response(
        error_body(exc), status_code=exc.http_status, media_type="application/json", headers=headers
    )
