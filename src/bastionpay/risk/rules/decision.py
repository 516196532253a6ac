"""Actions, their order, and the decision a rule set reaches on one payment.

Order (Stripe Radar's, docs "Rules reference: rule processing and ordering"):

1. `request_3ds` — if any live request_3ds rule matches and 3-D Secure has not been done for this
   payment yet, the decision is `request_3ds`: the payment path runs 3DS and then evaluates again
   with `three_ds_completed=True` (and `:is_3ds_authenticated:` set), when request_3ds rules no
   longer act.
2. `allow` — a matching allow rule wins over every block and review rule.
3. `block` — wins over review.
4. `review` — the payment is authorised but held for a reviewer.

No live match means the payment goes ahead (`allow`, with `by_default=True`). Rules of the same
action are not ordered among themselves; all that matched are reported (in rule-set order).
Shadow rules are evaluated on every payment and reported separately, never acting; `shadow_action`
is what the decision would have been had they been live, which is what a merchant wants to know
before switching a rule on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from bastionpay.risk.rules.values import Value, to_json_value


class Action(StrEnum):
    REQUEST_3DS = "request_3ds"
    ALLOW = "allow"
    BLOCK = "block"
    REVIEW = "review"


class Mode(StrEnum):
    LIVE = "live"
    SHADOW = "shadow"  # evaluated and reported, never acts


ACTION_ORDER: Final = (Action.REQUEST_3DS, Action.ALLOW, Action.BLOCK, Action.REVIEW)


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule_id: str
    action: Action
    mode: Mode
    version: int
    source: str
    condition: str  # the condition in plain words

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "action": self.action.value,
            "mode": self.mode.value,
            "version": self.version,
            "predicate": self.source,
        }


def resolve(
    matches: Iterable[RuleMatch], *, three_ds_completed: bool
) -> tuple[Action, tuple[RuleMatch, ...]]:
    """The acting action and the rules that carry it, by `ACTION_ORDER`."""
    by_action: dict[Action, list[RuleMatch]] = {action: [] for action in ACTION_ORDER}
    for match in matches:
        by_action[match.action].append(match)
    for action in ACTION_ORDER:
        if action is Action.REQUEST_3DS and three_ds_completed:
            continue
        if by_action[action]:
            return action, tuple(by_action[action])
    return Action.ALLOW, ()


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    rules: tuple[RuleMatch, ...]  # live rules of `action` that matched: the reason
    matches: tuple[RuleMatch, ...]  # every live rule that matched, including overridden ones
    shadow_matches: tuple[RuleMatch, ...]
    shadow_action: Action  # the decision had the shadow rules been live
    inputs: Mapping[str, Value | None] = field(default_factory=dict)  # attributes read
    ruleset_version: int | None = None
    three_ds_completed: bool = False

    @property
    def by_default(self) -> bool:
        """True when no live rule decided (the payment proceeds as allowed)."""
        return not self.rules

    @property
    def rule(self) -> RuleMatch | None:
        """The first acting rule, as Stripe reports one `outcome.rule`."""
        return self.rules[0] if self.rules else None

    @property
    def shadow_differs(self) -> bool:
        return self.shadow_action is not self.action

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record of the decision and its inputs (for the audit and decision logs).

        Inputs are the attribute values the rules read; they can include an email or IP address,
        which are personal data under the retention policy (G1), never card numbers.
        """
        return {
            "action": self.action.value,
            "by_default": self.by_default,
            "rules": [m.to_dict() for m in self.rules],
            "matches": [m.to_dict() for m in self.matches],
            "shadow_matches": [m.to_dict() for m in self.shadow_matches],
            "shadow_action": self.shadow_action.value,
            "inputs": {k: to_json_value(v) for k, v in sorted(self.inputs.items())},
            "ruleset_version": self.ruleset_version,
            "three_ds_completed": self.three_ds_completed,
        }
