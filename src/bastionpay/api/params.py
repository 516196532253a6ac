"""Parameter validation with pydantic, translated into Stripe's error vocabulary.

Each endpoint declares a `Params` model with `extra="forbid"`, so an unknown parameter is refused
like Stripe refuses it (`parameter_unknown`) instead of being silently ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bastionpay.kernel.errors import InvalidRequestError
from bastionpay.kernel.pan import find_pans

_INT = re.compile(r"^-?[0-9]{1,18}$")  # ASCII digits only: no Unicode digits as amounts
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FIELD = re.compile(r"^[A-Za-z0-9_.-]+$")

METADATA_MAX_KEYS = 50
# `metadata=""` is carried as this key; user keys may not contain brackets, so none can forge it.
CLEAR_ALL = "[clear]"
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500


class _ParamError(ValueError):
    """Raised inside validators; carries Stripe's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _to_int(value: Any) -> Any:
    if isinstance(value, bool):
        raise _ParamError("parameter_invalid_integer", f"Invalid integer: {value}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT.match(value.strip()):
        return int(value.strip())
    shown = str(value)[:50] if isinstance(value, str | int | float) else "(object)"
    raise _ParamError("parameter_invalid_integer", f"Invalid integer: {shown}")


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _ParamError("parameter_invalid_boolean", f"Invalid boolean: {str(value)[:50]}")


def _check_text(value: str) -> str:
    # Control characters (NUL above all) have no business in any parameter: PostgreSQL refuses
    # NUL in text, and the rest invite log injection (ASVS 16.4.1). Tab and newlines are fine.
    if _CONTROL.search(value):
        raise _ParamError(
            "parameter_invalid_string", "Invalid string: control characters are not allowed"
        )
    if find_pans(value):
        # A card number typed into a free-text field would land in the api database, outside the
        # vault (SECURITY-REQUIREMENTS C5): refuse it instead of storing it.
        raise _ParamError(
            "parameter_invalid_string",
            "Invalid string: card numbers are not accepted here; collect card details with the "
            "vault's hosted fields",
        )
    return value


def _to_str(value: Any) -> Any:
    if isinstance(value, str):
        return _check_text(value)
    raise _ParamError("parameter_invalid_string", "Invalid string: expected a string value")


def _to_metadata(value: Any) -> Any:
    # `metadata=""` unsets every key (Stripe); returned as {} with the empty-means-delete rule
    # applied by the service.
    if value == "":
        return {CLEAR_ALL: ""}
    if not isinstance(value, dict):
        raise _ParamError(
            "parameter_invalid", "Invalid metadata: must be a hash of key-value pairs"
        )
    if len(value) > METADATA_MAX_KEYS:
        raise _ParamError(
            "parameter_invalid",
            f"Invalid metadata: can have at most {METADATA_MAX_KEYS} keys",
        )
    out: dict[str, str] = {}
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY_LENGTH or "[" in key or "]" in key or not key:
            raise _ParamError(
                "parameter_invalid",
                f"Invalid metadata: keys must be at most {METADATA_MAX_KEY_LENGTH} characters "
                "and may not contain square brackets",
            )
        if not isinstance(item, str):
            raise _ParamError("parameter_invalid", "Invalid metadata: values must be strings")
        _check_text(key)
        _check_text(item)
        if len(item) > METADATA_MAX_VALUE_LENGTH:
            raise _ParamError(
                "parameter_invalid",
                f"Invalid metadata: values must be at most {METADATA_MAX_VALUE_LENGTH} characters",
            )
        out[key] = item
    return out


FormInt = Annotated[int, BeforeValidator(_to_int)]
FormBool = Annotated[bool, BeforeValidator(_to_bool)]
FormStr = Annotated[str, BeforeValidator(_to_str)]
Metadata = Annotated[dict[str, str], BeforeValidator(_to_metadata)]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=5000)


class ListParams(Params):
    limit: FormInt = 10
    starting_after: FormStr | None = None
    ending_before: FormStr | None = None


def merge_metadata(current: dict[str, Any], update: dict[str, str] | None) -> dict[str, Any]:
    """Stripe's update semantics: `k=""` deletes `k`; `metadata=""` deletes every key."""
    if update is None:
        return dict(current)
    if CLEAR_ALL in update:
        return {}
    merged = dict(current)
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > METADATA_MAX_KEYS:
        raise InvalidRequestError(
            f"Invalid metadata: can have at most {METADATA_MAX_KEYS} keys",
            param="metadata",
            code="parameter_invalid",
        )
    return merged


def _param_name(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return ""
    head, *rest = (str(p) for p in loc)
    return head + "".join(f"[{p}]" for p in rest)


def validate(model: type[Params], data: dict[str, Any]) -> Any:
    """Validate `data` against `model`, raising the first problem as a Stripe-shaped error."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        # pydantic adds validator and union-member names to `loc`; keep field path segments only.
        loc = tuple(p for p in first["loc"] if isinstance(p, int) or _FIELD.match(p))
        param = _param_name(loc)
        kind = first["type"]
        ctx_error = first.get("ctx", {}).get("error")
        if isinstance(ctx_error, _ParamError):
            raise InvalidRequestError(str(ctx_error), code=ctx_error.code, param=param) from None
        if kind == "extra_forbidden":
            raise InvalidRequestError(
                f"Received unknown parameter: {param}", code="parameter_unknown", param=param
            ) from None
        if kind == "missing":
            raise InvalidRequestError(
                f"Missing required param: {param}.", code="parameter_missing", param=param
            ) from None
        if kind == "literal_error":
            expected = first.get("ctx", {}).get("expected", "")
            raise InvalidRequestError(
                f"Invalid {param}: must be one of {expected}",
                code="parameter_invalid",
                param=param,
            ) from None
        if kind == "string_too_long":
            limit = first.get("ctx", {}).get("max_length")
            raise InvalidRequestError(
                f"Invalid {param}: must be at most {limit} characters",
                code="parameter_invalid_string",
                param=param,
            ) from None
        raise InvalidRequestError(
            f"Invalid {param}: {first['msg']}", code="parameter_invalid", param=param
        ) from None
