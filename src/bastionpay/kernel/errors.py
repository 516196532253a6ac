"""Typed errors that map one-to-one onto Stripe's error object (ARCHITECTURE: Conventions).

Every error carries `type`, `code`, `message` and, where meaningful, `param` and `decline_code`;
the api renders them with Stripe's HTTP statuses. Messages are written for merchant developers and
never contain secrets or card data (SECURITY-REQUIREMENTS L3).
"""

from __future__ import annotations

from typing import Any


class BastionPayError(Exception):
    http_status = 500
    error_type = "api_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.extra: dict[str, Any] = extra or {}

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.code is not None:
            body["code"] = self.code
        if self.param is not None:
            body["param"] = self.param
        if self.decline_code is not None:
            body["decline_code"] = self.decline_code
        body.update(self.extra)
        return {"error": body}


class InvalidRequestError(BastionPayError):
    http_status = 400
    error_type = "invalid_request_error"


class ResourceMissing(InvalidRequestError):
    http_status = 404

    def __init__(self, kind: str, object_id: str, *, param: str | None = "id") -> None:
        super().__init__(f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


class UnrecognizedUrl(InvalidRequestError):
    http_status = 404

    def __init__(self, method: str, path: str) -> None:
        super().__init__(
            f"Unrecognized request URL ({method}: {path[:200]}).", code="resource_missing"
        )


class MethodNotAllowed(InvalidRequestError):
    http_status = 405

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Method not allowed for URL ({method}: {path[:200]}).")


class RequestTooLarge(InvalidRequestError):
    http_status = 413


class IdempotencyError(BastionPayError):
    http_status = 400
    error_type = "idempotency_error"


class IdempotencyKeyInUse(InvalidRequestError):
    http_status = 409

    def __init__(self, key_preview: str) -> None:
        super().__init__(
            "There is currently another in-progress request using this Idempotent Key "
            f"('{key_preview}'). Please try again later.",
            code="idempotency_key_in_use",
        )


class AuthenticationError(BastionPayError):
    http_status = 401
    error_type = "invalid_request_error"


class PermissionDenied(BastionPayError):
    http_status = 403
    error_type = "invalid_request_error"


class CardError(BastionPayError):
    """A decline: HTTP 402, with `decline_code` and the affected objects attached by the caller."""

    http_status = 402
    error_type = "card_error"


class ProcessorError(BastionPayError):
    """The processor could not be reached or failed: the payment is not processed (P3)."""

    http_status = 502
    error_type = "api_error"


class UnsupportedMediaType(InvalidRequestError):
    http_status = 415


class RequestTimeout(InvalidRequestError):
    """The client did not send its request in time (slow-body attacks, edge issue item 5)."""

    http_status = 408


class HeadersTooLarge(InvalidRequestError):
    http_status = 431


class RateLimited(InvalidRequestError):
    """HTTP 429, as Stripe answers it (`code: rate_limit`); `retry_after` feeds the header (T4)."""

    http_status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, code="rate_limit")
        self.retry_after = max(1, retry_after)


class ServiceUnavailable(BastionPayError):
    """HTTP 503: shed under overload or a dependency the request needs is down; safe to retry."""

    http_status = 503
    error_type = "api_error"

    def __init__(self, message: str, *, code: str, retry_after: int = 1) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, retry_after)


class StepUpRequired(PermissionDenied):
    """A sensitive action needs a second factor proven within the last few minutes (I3)."""

    def __init__(self, max_age_seconds: int) -> None:
        super().__init__(
            f"This action requires a fresh second-factor proof (within {max_age_seconds // 60} "
            "minutes). Verify again and retry.",
            code="step_up_required",
        )
