"""Named lists: the store contract, normalisation, bounds, and the block/allow helpers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bastionpay.risk.rules import (
    BlockAllowLists,
    InMemoryListStore,
    ListError,
    ListStore,
    ValueKind,
)

# The api's database-backed store joins this list to be held to the same contract.
STORES: list[Callable[[], ListStore]] = [InMemoryListStore]


@pytest.fixture(params=STORES)
def fresh(request: pytest.FixtureRequest) -> ListStore:
    factory: Callable[[], ListStore] = request.param
    return factory()


def test_contract_create_add_contains_remove(fresh: ListStore) -> None:
    named = fresh.create_list("vip", ValueKind.CUSTOMER_ID, "our best customers")
    assert named.kind is ValueKind.CUSTOMER_ID
    assert fresh.get_list("vip") == named
    assert fresh.list_kind("vip") is ValueKind.CUSTOMER_ID
    assert fresh.all_lists() == (named,)
    assert fresh.add("vip", "cus_1") == "cus_1"
    assert fresh.add("vip", "cus_1") == "cus_1"  # idempotent
    assert fresh.contains("vip", ("cus_1",)) is True
    assert fresh.contains("vip", ("cus_2",)) is False
    assert list(fresh.items("vip")) == ["cus_1"]
    assert fresh.remove("vip", "cus_1") is True
    assert fresh.remove("vip", "cus_1") is False
    assert fresh.contains("vip", ("cus_1",)) is False


def test_contract_unknown_lists(fresh: ListStore) -> None:
    assert fresh.list_kind("nope") is None
    assert fresh.contains("nope", ("x",)) is None
    assert fresh.get_list("nope") is None
    with pytest.raises(ListError):
        fresh.add("nope", "x")
    with pytest.raises(ListError):
        fresh.delete_list("nope")


def test_contract_names_and_kinds(fresh: ListStore) -> None:
    for bad in ("", "Upper", "1abc", "a-b", "a" * 65, "ｆｕｌｌ", "a\u202eb"):
        with pytest.raises(ListError):
            fresh.create_list(bad, ValueKind.STRING)
    with pytest.raises(ListError):
        fresh.create_list("numbers", ValueKind.NUMBER)
    fresh.create_list("x", ValueKind.STRING)
    with pytest.raises(ListError) as caught:
        fresh.create_list("x", ValueKind.STRING)
    assert caught.value.code == "rule_list_exists"


@pytest.mark.parametrize(
    ("kind", "given", "stored"),
    [
        (ValueKind.EMAIL, "Bob@Example.ORG", "bob@example.org"),
        (ValueKind.EMAIL_DOMAIN, "Example.org.", "example.org"),
        (ValueKind.COUNTRY, "us", "US"),
        (ValueKind.IP_ADDRESS, "2001:0db8:0000::1", "2001:db8::1"),
        (ValueKind.CARD_BIN, "42424242", "42424242"),
        (ValueKind.CARD_FINGERPRINT, "fp_AbC", "fp_AbC"),
        (ValueKind.STRING, "Mixed Case", "Mixed Case"),
    ],
)
def test_entries_are_normalised(fresh: ListStore, kind: ValueKind, given: str, stored: str) -> None:
    fresh.create_list("l", kind)
    assert fresh.add("l", given) == stored
    assert fresh.contains("l", (stored,)) is True


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (ValueKind.COUNTRY, "USA"),
        (ValueKind.CARD_BIN, "4242"),
        (ValueKind.IP_ADDRESS, "999.1.1.1"),
        (ValueKind.STRING, ""),
        (ValueKind.STRING, "x" * 513),
        (ValueKind.STRING, "nul\x00byte"),
        (ValueKind.EMAIL, "rtl\u202eoverride@x.com"),
    ],
)
def test_bad_entries_are_refused(fresh: ListStore, kind: ValueKind, value: str) -> None:
    fresh.create_list("l", kind)
    with pytest.raises(ListError):
        fresh.add("l", value)


def test_in_memory_bounds() -> None:
    store = InMemoryListStore(max_lists=2, max_items_per_list=2)
    store.create_list("a", ValueKind.STRING)
    store.create_list("b", ValueKind.STRING)
    with pytest.raises(ListError, match="at most 2 lists"):
        store.create_list("c", ValueKind.STRING)
    store.add("a", "1")
    store.add("a", "2")
    store.add("a", "2")  # re-adding an existing entry is fine when full
    with pytest.raises(ListError, match="full"):
        store.add("a", "3")


def test_block_and_allow_helpers() -> None:
    store = InMemoryListStore()
    lists = BlockAllowLists(store)
    assert store.get_list("card_fingerprint_blocklist") is not None
    assert lists.block("email", "Fraud@Example.com") == "fraud@example.com"
    assert lists.is_blocked("email", "FRAUD@example.com")
    assert lists.unblock("email", "fraud@example.com")
    assert not lists.is_blocked("email", "fraud@example.com")
    lists.block("card_bin", "424242")
    assert lists.is_blocked("card_bin", "42424299")  # 8-digit BIN under a blocked 6-digit one
    lists.allow("customer", "cus_1")
    assert lists.is_allowed("customer", "cus_1")
    assert lists.unallow("customer", "cus_1")
    with pytest.raises(ListError):
        lists.allow("card_bin", "424242")  # no BIN allow list
    with pytest.raises(ListError):
        lists.block("amount", "5")
    BlockAllowLists(store)  # installing the default lists again is harmless
