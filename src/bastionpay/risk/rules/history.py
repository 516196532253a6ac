"""Versions of one merchant's rule set, kept for audit: old versions stay readable.

The in-memory reference for what the api stores in its database: versions are append-only, and a
change is accepted only on top of the current version (optimistic concurrency: two operators
editing at once cannot silently overwrite each other; the loser gets a `rule_set_stale` error and
retries on the new version).
"""

from __future__ import annotations

from collections.abc import Callable

from bastionpay.kernel.clock import Clock, SystemClock
from bastionpay.risk.rules.engine import RuleSet
from bastionpay.risk.rules.errors import RuleSetError


class RuleSetHistory:
    def __init__(
        self, merchant_id: str, *, clock: Clock | None = None, by: str | None = None
    ) -> None:
        self.merchant_id = merchant_id
        self.clock: Clock = clock or SystemClock()
        self._versions: list[RuleSet] = [
            RuleSet(merchant_id, 1, (), self.clock.now(), by, "created")
        ]

    @property
    def current(self) -> RuleSet:
        return self._versions[-1]

    def version(self, number: int) -> RuleSet:
        if not 1 <= number <= len(self._versions):
            raise RuleSetError(f"no version {number} of this rule set", code="rule_set_missing")
        return self._versions[number - 1]

    def versions(self) -> tuple[RuleSet, ...]:
        return tuple(self._versions)

    def commit(self, new: RuleSet) -> RuleSet:
        """Append `new`, which must be the next version of the current one."""
        if new.merchant_id != self.merchant_id or new.version != self.current.version + 1:
            raise RuleSetError(
                f"rule set changed meanwhile (now version {self.current.version}); "
                "reload and apply the change again",
                code="rule_set_stale",
            )
        self._versions.append(new)
        return new

    def change(self, edit: Callable[[RuleSet, int], RuleSet]) -> RuleSet:
        """Apply `edit(current, now)` and commit the result: `history.change(lambda rs, now:
        rs.with_rule(rule, at=now, by="usr_…"))`."""
        return self.commit(edit(self.current, self.clock.now()))
