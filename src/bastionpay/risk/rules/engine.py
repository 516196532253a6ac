"""Rules and rule sets: compile once, evaluate on every payment.

A `RuleSet` is one merchant's rules at one version, immutable. Every change (add, edit, remove,
switch mode, enable/disable) returns a new `RuleSet` with the version incremented, and an edited
rule gets its own version incremented, so the version that decided a payment can always be read back
for audit (see `history.RuleSetHistory` for the in-memory store of versions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from bastionpay.kernel.ids import new_id
from bastionpay.risk.rules.attributes import DEFAULT_REGISTRY, AttributeRegistry
from bastionpay.risk.rules.compiler import NO_LISTS, ListCatalog, compile_rule
from bastionpay.risk.rules.decision import Action, Decision, Mode, RuleMatch, resolve
from bastionpay.risk.rules.errors import RuleSetError
from bastionpay.risk.rules.limits import DEFAULT_LIMITS, Limits
from bastionpay.risk.rules.predicate import CompiledPredicate, FeatureView, ListLookup

RULE_ID_PREFIX = "rule"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    action: Action
    source: str
    predicate: CompiledPredicate
    version: int = 1
    enabled: bool = True
    mode: Mode = Mode.LIVE
    description: str = ""

    def match(self) -> RuleMatch:
        return RuleMatch(
            self.id, self.action, self.mode, self.version, self.source, self.predicate.describe()
        )


def make_rule(
    source: str,
    *,
    rule_id: str | None = None,
    mode: Mode = Mode.LIVE,
    enabled: bool = True,
    version: int = 1,
    description: str = "",
    registry: AttributeRegistry = DEFAULT_REGISTRY,
    lists: ListCatalog = NO_LISTS,
    limits: Limits = DEFAULT_LIMITS,
) -> Rule:
    """Compile `source` into a Rule. Raises RuleSyntaxError for anything wrong with the text."""
    compiled = compile_rule(source, registry=registry, lists=lists, limits=limits)
    return Rule(
        id=rule_id or new_id(RULE_ID_PREFIX),
        action=Action(compiled.action),
        source=source,
        predicate=compiled.predicate,
        version=version,
        enabled=enabled,
        mode=mode,
        description=description,
    )


def evaluate_rules(
    rules: Iterable[Rule],
    features: FeatureView | Mapping[str, object],
    lists: ListLookup,
    *,
    three_ds_completed: bool = False,
    ruleset_version: int | None = None,
) -> Decision:
    """Evaluate every enabled rule and decide by action order (see `decision`).

    All enabled rules are evaluated — not only until the first match — so the decision reports
    every rule that matched (overridden ones and shadow ones too), which is what review and
    back-testing need. Disabled rules are not evaluated at all.
    """
    # A FeatureView passed in is shared (a back-test evaluates two rule sets on one payment);
    # its `values_read` then covers both.
    view = features if isinstance(features, FeatureView) else FeatureView(features)
    live: list[RuleMatch] = []
    shadow: list[RuleMatch] = []
    for rule in rules:
        if not rule.enabled or not rule.predicate.matches(view, lists):
            continue
        (live if rule.mode is Mode.LIVE else shadow).append(rule.match())
    action, acting = resolve(live, three_ds_completed=three_ds_completed)
    shadow_action, _ = resolve([*live, *shadow], three_ds_completed=three_ds_completed)
    return Decision(
        action=action,
        rules=acting,
        matches=tuple(live),
        shadow_matches=tuple(shadow),
        shadow_action=shadow_action,
        inputs=view.values_read(),
        ruleset_version=ruleset_version,
        three_ds_completed=three_ds_completed,
    )


@dataclass(frozen=True, slots=True)
class RuleSet:
    merchant_id: str
    version: int = 1
    rules: tuple[Rule, ...] = ()
    created_at: int | None = None  # Unix seconds of this version
    changed_by: str | None = None  # who made the change that produced this version
    change: str = "created"  # what changed, in words, for the audit trail
    max_rules: int = DEFAULT_LIMITS.max_rules_per_set

    def __post_init__(self) -> None:
        ids = [rule.id for rule in self.rules]
        if len(set(ids)) != len(ids):
            raise RuleSetError("rule ids in a rule set must be unique")
        if len(ids) > self.max_rules:
            raise RuleSetError(f"a rule set holds at most {self.max_rules} rules")

    def get(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)

    def referenced_lists(self) -> frozenset[str]:
        """Lists used by any rule: a list store must refuse to delete these."""
        return frozenset().union(*(rule.predicate.lists for rule in self.rules))

    def evaluate(
        self,
        features: FeatureView | Mapping[str, object],
        lists: ListLookup,
        *,
        three_ds_completed: bool = False,
    ) -> Decision:
        return evaluate_rules(
            self.rules,
            features,
            lists,
            three_ds_completed=three_ds_completed,
            ruleset_version=self.version,
        )

    # -- changes: each returns the next version --------------------------------------------
    def _next(
        self, rules: tuple[Rule, ...], change: str, at: int | None, by: str | None
    ) -> RuleSet:
        return replace(
            self, version=self.version + 1, rules=rules, created_at=at, changed_by=by, change=change
        )

    def with_rule(self, rule: Rule, *, at: int | None = None, by: str | None = None) -> RuleSet:
        if self.get(rule.id) is not None:
            raise RuleSetError(f"rule {rule.id} already exists", code="rule_exists")
        return self._next((*self.rules, rule), f"added {rule.id}", at, by)

    def without_rule(
        self, rule_id: str, *, at: int | None = None, by: str | None = None
    ) -> RuleSet:
        self._require(rule_id)
        rules = tuple(rule for rule in self.rules if rule.id != rule_id)
        return self._next(rules, f"removed {rule_id}", at, by)

    def with_updated_rule(
        self,
        rule_id: str,
        *,
        source: str | None = None,
        mode: Mode | None = None,
        enabled: bool | None = None,
        description: str | None = None,
        registry: AttributeRegistry = DEFAULT_REGISTRY,
        lists: ListCatalog = NO_LISTS,
        limits: Limits = DEFAULT_LIMITS,
        at: int | None = None,
        by: str | None = None,
    ) -> RuleSet:
        """Edit one rule: its text (recompiled and checked), mode, enabled flag or description.

        The rule keeps its id and gets version + 1; an edit that changes nothing is refused so the
        history holds only real changes.
        """
        old = self._require(rule_id)
        new = old
        if source is not None and source != old.source:
            new = make_rule(
                source,
                rule_id=old.id,
                mode=old.mode,
                enabled=old.enabled,
                version=old.version,
                description=old.description,
                registry=registry,
                lists=lists,
                limits=limits,
            )
        if mode is not None:
            new = replace(new, mode=mode)
        if enabled is not None:
            new = replace(new, enabled=enabled)
        if description is not None:
            new = replace(new, description=description)
        if new == old:
            raise RuleSetError(f"no change to rule {rule_id}", code="rule_unchanged")
        new = replace(new, version=old.version + 1)
        rules = tuple(new if rule.id == rule_id else rule for rule in self.rules)
        return self._next(rules, f"updated {rule_id} to version {new.version}", at, by)

    def _require(self, rule_id: str) -> Rule:
        rule = self.get(rule_id)
        if rule is None:
            raise RuleSetError(f"no such rule: {rule_id}", code="rule_missing")
        return rule
