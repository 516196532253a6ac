"""Migrations match the models on both backends, and the api database never holds a card number."""

from __future__ import annotations

import re
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from starlette.testclient import TestClient
from tests.functional.helpers import pay

from bastionpay.db import migrate
from bastionpay.runtime import Runtime
from bastionpay.schema import metadata

# Luhn-valid runs of 13–19 digits, optionally separated by spaces or dashes (PCI DSS PAN lengths).
# Bounded by non-alphanumerics, so digit runs inside hex digests or random ids are not candidates.
# The first digit is a major network's (2–6): Unix timestamps in micro- or milliseconds are
# 13–16 digit numbers starting with 1 and would otherwise be "cards" one time in ten.
PAN_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])[2-6](?:[ -]?\d){12,18}(?![0-9A-Za-z])")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def find_pans(blob: str) -> list[str]:
    hits = []
    for match in PAN_CANDIDATE.finditer(blob):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            hits.append(digits[:6] + "…" + digits[-4:])
    return hits


def test_the_scanner_finds_card_numbers() -> None:
    assert find_pans("card 4242 4242 4242 4242 ok") == ["424242…4242"]
    assert find_pans("x=5555-5555-5555-4444") == ["555555…4444"]
    assert find_pans("ts 1795876531 and 4242424242424241") == []  # not Luhn-valid
    assert find_pans("hash 9f4242424242424242ab") == []  # inside a hex digest
    assert find_pans("occurred_us 1795879694167700") == []  # a timestamp, not a card


def test_migrations_produce_exactly_the_models(fresh_db_url: str) -> None:
    engine = create_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], diff
        assert migrate.current_revision(fresh_db_url) == migrate.head_revision(fresh_db_url)
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_round_trip(fresh_db_url: str) -> None:
    migrate.downgrade(fresh_db_url, "base")
    engine = create_engine(fresh_db_url)
    try:
        assert "payment_intents" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    migrate.upgrade(fresh_db_url)
    assert migrate.current_revision(fresh_db_url) == migrate.head_revision(fresh_db_url)


def test_api_database_holds_no_card_number_after_payments(
    runtime: Runtime, api: TestClient, merchant: dict[str, Any]
) -> None:
    """SECURITY-REQUIREMENTS C5: a card number in the api database is an incident."""
    for pm in ("pm_card_visa", "pm_card_mastercard", "pm_card_amex", "pm_card_chargeDeclined"):
        pay(api, 1234, pm=pm)
    engine = create_engine(runtime.db.url)
    try:
        dump: list[str] = []
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(text(f"SELECT * FROM {table.name}")):  # noqa: S608
                    dump.append(" | ".join(str(value) for value in row))
    finally:
        engine.dispose()
    blob = "\n".join(dump)
    hits = find_pans(blob)
    context = [line[:200] for line in dump if any(h[:6] in line for h in hits)]
    assert "4242" in blob  # last4 is there: the scan is looking at real data
    assert hits == [], context
