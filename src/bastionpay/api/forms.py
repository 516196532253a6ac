"""Decode Stripe-style request parameters: form bodies with bracket nesting, query strings, JSON.

`metadata[k]=v` → {"metadata": {"k": "v"}}; `expand[]=a&expand[]=b` and `expand[0]=a` → lists.
Limits on body size, parameter count and nesting depth are enforced here, before anything else
looks at the input (SECURITY-REQUIREMENTS T4, OWASP API4).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from bastionpay.kernel.errors import InvalidRequestError, RequestTooLarge, UnsupportedMediaType

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_parameters: int
    max_depth: int


def _invalid(message: str, param: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="parameter_invalid")


def _split_key(key: str, limits: Limits) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        raise _invalid(f"Invalid parameter name: {key[:100]!r}", param=key[:100])
    parts = [match.group(1), *_PART.findall(match.group(2))]
    if len(parts) > limits.max_depth:
        raise _invalid(
            f"Parameter {key[:100]!r} is nested more than {limits.max_depth} levels deep.",
            param=key[:100],
        )
    return parts


def _insert(root: dict[str, Any], parts: list[str], value: str, full_key: str) -> None:
    node: Any = root
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        nxt = parts[index + 1] if not last else None
        if isinstance(node, list):
            # `[]` appends; only valid as the last segment (Stripe: `expand[]=a`).
            if part != "" or not last:
                raise _invalid(f"Invalid array parameter: {full_key[:100]}", param=parts[0])
            node.append(value)
            return
        if not isinstance(node, dict):
            raise _invalid(f"Conflicting parameter: {full_key[:100]}", param=parts[0])
        if last:
            if part in node:
                raise _invalid(f"Parameter {full_key[:100]} given more than once.", param=parts[0])
            node[part] = value
            return
        child = node.get(part)
        if child is None:
            child = [] if nxt == "" else {}
            node[part] = child
        node = child


def _listify(value: Any) -> Any:
    """Turn dicts whose keys are all digits (`a[0]`, `a[1]`) into lists, recursively."""
    if isinstance(value, dict):
        converted = {k: _listify(v) for k, v in value.items()}
        # Only short ASCII digit keys are indexes ("²".isdigit() is True; huge ints are slow).
        if converted and all(k.isascii() and k.isdigit() and len(k) <= 4 for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    if isinstance(value, list):
        return [_listify(v) for v in value]
    return value


def decode_form(raw: bytes | str, limits: Limits) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="strict") if isinstance(raw, bytes) else raw
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=limits.max_parameters,
            errors="strict",  # %FF is an error, not a silent U+FFFD (one reading for every hop)
        )
    except UnicodeDecodeError as exc:
        raise _invalid("Request parameters are not valid UTF-8.") from exc
    except ValueError as exc:
        raise RequestTooLarge(
            f"Too many parameters: at most {limits.max_parameters} are allowed.",
            code="parameters_exceeded_max",
        ) from exc
    root: dict[str, Any] = {}
    for key, value in pairs:
        _insert(root, _split_key(key, limits), value, key)
    result = _listify(root)
    if not isinstance(result, dict):
        raise _invalid("Invalid request body.")
    return result


def _check_json_shape(value: Any, limits: Limits, depth: int, count: list[int]) -> None:
    if depth > limits.max_depth:
        raise _invalid(f"Request body is nested more than {limits.max_depth} levels deep.")
    if isinstance(value, dict):
        for item in value.values():
            count[0] += 1
            _check_json_shape(item, limits, depth + 1, count)
    elif isinstance(value, list):
        for item in value:
            count[0] += 1
            _check_json_shape(item, limits, depth + 1, count)
    if count[0] > limits.max_parameters:
        raise RequestTooLarge(
            f"Too many parameters: at most {limits.max_parameters} are allowed.",
            code="parameters_exceeded_max",
        )


def _stringify_scalars(value: Any) -> Any:
    """JSON numbers and booleans become their form-encoded spelling so one validator serves both."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if value is None:
        return ""
    if isinstance(value, dict):
        return {str(k): _stringify_scalars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_scalars(v) for v in value]
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:50]!r}")
        result[key] = value
    return result


def decode_json(raw: bytes, limits: Limits) -> dict[str, Any]:
    try:
        # UTF-8 only (json.loads would sniff UTF-16/32); duplicate keys are an error, not
        # last-one-wins, so a filter in front cannot read the body differently.
        text = raw.decode("utf-8", errors="strict")
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys) if text.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestError(
            "Invalid JSON body: the request body could not be parsed.", code="parameter_invalid"
        ) from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("The JSON body must be an object.", code="parameter_invalid")
    _check_json_shape(value, limits, 1, [0])
    result = _stringify_scalars(value)
    if not isinstance(result, dict):
        raise _invalid("Invalid request body.")
    return result


def decode_body(raw: bytes, content_type: str, limits: Limits) -> dict[str, Any]:
    if len(raw) > limits.max_body_bytes:
        raise RequestTooLarge(
            f"Request body too large: at most {limits.max_body_bytes} bytes are allowed.",
            code="request_too_large",
        )
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        return decode_json(raw, limits)
    if media in ("application/x-www-form-urlencoded", ""):
        try:
            return decode_form(raw, limits)
        except UnicodeDecodeError as exc:
            raise _invalid("Request body is not valid UTF-8.") from exc
    # Only the two encodings Stripe's SDKs send are parsed (edge issue item 5).
    raise UnsupportedMediaType(
        f"Unsupported Content-Type {media[:80]!r}: use application/x-www-form-urlencoded "
        "or application/json.",
        code="unsupported_media_type",
    )
