"""Structured JSON logs that cannot carry card data or secrets (SECURITY-REQUIREMENTS L3, C1, C2).

`configure_logging()` writes one JSON object per line — `timestamp` (ISO-8601, UTC), `level`,
`logger`, `event`, then the bound context and the event's fields — for structlog loggers *and*
the standard library (uvicorn, SQLAlchemy, alembic, the project's `logging.getLogger` callers),
which is routed through the same `structlog.stdlib.ProcessorFormatter` pipeline.

Every event dict is passed through `redact()` after exceptions and stacks are rendered to text, so
tracebacks are covered too:

- values under sensitive keys become `**********` (see `is_sensitive_key` for the rule);
- inside every string (keys included): PEM private-key blocks are removed; API keys
  (`sk_live_…`), webhook secrets, JWTs, `Bearer …`/`Basic …` credentials, URL passwords and
  `key=value` / `"key": "value"` fragments with a sensitive key are masked; card numbers keep
  at most the first 6 and last 4 digits (`bastionpay.kernel.pan`); control characters are
  escaped (`\\n`, `\\x1b`) so a value can never forge a log line, whatever the renderer;
- numbers that read as card numbers become masked strings; other objects are logged as their
  (redacted) text, never handed to the renderer raw.

Structlog events are redacted before they reach the standard library, so no handler sees them raw;
the formatter redacts every record again (idempotent) as the final gate for foreign records.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final, TextIO
from urllib.parse import unquote

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from bastionpay.kernel.pan import PAN_MAX_DIGITS, PAN_MIN_DIGITS, mask_pans
from bastionpay.kernel.secrets import MASK

__all__ = [
    "MASK",
    "bind_request",
    "clear_request",
    "configure_logging",
    "get_logger",
    "is_sensitive_key",
    "redact",
    "redact_event",
    "redact_text",
]

# Loggers that install handlers of their own (uvicorn's default dictConfig, SQLAlchemy's `echo`):
# `configure_logging` removes those handlers so the records reach the redacting root handler only.
ROUTED_LOGGERS: Final = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "sqlalchemy",
    "sqlalchemy.engine",
    "sqlalchemy.engine.Engine",
    "alembic",
)
_FIRST_KEYS: Final = ("timestamp", "level", "logger", "event")
MAX_TEXT: Final = 64 * 1024
_MAX_DEPTH: Final = 16
_TOO_DEEP: Final = "[nested too deeply]"
_PRIVATE_KEY_REDACTED: Final = "[private key redacted]"

# --- Sensitive keys -------------------------------------------------------------------------------
#
# A key is split into lower-case words (at non-alphanumerics and camelCase humps, after
# %-decoding): `X-Api-Key` → x/api/key, `clientSecret` → client/secret, `card[cvc]` → card/cvc.
# It is sensitive when its *last* word names a secret, or its last two words do — so
# `db_password`, `X-Api-Key`, `Set-Cookie` and `card[number]` are, while `token_type`, `key_id`,
# `idempotency_key`, `cvc_check` and `pan_last4` (which only describe a secret) are not.
# `number` counts only as the whole key (Stripe's `card[number]`): `attempt_number` is ordinary.

_SENSITIVE_LAST_WORDS: Final = frozenset(
    {
        # passwords and secrets
        "password", "passwords", "passwd", "passphrase", "pwd", "secret", "secrets",
        "credentials",
        # bearer credentials and sessions (I4, I6, I7)
        "token", "tokens", "authorization", "cookie", "cookies", "session", "otp", "totp",
        # card data (C1, C2): verification codes, PIN, the card number
        "cvc", "cvv", "cvc2", "cvv2", "cvn", "pin", "pan",
        # the same words run together (`apikey`, `X-APIKEY`, `accessToken` is split already)
        "apikey", "secretkey", "privatekey", "accesstoken", "refreshtoken", "clientsecret",
        "cardnumber", "setcookie", "sessionid", "csrftoken", "xsrftoken", "iban",
    }
)  # fmt: skip
_SENSITIVE_LAST_PAIRS: Final = frozenset(
    {
        # keys (not `idempotency_key`, `public_key`, `publishable_key` or a bare `key`)
        ("api", "key"), ("secret", "key"), ("private", "key"), ("signing", "key"),
        ("encryption", "key"), ("data", "key"), ("master", "key"), ("hmac", "key"),
        ("access", "key"), ("session", "key"), ("restricted", "key"), ("wrapping", "key"),
        ("client", "key"),
        # numbers that identify a card or an account
        ("card", "number"), ("account", "number"),
        # one-time codes and session identifiers (bearer credentials)
        ("auth", "code"), ("authorization", "code"), ("recovery", "code"), ("recovery", "codes"),
        ("totp", "code"), ("mfa", "code"), ("otp", "code"), ("verification", "code"),
        ("session", "id"),
        ("password", "confirmation"), ("password", "confirm"),
    }
)  # fmt: skip
_EXACT_KEYS: Final = frozenset({"number"})
# Sensitive keys whose unquoted values run to the end of the line (HTTP header values).
_LINE_VALUE_WORDS: Final = frozenset({"authorization", "cookie", "cookies", "setcookie"})

_HUMP: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT: Final = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=4096)
def _key_words(key: str) -> tuple[str, ...]:
    decoded = unquote(key) if "%" in key else key
    return tuple(word for word in _WORD_SPLIT.split(_HUMP.sub("_", decoded).lower()) if word)


def is_sensitive_key(key: object) -> bool:
    """Whether a value stored under `key` (a dict key, a form or JSON field name) is a secret."""
    if not isinstance(key, str):
        return False
    words = _key_words(key)
    if not words:
        return False
    if len(words) == 1 and words[0] in _EXACT_KEYS:
        return True
    return words[-1] in _SENSITIVE_LAST_WORDS or words[-2:] in _SENSITIVE_LAST_PAIRS


# --- Secrets inside strings -----------------------------------------------------------------------

_PRIVATE_KEY: Final = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
    r".*?(?:-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z)",
    re.DOTALL,
)
_API_KEY: Final = re.compile(r"(?<![A-Za-z0-9])(sk|rk|pk)_(test|live)_[A-Za-z0-9]+")
_WEBHOOK_SECRET: Final = re.compile(r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9+/=]+")
_JWT: Final = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_URL_PASSWORD: Final = re.compile(r"(?<=://)([^/\s:@]*):[^/\s@]+@")
_AUTH_SCHEME: Final = re.compile(
    r"(?<![A-Za-z0-9])(?P<scheme>bearer|basic)(?P<space>\s+)(?P<credential>[A-Za-z0-9\-._~+/]+=*)",
    re.IGNORECASE,
)
_TOKEN_TYPE_BEFORE: Final = re.compile(r"token[_-]?type[\"']?[ \t]*[:=][ \t]*[\"']?\Z", re.I)
# `key=value`, `key: value`, `"key": "value"`, `'key': 'value'`, `key="value"`, `\"key\": \"v\"`.
_FRAGMENT: Final = re.compile(
    r"""
    (?<![A-Za-z0-9_.\-\[\]%])
    (?P<kq>\\?["']|)
    (?P<key>[A-Za-z_][A-Za-z0-9_.\-\[\]%]{0,63})
    (?P=kq)
    [ \t]*(?P<sep>[=:])[ \t]*
    (?:
        (?P<eq>\\["'])(?P<escaped>(?:(?!(?P=eq))[^\r\n])*)(?P=eq)?
      | [bBrRuU]{0,2}(?P<q>["'])(?P<quoted>(?:\\.|(?!(?P=q))[^\\\r\n])*)(?P=q)?
      | (?P<bare>[^\s&;,"'<>()\[\]{}\\]+)
    )
    """,
    re.VERBOSE,
)
_LINE_REST: Final = re.compile(r"[^\r\n\"'\\]*")
_SCHEME_PREFIX: Final = re.compile(r"(?:bearer|basic)[ \t]+", re.IGNORECASE)
# C0, DEL, C1, the Unicode line/paragraph separators and bidirectional overrides/isolates.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_NAMES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _mask_auth_scheme(match: re.Match[str]) -> str:
    credential = match["credential"]
    if match["scheme"].lower() == "basic" and not _looks_like_base64_credential(credential):
        return match.group()  # "Basic validation failed" is prose, not a credential
    if _TOKEN_TYPE_BEFORE.search(match.string, max(0, match.start() - 32), match.start()):
        return match.group()  # OAuth's `token_type=bearer`: the next word is not a credential
    return f"{match['scheme']}{match['space']}{MASK}"


def _looks_like_base64_credential(value: str) -> bool:
    body = value.rstrip("=")
    return len(body) >= 4 and (
        body != value
        or any(char.isdigit() or char in "+/" for char in body)
        or (any(char.isupper() for char in body[1:]) and any(char.islower() for char in body))
    )


def _mask_line_value(value: str) -> str:
    """An Authorization/Cookie header value: keep the auth scheme, mask the rest."""
    stripped = value.rstrip()
    trailing = value[len(stripped) :]
    scheme = _SCHEME_PREFIX.match(stripped)
    if scheme and stripped[scheme.end() :]:
        return f"{scheme.group()}{MASK}{trailing}"
    return f"{MASK}{trailing}"


def _mask_fragments(text: str) -> str:
    if "=" not in text and ":" not in text:
        return text
    pieces: list[str] = []
    position = 0
    while match := _FRAGMENT.search(text, position):
        key = match["key"]
        if not is_sensitive_key(key):
            # The value may itself hold fragments (`"msg": "password=x"`): scan on from the value.
            resume = match.end("sep")
            pieces.append(text[position:resume])
            position = resume
            continue
        if match["bare"] is not None and _key_words(key)[-1] in _LINE_VALUE_WORDS:
            start = match.start("bare")
            rest = _LINE_REST.match(text, start)
            end = rest.end() if rest else match.end("bare")
            pieces.append(text[position:start])
            pieces.append(_mask_line_value(text[start:end]))
            position = end
            continue
        group = next(name for name in ("escaped", "quoted", "bare") if match[name] is not None)
        pieces.append(text[position : match.start(group)])
        pieces.append(MASK if match[group] else "")
        position = match.end(group)
    if not pieces:
        return text
    pieces.append(text[position:])
    return "".join(pieces)


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    named = _CONTROL_NAMES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def redact_text(text: str) -> str:
    """`text` with private keys, API keys, credentials, secret fields and card numbers masked and
    control characters escaped. Idempotent.

    Text longer than `MAX_TEXT` (64 KiB) is cut to that length with a marker: a log line is no
    place for more, and the cut bounds the cost of scanning.
    """
    original_length = len(text)
    if original_length > MAX_TEXT:
        text = text[:MAX_TEXT]
    if "PRIVATE KEY" in text:
        text = _PRIVATE_KEY.sub(_PRIVATE_KEY_REDACTED, text)
    if "_" in text:
        text = _API_KEY.sub(lambda m: f"{m[1]}_{m[2]}_{MASK}", text)
        text = _WEBHOOK_SECRET.sub(f"whsec_{MASK}", text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m[1]}:{MASK}@", text)
    text = _AUTH_SCHEME.sub(_mask_auth_scheme, text)
    text = _mask_fragments(text)
    text = mask_pans(text)
    text = _CONTROL.sub(_escape_control, text)
    if original_length > MAX_TEXT or len(text) > MAX_TEXT:
        marker = f"…[truncated: {original_length} characters]"
        # Cutting can shorten a digit run into a new card-number candidate: mask again.
        text = mask_pans(text[: MAX_TEXT - len(marker)]) + marker
    return text


# --- Values ---------------------------------------------------------------------------------------

_PAN_RANGE: Final = (10 ** (PAN_MIN_DIGITS - 1), 10**PAN_MAX_DIGITS)


def redact(value: object) -> object:
    """A JSON-ready copy of `value` with every secret and card number masked (see module doc).

    Mappings, lists, tuples and sets are walked (up to 16 levels); strings are scrubbed with
    `redact_text`; numbers that read as card numbers become masked strings; other objects become
    their redacted text (`str`, or `repr` for exceptions), so no renderer ever sees them raw.
    """
    return _redact(value, 0)


def _redact(value: object, depth: int) -> object:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int | float):
        return _redact_number(value)
    if depth >= _MAX_DEPTH:
        return _TOO_DEEP
    if isinstance(value, Mapping):
        return _redact_mapping(value, depth)
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_item(item, depth + 1) for item in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return redact_text(_text_of(value))


def _redact_mapping(mapping: Mapping[Any, Any], depth: int) -> dict[Any, object]:
    redacted: dict[Any, object] = {}
    for key, item in mapping.items():
        safe_key = redact_text(key) if isinstance(key, str) else _redact(key, depth + 1)
        if not isinstance(safe_key, str | int | float | bool) and safe_key is not None:
            safe_key = str(safe_key)  # a list from a tuple key: JSON keys must be scalars
        if item is not None and is_sensitive_key(_name_of(key)):
            redacted[safe_key] = MASK
        else:
            redacted[safe_key] = _redact(item, depth + 1)
    return redacted


def _redact_item(item: object, depth: int) -> object:
    """A sequence item; a (name, value) pair with a sensitive name — raw ASGI headers,
    `list(request.headers.items())`, form fields — keeps its name and loses its value."""
    if isinstance(item, tuple | list) and len(item) == 2 and item[1] is not None:
        name = _name_of(item[0])
        if is_sensitive_key(name):
            return [_redact(name, depth + 1), MASK]
    return _redact(item, depth)


def _name_of(key: object) -> object:
    """A key as text when it is bytes (raw ASGI headers), so its name can be judged."""
    return bytes(key).decode("latin-1") if isinstance(key, bytes | bytearray) else key


def _redact_number(value: int | float) -> object:
    low, high = _PAN_RANGE
    if not low <= abs(value) < high:
        return value
    text = str(int(value)) if isinstance(value, int) else repr(value)
    masked = mask_pans(text)
    return value if masked == text else masked


def _text_of(value: object) -> str:
    try:
        return repr(value) if isinstance(value, BaseException | bytes | bytearray) else str(value)
    except Exception:  # noqa: BLE001 - a broken __str__/__repr__ must not break logging
        return f"<unprintable {type(value).__name__}>"


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: `redact()` over the whole event dict."""
    return _redact_mapping(event_dict, 0)


# --- Pipeline -------------------------------------------------------------------------------------


def _drop_color_message(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of `event`
    return event_dict


def _foreign_stack(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    stack = event_dict.pop("stack_info", None)
    if isinstance(stack, str):
        event_dict["stack"] = stack
    return event_dict


def _first_keys_first(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    ordered = {key: event_dict[key] for key in _FIRST_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


class _RedactingHandler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` installs (and replaces on a second call)."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - stdlib name
        # The stdlib default prints the record's message and arguments to stderr — unredacted.
        # Report the failure without any of the record's content instead.
        try:
            line = {
                "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                "level": "error",
                "logger": redact_text(record.name),
                "event": "log_record_dropped",
                "reason": type(sys.exc_info()[1]).__name__,
            }
            self.stream.write(json.dumps(line) + self.terminator)
            self.flush()
        except Exception:  # noqa: BLE001, S110 - nowhere left to report to
            pass


def _timestamper() -> Processor:
    return structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")


def _structlog_processors() -> list[Processor]:
    return [
        structlog.stdlib.filter_by_level,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        _timestamper(),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_event,  # before the stdlib sees the event: no handler gets it raw
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]


def _formatter() -> structlog.stdlib.ProcessorFormatter:
    foreign_pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        _timestamper(),
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign_pre_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_color_message,
            _foreign_stack,
            structlog.processors.format_exc_info,  # traceback → text, then redacted below
            redact_event,
            _first_keys_first,
            structlog.processors.JSONRenderer(),
        ],
        keep_exc_info=False,
        keep_stack_info=False,
    )


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """JSON lines with redaction for structlog and the standard library, to `stream` (stderr).

    Safe to call again: the handler installed by an earlier call is replaced, as is a plain
    `logging.StreamHandler` on the root logger (what `logging.basicConfig` installs), which would
    print records unredacted. Handlers that uvicorn, SQLAlchemy or alembic attached to their own
    loggers are removed, and those loggers propagate to the root handler. (uvicorn re-installs its
    handlers when it loads its default log config — start it with `log_config=None`.)

    Only the handler installed here redacts standard-library records: any other handler added to
    the root logger (e.g. pytest's capture handler) still receives them raw. structlog events are
    redacted before any handler sees them.
    """
    structlog.configure(
        processors=_structlog_processors(),
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Not cached: a logger first used before this call must still pick up this pipeline.
        cache_logger_on_first_use=False,
    )
    handler = _RedactingHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_formatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        # Ours from an earlier call, and plain console handlers (`logging.basicConfig`) that would
        # print every standard-library record unredacted next to ours. Subclasses — test
        # harnesses' capture handlers, deliberate file handlers — are left alone.
        if isinstance(existing, _RedactingHandler) or type(existing) is logging.StreamHandler:
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        for existing in list(routed.handlers):
            routed.removeHandler(existing)
        routed.propagate = True
        routed.disabled = False  # uvicorn's Config disables its access logger when built
        # uvicorn follows the root level. SQLAlchemy and alembic stay at WARNING: at INFO the
        # engine logs every SQL statement — a cost on every request and a leak risk (L3).
        routed.setLevel(logging.NOTSET if name.startswith("uvicorn") else logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger that writes through the redacting pipeline."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def bind_request(request_id: str, **fields: object) -> None:
    """Start a request's log context: `request_id` and `fields` appear on every line it logs.

    Clears whatever an earlier request left in this context first."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id, **fields)


def clear_request() -> None:
    """End the request's log context."""
    structlog.contextvars.clear_contextvars()
