"""Block and allow lists as first-class operations: `block("email", "x@y.z")` and friends.

They write to the built-in lists that the default rules read (see `defaults`), so blocking a card
takes effect on the next payment without editing any rule.
"""

from __future__ import annotations

from bastionpay.risk.rules.defaults import (
    ALLOWABLE,
    BLOCKABLE,
    allowlist_name,
    blocklist_name,
    install_default_lists,
)
from bastionpay.risk.rules.errors import ListError
from bastionpay.risk.rules.lists import ListStore, normalize_entry
from bastionpay.risk.rules.values import lookup_keys


class BlockAllowLists:
    def __init__(self, store: ListStore) -> None:
        self.store = store
        install_default_lists(store)

    @staticmethod
    def _block_list(attribute: str) -> str:
        if attribute not in BLOCKABLE:
            raise ListError(f"cannot block by {attribute!r}; one of: {', '.join(BLOCKABLE)}")
        return blocklist_name(attribute)

    @staticmethod
    def _allow_list(attribute: str) -> str:
        if attribute not in ALLOWABLE:
            raise ListError(f"cannot allow by {attribute!r}; one of: {', '.join(ALLOWABLE)}")
        return allowlist_name(attribute)

    def block(self, attribute: str, value: str) -> str:
        """Block payments whose `attribute` is `value`; returns the normalised entry."""
        return self.store.add(self._block_list(attribute), value)

    def unblock(self, attribute: str, value: str) -> bool:
        return self.store.remove(self._block_list(attribute), value)

    def allow(self, attribute: str, value: str) -> str:
        """Allow payments whose `attribute` is `value` (allow rules win over block rules)."""
        return self.store.add(self._allow_list(attribute), value)

    def unallow(self, attribute: str, value: str) -> bool:
        return self.store.remove(self._allow_list(attribute), value)

    def is_blocked(self, attribute: str, value: str) -> bool:
        return self._contains(self._block_list(attribute), attribute, value)

    def is_allowed(self, attribute: str, value: str) -> bool:
        return self._contains(self._allow_list(attribute), attribute, value)

    def _contains(self, name: str, attribute: str, value: str) -> bool:
        kind = BLOCKABLE[attribute]
        keys = lookup_keys(kind, normalize_entry(kind, value))
        return self.store.contains(name, keys) is True
