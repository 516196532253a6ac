"""observability.logging: JSON logs that never carry card data or secrets (L3, C1, C2, C5).

The scan test at the end sends card numbers, CVCs, passwords, keys, tokens, cookies and control
characters through every path into the log — structlog calls, bound context, exceptions with
tracebacks, and the standard library loggers of uvicorn, SQLAlchemy and the project — and scans
every line the way the C5 incident scanner does.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

from bastionpay.kernel.pan import find_pans
from bastionpay.kernel.secrets import Secret
from bastionpay.observability.logging import (
    MASK,
    MAX_TEXT,
    ROUTED_LOGGERS,
    bind_request,
    clear_request,
    configure_logging,
    get_logger,
    is_sensitive_key,
    redact,
    redact_text,
)

PAN = "4242424242424242"
PAN_SPACED = "5555 5555 5555 4444"
PAN_DASHED = "3782-822463-10005"
PAN_DISCOVER = "6011111111111117"
CVC = "9731"
PASSWORD = "hunter2-Correct-Horse"
API_KEY = "sk_live_51HxYzAbCdEfGhIjKlMnOp"
RESTRICTED_KEY = "rk_test_26PHem9AhJZvU623DfE1x4sd"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY2N0In0.c2lnbmF0dXJl"
BASIC = base64.b64encode(b"operator:" + PASSWORD.encode()).decode()
SESSION = "SeSsIoN-9f8e7d6c5b4a"
REFRESH = "rt_Zq81mNbVcXz0LkJhGf"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLSYK"
DB_PASSWORD = "pg-Pa55word"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
PEM = f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\nx9fQ==\n-----END PRIVATE KEY-----\n"

SECRETS = [
    PASSWORD,
    API_KEY.removeprefix("sk_live_"),
    RESTRICTED_KEY.removeprefix("rk_test_"),
    BEARER,
    "c2lnbmF0dXJl",
    BASIC,
    SESSION,
    REFRESH,
    WEBHOOK_SECRET.removeprefix("whsec_"),
    DB_PASSWORD,
    PEM_BODY,
]
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Logging configured into a StringIO; the global logging state restored afterwards."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_routed = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in ROUTED_LOGGERS
    }
    stream = io.StringIO()
    configure_logging(level=logging.DEBUG, stream=stream)
    yield stream
    clear_request()
    root.handlers[:] = saved_root[0]
    root.setLevel(saved_root[1])
    for name, (handlers, propagate) in saved_routed.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate
    structlog.reset_defaults()


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text[:-1].split("\n")]


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# --- Sensitive keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password", "PASSWORD", "db_password", "new_password", "dbPassword", "passwd",
        "passphrase", "secret", "client_secret", "clientSecret", "webhook_secret",
        "token", "access_token", "refresh_token", "accessToken", "csrf_token", "id_token",
        "authorization", "Authorization", "proxy-authorization", "HTTP_AUTHORIZATION",
        "cookie", "Cookie", "set-cookie", "Set-Cookie", "cookies", "session",
        "cvc", "cvv", "CVC2", "cvv2", "card[cvc]", "card%5Bcvc%5D", "pin", "pan", "card_pan",
        "card_number", "cardNumber", "card[number]", "number",
        "api_key", "X-Api-Key", "x-apikey", "apiKey", "APIKey", "secret_key", "private_key",
        "signing_key", "data_key", "session_id", "recovery_codes", "totp_code",
        "password_confirmation", "account_number",
    ],
)  # fmt: skip
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)
    assert redact({key: "s3cr3t-value"}) == {key: MASK}


@pytest.mark.parametrize(
    "key",
    [
        "idempotency_key", "Idempotency-Key", "key_id", "key", "public_key", "publishable_key",
        "token_type", "token_expires_at", "password_changed_at", "secret_version",
        "cvc_check", "pan_last4", "last4", "exp_month", "brand", "fingerprint",
        "attempt_number", "numbers", "phone_number", "request_id", "merchant_id",
        "event", "level", "message", "amount", "currency", "company", "span", "japan",
        "authorization_status", "cookie_name", "tokenizer",
    ],
)  # fmt: skip
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_sensitive_key(key)
    assert redact({key: "visible"}) == {key: "visible"}


def test_non_string_keys_are_not_sensitive() -> None:
    assert not is_sensitive_key(42)
    assert not is_sensitive_key(None)
    assert not is_sensitive_key("")


# --- redact() -------------------------------------------------------------------------------------


def test_redact_walks_nested_structures() -> None:
    value = {
        "card": {"number": PAN, "cvc": CVC, "exp_month": 12, "last4": "4242"},
        "items": [{"password": PASSWORD}, ("note", f"card {PAN}")],
        "tags": frozenset({"ok"}),
        "empty_secret": None,
    }
    assert redact(value) == {
        "card": {"number": MASK, "cvc": MASK, "exp_month": 12, "last4": "4242"},
        "items": [{"password": MASK}, ["note", "card 424242******4242"]],
        "tags": ["ok"],
        "empty_secret": None,
    }


def test_whole_values_under_sensitive_keys_are_masked_whatever_their_type() -> None:
    assert redact({"cookie": {"sid": SESSION}, "token": [REFRESH], "pin": 1234}) == {
        "cookie": MASK,
        "token": MASK,
        "pin": MASK,
    }
    assert redact({"password": None}) == {"password": None}  # absence reveals nothing


def test_header_pairs_lose_sensitive_values() -> None:
    headers = [
        (b"authorization", f"Bearer {BEARER}".encode()),
        (b"cookie", f"sid={SESSION}".encode()),
        ("X-Api-Key", API_KEY),
        (b"content-type", b"application/json"),
    ]
    assert redact(headers) == [
        ["authorization", MASK],
        ["cookie", MASK],
        ["X-Api-Key", MASK],
        [repr(b"content-type"), repr(b"application/json")],
    ]


def test_bytes_keys_are_judged_by_name() -> None:
    assert redact({b"cookie": b"sid=1", b"accept": b"*/*"}) == {
        repr(b"cookie"): MASK,
        repr(b"accept"): repr(b"*/*"),
    }


def test_numbers_that_read_as_card_numbers_are_masked() -> None:
    assert redact(4242424242424242) == "424242******4242"
    assert redact(-4242424242424242) == "-424242******4242"
    assert redact(4242424242424242.0) == "424242******4242.0"
    assert redact(4242424242424241) == 4242424242424241  # not Luhn-valid
    assert redact(2000) == 2000
    assert redact(10**40) == 10**40
    assert redact(1.5) == 1.5
    assert redact(True) is True


def test_objects_are_logged_as_redacted_text() -> None:
    @dataclass
    class Login:
        user: str
        password: str

    assert redact(Login("bob", PASSWORD)) == f"{Login.__qualname__}(user='bob', password='{MASK}')"
    assert redact(Secret(PASSWORD)) == MASK
    assert redact(ValueError(f"bad card {PAN}")) == "ValueError('bad card 424242******4242')"
    assert redact(f"{PAN}".encode()) == "b'424242******4242'"
    assert redact(dt.datetime(2024, 1, 15, tzinfo=dt.UTC)) == "2024-01-15T00:00:00+00:00"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError(PAN)

    assert redact(Broken()) == "<unprintable Broken>"


def test_deep_and_cyclic_structures_are_cut_off() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    text = json.dumps(redact(cyclic))
    assert "[nested too deeply]" in text
    deep: dict[str, object] = {"card": PAN}
    for _ in range(50):
        deep = {"next": deep}
    assert PAN not in json.dumps(redact(deep))


def test_dict_keys_are_scrubbed_too() -> None:
    assert redact({f"card {PAN}\n": 1}) == {"card 424242******4242\\n": 1}


# --- redact_text() --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"charge {PAN} ok", "charge 424242******4242 ok"),
        (f"key {API_KEY} used", f"key sk_live_{MASK} used"),
        (f"curl -u {RESTRICTED_KEY}:", f"curl -u rk_test_{MASK}:"),
        ("pk_test_TYooMQauvdEDq54NiTphI7jx", f"pk_test_{MASK}"),
        ("sk_test_…4242", "sk_test_…4242"),  # already the redacted display form
        (f"secret {WEBHOOK_SECRET}", f"secret whsec_{MASK}"),
        (f"Authorization: Bearer {BEARER}", f"Authorization: Bearer {MASK}"),
        (f"authorization=bearer {BEARER}", f"authorization=bearer {MASK}"),
        (f"sent Bearer {BEARER}.", f"sent Bearer {MASK}."),
        ("sent Bearer opaque-token_42", f"sent Bearer {MASK}"),
        (f"Authorization: Basic {BASIC}", f"Authorization: Basic {MASK}"),
        ("Basic auth failed for user", "Basic auth failed for user"),
        (f"Cookie: bp_session={SESSION}; theme=dark", f"Cookie: {MASK}"),
        (f"Set-Cookie: sid={SESSION}; Path=/; HttpOnly\nnext", f"Set-Cookie: {MASK}\\nnext"),
        (f"cvc={CVC}&amount=2000", f"cvc={MASK}&amount=2000"),
        (f"card[number]={PAN}&card[cvc]={CVC}", f"card[number]={MASK}&card[cvc]={MASK}"),
        (f"card%5Bcvc%5D={CVC}", f"card%5Bcvc%5D={MASK}"),
        (f'{{"cvc": "{CVC}", "exp_year": 2030}}', f'{{"cvc": "{MASK}", "exp_year": 2030}}'),
        (f'{{"cvc": {CVC}}}', f'{{"cvc": {MASK}}}'),
        (f"{{'password': '{PASSWORD}'}}", f"{{'password': '{MASK}'}}"),
        (f'login(password="{PASSWORD}")', f'login(password="{MASK}")'),
        (f'{{\\"cvc\\": \\"{CVC}\\", \\"x\\": 1}}', f'{{\\"cvc\\": \\"{MASK}\\", \\"x\\": 1}}'),
        (f'{{"cvc": "{CVC}', f'{{"cvc": "{MASK}'),  # a truncated body
        (f'"msg": "password={PASSWORD}"', f'"msg": "password={MASK}"'),
        (f"Invalid password: {PASSWORD}", f"Invalid password: {MASK}"),
        (f"X-Api-Key: {API_KEY}", f"X-Api-Key: {MASK}"),
        (f"postgresql://bp:{DB_PASSWORD}@db/bp", f"postgresql://bp:{MASK}@db/bp"),
        (f"key:\n{PEM}done", "key:\\n[private key redacted]\\ndone"),
        (f"truncated {PEM[:60]}", "truncated [private key redacted]"),
        ("token_type=bearer idempotency_key=abc-123", "token_type=bearer idempotency_key=abc-123"),
        (f"{{'password': b'{PASSWORD}'}}", f"{{'password': b'{MASK}'}}"),
        (f"id {BEARER} seen", f"id {MASK} seen"),  # a JWT on its own
        ("cvc_check=pass last4=4242 amount=2000", "cvc_check=pass last4=4242 amount=2000"),
        ("GET /v1/charges?limit=10 200", "GET /v1/charges?limit=10 200"),
    ],
)
def test_secrets_inside_strings(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # idempotent


def test_control_characters_are_escaped() -> None:
    text = "a\nb\rc\td\x00e\x1b[31mf\x7fg\x85h\u2028i\u202ej"
    assert redact_text(text) == "a\\nb\\rc\\td\\x00e\\x1b[31mf\\x7fg\\x85h\\u2028i\\u202ej"
    assert redact_text("café – ok") == "café – ok"


def test_long_text_is_cut_with_a_marker_and_stays_cut() -> None:
    text = ("x" * (MAX_TEXT - 10)) + f" {PAN} " + ("y" * 1000)
    once = redact_text(text)
    assert len(once) <= MAX_TEXT
    assert once.endswith(f"…[truncated: {len(text)} characters]")
    assert find_pans(once) == []
    assert redact_text(once) == once


# --- configure_logging ----------------------------------------------------------------------------


def test_lines_are_json_with_the_standard_fields_first(log_stream: io.StringIO) -> None:
    get_logger("bastionpay.test").info("payment_created", amount=2000)
    logging.getLogger("bastionpay.api").warning("stdlib %s", "record")
    first, second = _records(log_stream)
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["level"] == "info"
    assert first["logger"] == "bastionpay.test"
    assert first["event"] == "payment_created"
    assert first["amount"] == 2000
    stamp = dt.datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert list(second)[:4] == ["timestamp", "level", "logger", "event"]
    assert (second["level"], second["logger"], second["event"]) == (
        "warning",
        "bastionpay.api",
        "stdlib record",
    )


def test_request_context_is_merged_and_cleared(log_stream: io.StringIO) -> None:
    bind_request("req_abc123", merchant_id="acct_1")
    get_logger("t").info("inside")
    logging.getLogger("t").info("inside stdlib")
    bind_request("req_next")  # a new request starts from a clean context
    get_logger("t").info("next")
    clear_request()
    get_logger("t").info("outside")
    inside, inside_stdlib, following, outside = _records(log_stream)
    assert inside["request_id"] == inside_stdlib["request_id"] == "req_abc123"
    assert inside["merchant_id"] == "acct_1"
    assert following["request_id"] == "req_next"
    assert "merchant_id" not in following
    assert "request_id" not in outside


def test_configure_is_idempotent_and_replaces_its_handler(log_stream: io.StringIO) -> None:
    second = io.StringIO()
    configure_logging(stream=second)
    configure_logging(stream=second)
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_RedactingHandler"]
    assert len(ours) == 1
    get_logger("t").info("once")
    assert log_stream.getvalue() == ""
    assert [record["event"] for record in _records(second)] == ["once"]


def test_level_filters_both_paths(log_stream: io.StringIO) -> None:
    configure_logging(level=logging.WARNING, stream=log_stream)
    get_logger("t").info("dropped")
    logging.getLogger("t").info("dropped")
    get_logger("t").warning("kept")
    logging.getLogger("t").error("kept too")
    assert [record["event"] for record in _records(log_stream)] == ["kept", "kept too"]


def test_third_party_handlers_are_replaced_by_the_root_pipeline(log_stream: io.StringIO) -> None:
    leaky = io.StringIO()
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(logging.StreamHandler(leaky))
    uvicorn_error.propagate = False
    configure_logging(level=logging.DEBUG, stream=log_stream)
    uvicorn_error.error("card %s", PAN)
    assert leaky.getvalue() == ""
    assert _records(log_stream)[0]["event"] == "card 424242******4242"


def test_other_handlers_never_see_a_structlog_event_raw(log_stream: io.StringIO) -> None:
    seen: list[object] = []

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.msg)

    spy = Spy()
    logging.getLogger().addHandler(spy)
    try:
        get_logger("t").info(f"card {PAN}", password=PASSWORD)
    finally:
        logging.getLogger().removeHandler(spy)
    assert PAN not in repr(seen)
    assert PASSWORD not in repr(seen)


def test_a_record_that_fails_to_format_is_reported_without_its_content(
    log_stream: io.StringIO,
) -> None:
    (ours,) = [h for h in logging.getLogger().handlers if type(h).__name__ == "_RedactingHandler"]
    record = logging.LogRecord(
        "bastionpay.api", logging.ERROR, __file__, 1, f"card {PAN} %d", ("not a number",), None
    )
    ours.handle(record)  # the stdlib default would print the message and args to stderr
    (line,) = _records(log_stream)
    assert (line["event"], line["reason"], line["logger"]) == (
        "log_record_dropped",
        "TypeError",
        "bastionpay.api",
    )
    assert PAN not in log_stream.getvalue()


def test_basic_config_console_handler_is_replaced(log_stream: io.StringIO) -> None:
    leaky = io.StringIO()
    logging.basicConfig(stream=leaky, force=False)
    logging.getLogger().addHandler(logging.StreamHandler(leaky))
    configure_logging(stream=log_stream)
    logging.getLogger("bastionpay.api").warning("card %s", PAN)
    assert leaky.getvalue() == ""
    assert _records(log_stream)[0]["event"] == "card 424242******4242"


# --- The scan (C5) --------------------------------------------------------------------------------


def _fail_with_card_data() -> None:
    try:
        raise KeyError(f"Cookie: sid={SESSION}")
    except KeyError as cause:
        raise ValueError(
            f"processor declined card {PAN} cvc={CVC} via {API_KEY} password={PASSWORD}"
        ) from cause


def _emit_everything() -> int:
    """Send secrets through every logging path; returns how many records were logged."""
    log = get_logger("bastionpay.payments")
    bind_request("req_7f3a9c", merchant_id="acct_1", user_agent=f"curl\r\nFAKE {PAN}")
    count = 0

    # structlog: message, kwargs, nested values, numbers, objects
    log.info(f"card_received {PAN} / {PAN_SPACED} / {PAN_DASHED}", card_last4="4242")
    log.info(
        "payment_method_created",
        card={"number": PAN, "cvc": CVC, "exp_month": 12, "last4": "4242", "cvc_check": "pass"},
        params={"card[number]": PAN_SPACED, "card[cvc]": CVC, "amount": 2000},
        raw_body=f"amount=2000&card[number]={PAN}&card[cvc]={CVC}",
        json_body=json.dumps({"card": {"number": PAN_DASHED, "cvc": CVC}}),
        numbers=[int(PAN_DISCOVER), (PAN_DASHED, "x")],
        idempotency_key="idem-123",
        key_id="key_9x8y",
        token_type="bearer",
    )
    log.info(
        "login_attempt",
        password=PASSWORD,
        headers={
            "Authorization": f"Bearer {BEARER}",
            "Cookie": f"bp_session={SESSION}",
            "X-Api-Key": API_KEY,
        },
        raw_headers=[(b"authorization", f"Basic {BASIC}".encode()), (b"accept", b"*/*")],
        note=f"retry with Authorization: Basic {BASIC} and refresh_token={REFRESH}",
        tls_key=PEM,
        webhook=f"signing with {WEBHOOK_SECRET}",
        dsn=f"postgresql://bastionpay:{DB_PASSWORD}@db:5432/bastionpay",
        secret=Secret(PASSWORD),
    )
    log.warning('injected\nFAKE_LINE {"level": "critical"}', reason="a\rb\x1b[2J\u2028c")
    count += 4

    # exceptions: structlog exception(), exc_info=instance, and chained causes
    try:
        _fail_with_card_data()
    except ValueError as exc:
        log.exception("charge_failed")
        log.error("charge_failed_again", exc_info=exc)  # noqa: TRY400 - an explicit exc_info
        count += 2

    # stdlib: uvicorn, sqlalchemy, the project's own loggers
    try:
        _fail_with_card_data()
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application %s", PAN)
        count += 1
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "GET",
        f"/v1/tokens?card[number]={PAN}&card[cvc]={CVC}",
        "1.1",
        200,
    )
    logging.getLogger("sqlalchemy.engine.Engine").warning(  # SQLAlchemy may raise its level
        "[generated in 0.0001s] %r", (PAN_SPACED, {"password": PASSWORD})
    )
    logging.getLogger("bastionpay.api").error(
        "unhandled error",
        extra={"request_id": "req_7f3a9c", "card": {"number": PAN, "cvc": CVC}},
    )
    logging.getLogger("bastionpay.api").info({"password": PASSWORD, "cvc": CVC, "pan": PAN})
    logging.getLogger("alembic.runtime").warning("bad line\n%s", f"Cookie: sid={SESSION}")
    logging.getLogger("bastionpay.worker").info("stack", stack_info=True)
    count += 6
    clear_request()
    return count


def test_no_card_data_or_secret_reaches_any_log_line(log_stream: io.StringIO) -> None:
    count = _emit_everything()
    raw_lines = log_stream.getvalue().split("\n")
    assert raw_lines[-1] == ""
    assert len(raw_lines) - 1 == count  # one line per record: nothing injected a line
    records = _records(log_stream)

    for line, record in zip(raw_lines, records, strict=False):
        # The C5 scanner's view: the raw line and every decoded string in it.
        assert find_pans(line) == [], line
        without_timestamp = {key: value for key, value in record.items() if key != "timestamp"}
        decoded = json.dumps(without_timestamp, ensure_ascii=False)
        for secret in SECRETS:
            assert secret not in line, (secret, line)
            assert secret not in decoded, (secret, line)
        assert not re.search(rf"(?<![0-9]){CVC}(?![0-9])", decoded), line
        for text in _strings(record):
            assert find_pans(text) == [], text
            assert not _CONTROL.search(text), text  # no raw newline or escape in any value


def test_useful_content_survives_redaction(log_stream: io.StringIO) -> None:
    _emit_everything()
    records = _records(log_stream)
    events = [record["event"] for record in records]
    assert events[1:4] == [
        "payment_method_created",
        "login_attempt",
        'injected\\nFAKE_LINE {"level": "critical"}',
    ]
    assert events[0] == "card_received 424242******4242 / 555555******4444 / 378282*****0005"
    assert {"charge_failed", "charge_failed_again", "unhandled error"} <= set(events)
    assert all(record["request_id"] == "req_7f3a9c" for record in records)
    assert all(record["level"] in {"info", "warning", "error"} for record in records)

    created = records[1]
    assert created["card"] == {
        "number": MASK,
        "cvc": MASK,
        "exp_month": 12,
        "last4": "4242",
        "cvc_check": "pass",
    }
    assert created["params"] == {"card[number]": MASK, "card[cvc]": MASK, "amount": 2000}
    assert created["raw_body"] == f"amount=2000&card[number]={MASK}&card[cvc]={MASK}"
    assert created["numbers"] == ["601111******1117", ["378282*****0005", "x"]]
    assert (created["idempotency_key"], created["key_id"], created["token_type"]) == (
        "idem-123",
        "key_9x8y",
        "bearer",
    )
    login = records[2]
    assert login["password"] == MASK
    assert login["headers"] == {"Authorization": MASK, "Cookie": MASK, "X-Api-Key": MASK}
    assert login["raw_headers"] == [["authorization", MASK], [repr(b"accept"), repr(b"*/*")]]
    assert login["tls_key"] == "[private key redacted]\\n"
    assert login["dsn"] == f"postgresql://bastionpay:{MASK}@db:5432/bastionpay"
    assert records[0]["user_agent"] == "curl\\r\\nFAKE 424242******4242"

    failed = next(record for record in records if record["event"] == "charge_failed")
    assert "Traceback (most recent call last)" in failed["exception"]
    assert "ValueError: processor declined card 424242******4242" in failed["exception"]
    assert "The above exception was the direct cause" in failed["exception"]
    uvicorn = next(record for record in records if record["logger"] == "uvicorn.error")
    assert uvicorn["event"] == "Exception in ASGI application 424242******4242"
    assert "ValueError: processor declined card 424242******4242" in uvicorn["exception"]
    access = next(record for record in records if record["logger"] == "uvicorn.access")
    assert access["event"] == (
        f'127.0.0.1:5000 - "GET /v1/tokens?card[number]={MASK}&card[cvc]={MASK} HTTP/1.1" 200'
    )
    api_error = next(record for record in records if record["event"] == "unhandled error")
    assert api_error["card"] == {"number": MASK, "cvc": MASK}
    stack = next(record for record in records if record["event"] == "stack")
    assert "_emit_everything" in stack["stack"]


def test_configuring_logs_never_turns_on_sql_echo(log_stream: io.StringIO) -> None:
    """At INFO, SQLAlchemy's engine would log every statement: slow, and a leak risk (L3)."""
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.engine.Engine"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
