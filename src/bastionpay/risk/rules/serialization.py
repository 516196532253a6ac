"""Rules and rule sets to and from JSON for storage.

Only the rule text and its settings are stored, never the compiled form: loading recompiles every
rule against the current registry and lists, so stored data is re-validated as strictly as a new
rule (a tampered or stale row cannot smuggle in something the compiler would refuse). Stored
documents carry a format number so the shape can evolve.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from bastionpay.risk.rules.attributes import DEFAULT_REGISTRY, AttributeRegistry
from bastionpay.risk.rules.compiler import NO_LISTS, ListCatalog
from bastionpay.risk.rules.decision import Mode
from bastionpay.risk.rules.engine import Rule, RuleSet, make_rule
from bastionpay.risk.rules.errors import RuleSetError
from bastionpay.risk.rules.limits import DEFAULT_LIMITS, Limits

FORMAT: Final = 1
MAX_DOCUMENT_BYTES: Final = 4 * 1024 * 1024  # 500 rules of 2,000 characters fit with room

_RULE_KEYS: Final = frozenset({"id", "source", "version", "enabled", "mode", "description"})
_SET_KEYS: Final = frozenset(
    {"format", "merchant_id", "version", "created_at", "changed_by", "change", "rules"}
)


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "source": rule.source,
        "version": rule.version,
        "enabled": rule.enabled,
        "mode": rule.mode.value,
        "description": rule.description,
    }


def _field(
    data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, optional: bool = False
) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    # bool is an int subclass; a version of `true` is malformed, not 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RuleSetError(
            f"stored rule data: {key!r} is missing or malformed", code="rule_data_invalid"
        )
    return value


def rule_from_dict(
    data: Mapping[str, Any],
    *,
    registry: AttributeRegistry = DEFAULT_REGISTRY,
    lists: ListCatalog = NO_LISTS,
    limits: Limits = DEFAULT_LIMITS,
) -> Rule:
    """Rebuild a rule; RuleSetError for malformed data, RuleSyntaxError if its text no longer
    compiles (an attribute or list it used is gone)."""
    if not isinstance(data, Mapping) or set(data) - _RULE_KEYS:
        raise RuleSetError("stored rule data has unknown fields", code="rule_data_invalid")
    mode = _field(data, "mode", str)
    if mode not in {m.value for m in Mode}:
        raise RuleSetError(
            f"stored rule data: unknown mode {mode[:20]!r}", code="rule_data_invalid"
        )
    version = _field(data, "version", int)
    if version < 1:
        raise RuleSetError("stored rule data: version must be ≥ 1", code="rule_data_invalid")
    return make_rule(
        _field(data, "source", str),
        rule_id=_field(data, "id", str),
        mode=Mode(mode),
        enabled=_field(data, "enabled", bool),
        version=version,
        description=_field(data, "description", str, optional=True) or "",
        registry=registry,
        lists=lists,
        limits=limits,
    )


def ruleset_to_dict(ruleset: RuleSet) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "merchant_id": ruleset.merchant_id,
        "version": ruleset.version,
        "created_at": ruleset.created_at,
        "changed_by": ruleset.changed_by,
        "change": ruleset.change,
        "rules": [rule_to_dict(rule) for rule in ruleset.rules],
    }


def ruleset_from_dict(
    data: Mapping[str, Any],
    *,
    registry: AttributeRegistry = DEFAULT_REGISTRY,
    lists: ListCatalog = NO_LISTS,
    limits: Limits = DEFAULT_LIMITS,
) -> RuleSet:
    if not isinstance(data, Mapping) or set(data) - _SET_KEYS:
        raise RuleSetError("stored rule set has unknown fields", code="rule_data_invalid")
    if data.get("format") != FORMAT:
        raise RuleSetError("stored rule set has an unsupported format", code="rule_data_invalid")
    raw_rules = _field(data, "rules", list)
    if len(raw_rules) > limits.max_rules_per_set:
        raise RuleSetError("stored rule set has too many rules", code="rule_data_invalid")
    rules = tuple(
        rule_from_dict(item, registry=registry, lists=lists, limits=limits) for item in raw_rules
    )
    return RuleSet(
        merchant_id=_field(data, "merchant_id", str),
        version=_field(data, "version", int),
        rules=rules,
        created_at=_field(data, "created_at", int, optional=True),
        changed_by=_field(data, "changed_by", str, optional=True),
        change=_field(data, "change", str, optional=True) or "",
        max_rules=limits.max_rules_per_set,
    )


def ruleset_to_json(ruleset: RuleSet) -> str:
    return json.dumps(ruleset_to_dict(ruleset), ensure_ascii=False, sort_keys=True)


def ruleset_from_json(
    text: str,
    *,
    registry: AttributeRegistry = DEFAULT_REGISTRY,
    lists: ListCatalog = NO_LISTS,
    limits: Limits = DEFAULT_LIMITS,
) -> RuleSet:
    if len(text) > MAX_DOCUMENT_BYTES:
        raise RuleSetError("stored rule set is too large", code="rule_data_invalid")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise RuleSetError("stored rule set is not valid JSON", code="rule_data_invalid") from None
    return ruleset_from_dict(data, registry=registry, lists=lists, limits=limits)
