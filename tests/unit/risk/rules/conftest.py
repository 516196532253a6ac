"""Fixtures for the rules-language tests: a list store with the lists the examples use."""

from __future__ import annotations

import pytest

from bastionpay.risk.rules import InMemoryListStore, ValueKind


@pytest.fixture
def store() -> InMemoryListStore:
    lists = InMemoryListStore()
    lists.create_list("trusted_customers", ValueKind.CUSTOMER_ID, "customers we know")
    lists.create_list("blocked_cards", ValueKind.CARD_FINGERPRINT)
    lists.create_list("risky_bins", ValueKind.CARD_BIN)
    lists.create_list("bad_countries", ValueKind.COUNTRY)
    lists.create_list("bad_emails", ValueKind.EMAIL)
    lists.create_list("bad_ips", ValueKind.IP_ADDRESS)
    return lists
