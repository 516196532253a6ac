"""Named lists (`@name`): typed sets of values that rules test membership in.

A list has one kind (card fingerprint, BIN, email, email domain, IP address, customer id, country
or plain string); entries are normalised by that kind when added and when looked up, so they match
however the merchant typed them. Rules are checked against the list's kind when saved, but read its
contents at evaluation time: adding a card to a block list takes effect on the next payment without
touching any rule.

`ListStore` is the contract the api backs with its database (scoped to one merchant per instance);
`InMemoryListStore` is the reference implementation for tests, back-tests and development.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Protocol

from bastionpay.risk.rules.errors import ListError
from bastionpay.risk.rules.values import (
    LIST_KINDS,
    MAX_TEXT_VALUE,
    InvalidValue,
    ValueKind,
    normalize_text,
)

LIST_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class NamedList:
    name: str
    kind: ValueKind
    description: str = ""


class ListStore(Protocol):
    """One merchant's lists. Satisfies both `ListCatalog` (compile time) and `ListLookup`."""

    def list_kind(self, name: str) -> ValueKind | None: ...

    def contains(self, name: str, keys: tuple[str, ...]) -> bool | None: ...

    def get_list(self, name: str) -> NamedList | None: ...

    def all_lists(self) -> tuple[NamedList, ...]: ...

    def create_list(self, name: str, kind: ValueKind, description: str = "") -> NamedList: ...

    def delete_list(self, name: str) -> None: ...

    def add(self, name: str, value: str) -> str:
        """Add `value` (normalised; returned) to list `name`; adding twice is a no-op."""
        ...

    def remove(self, name: str, value: str) -> bool:
        """Remove `value`; False when it was not there."""
        ...

    def items(self, name: str) -> Iterator[str]: ...


def validate_list_name(name: str) -> str:
    if not LIST_NAME.fullmatch(name):
        raise ListError(
            "a list name is 1-64 lower-case letters, digits and underscores, starting with a "
            "letter",
            code="rule_list_name_invalid",
        )
    return name


def normalize_entry(kind: ValueKind, value: str) -> str:
    """`value` as stored in a list of `kind`, or ListError."""
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_VALUE:
        raise ListError(f"a list entry is 1-{MAX_TEXT_VALUE} characters of text")
    if any(not ch.isprintable() for ch in value):
        raise ListError("a list entry cannot contain control or invisible characters")
    try:
        return normalize_text(kind, value)
    except InvalidValue as exc:
        raise ListError(f"invalid {kind.value.replace('_', ' ')}: {exc}") from None


class InMemoryListStore:
    """Lists in a dict, bounded in number and size (memory is not unlimited)."""

    def __init__(self, *, max_lists: int = 1_000, max_items_per_list: int = 100_000) -> None:
        self._lists: dict[str, tuple[NamedList, set[str]]] = {}
        self.max_lists = max_lists
        self.max_items_per_list = max_items_per_list

    def list_kind(self, name: str) -> ValueKind | None:
        entry = self._lists.get(name)
        return entry[0].kind if entry else None

    def contains(self, name: str, keys: tuple[str, ...]) -> bool | None:
        entry = self._lists.get(name)
        if entry is None:
            return None
        values = entry[1]
        return any(key in values for key in keys)

    def get_list(self, name: str) -> NamedList | None:
        entry = self._lists.get(name)
        return entry[0] if entry else None

    def all_lists(self) -> tuple[NamedList, ...]:
        return tuple(entry[0] for entry in self._lists.values())

    def create_list(self, name: str, kind: ValueKind, description: str = "") -> NamedList:
        validate_list_name(name)
        if kind not in LIST_KINDS:
            raise ListError(f"lists hold text values, not {kind.value}s")
        if name in self._lists:
            raise ListError(f"list @{name} already exists", code="rule_list_exists")
        if len(self._lists) >= self.max_lists:
            raise ListError(f"at most {self.max_lists} lists", code="rule_list_limit")
        named = NamedList(name, kind, description)
        self._lists[name] = (named, set())
        return named

    def delete_list(self, name: str) -> None:
        if self._lists.pop(name, None) is None:
            raise ListError(f"no such list: @{name}", code="rule_list_missing")

    def _entry(self, name: str) -> tuple[NamedList, set[str]]:
        entry = self._lists.get(name)
        if entry is None:
            raise ListError(f"no such list: @{name}", code="rule_list_missing")
        return entry

    def add(self, name: str, value: str) -> str:
        named, values = self._entry(name)
        normalized = normalize_entry(named.kind, value)
        if normalized not in values and len(values) >= self.max_items_per_list:
            raise ListError(
                f"@{name} is full ({self.max_items_per_list} entries)", code="rule_list_limit"
            )
        values.add(normalized)
        return normalized

    def remove(self, name: str, value: str) -> bool:
        named, values = self._entry(name)
        normalized = normalize_entry(named.kind, value)
        if normalized in values:
            values.discard(normalized)
            return True
        return False

    def items(self, name: str) -> Iterator[str]:
        return iter(sorted(self._entry(name)[1]))
