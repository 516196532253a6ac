"""Managing Radar-like rules and value lists (issue 7, item 4): one service for the API and the CLI.

`risk.views` (`/v1/radar/...`) and `cli.radar` (`bastionpay radar ...`) both call these functions,
so a rule is parsed, versioned and stored the same way whoever changes it, and both print the same
objects. Nothing here commits or audits: the caller's unit of work does both, so a change and its
audit record commit together or not at all (SECURITY-REQUIREMENTS L1, P3). The action each change
is audited under is `AUDIT_ACTIONS[function name]`.

The objects follow Stripe's Radar vocabulary (`radar.rule`, `radar.value_list`,
`radar.value_list_item`) with BastionPay's simpler shapes; Stripe manages rules only in its
Dashboard.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.audit.events import Action
from bastionpay.kernel.errors import InvalidRequestError
from bastionpay.risk import rule_store
from bastionpay.risk.labels import latest_labels
from bastionpay.risk.models import RiskAssessment
from bastionpay.risk.rules import (
    Mode,
    NamedList,
    Rule,
    RuleSet,
    ValueKind,
    backtest,
    make_rule,
    rule_to_dict,
    summary,
)
from bastionpay.risk.rules.values import LIST_KINDS

BACKTEST_MAX_PAYMENTS: Final = 10_000
# A back-test runs inside one API request: past this, it answers with what it has replayed.
BACKTEST_SECONDS: Final = 10.0
LIST_ITEMS_SHOWN: Final = 100  # a rendered list carries its first items, not the whole list
RuleMode = Literal["live", "shadow"]

AUDIT_ACTIONS: Final[dict[str, Action]] = {
    "create_rule": "risk.rule.create",
    "update_rule": "risk.rule.update",
    "delete_rule": "risk.rule.delete",
    "create_value_list": "risk.list.update",
    "delete_value_list": "risk.list.update",
    "add_item": "risk.list.update",
    "remove_item": "risk.list.update",
}


@dataclass(frozen=True)
class Scope:
    """One merchant's rules in one mode, changed by `actor` (an API key id, or `cli`)."""

    session: Session
    merchant_id: str
    livemode: bool
    now: int
    actor: str | None

    def lists(self) -> rule_store.SqlListStore:
        return rule_store.SqlListStore(self.session, self.merchant_id, self.livemode, self.now)


def render_rule(rule: Rule, ruleset: RuleSet) -> dict[str, Any]:
    return {"object": "radar.rule", "ruleset_version": ruleset.version, **rule_to_dict(rule)}


def render_rules(ruleset: RuleSet) -> dict[str, Any]:
    return {
        "object": "list",
        "url": "/v1/radar/rules",
        "has_more": False,
        "ruleset_version": ruleset.version,
        "data": [render_rule(r, ruleset) for r in ruleset.rules],
    }


def render_list(named: NamedList, lists: rule_store.SqlListStore) -> dict[str, Any]:
    return {
        "id": named.name,
        "object": "radar.value_list",
        "alias": named.name,
        "item_type": named.kind.value,
        "name": named.description,
        "list_items": list(islice(lists.items(named.name), LIST_ITEMS_SHOWN)),
    }


def _save(scope: Scope, ruleset: RuleSet) -> RuleSet:
    return rule_store.save(scope.session, ruleset, scope.livemode, scope.actor)


def list_rules(scope: Scope) -> dict[str, Any]:
    return render_rules(rule_store.current(scope.session, scope.lists()))


def create_rule(
    scope: Scope, source: str, *, mode: RuleMode = "live", description: str = ""
) -> dict[str, Any]:
    """Parse and add a rule; a rule that does not parse raises `RuleSyntaxError` (its position)."""
    lists = scope.lists()
    current = rule_store.current(scope.session, lists)
    rule = make_rule(source, mode=Mode(mode), description=description, lists=lists)
    updated = _save(scope, current.with_rule(rule, at=scope.now, by=scope.actor))
    return render_rule(rule, updated)


def update_rule(
    scope: Scope,
    rule_id: str,
    *,
    source: str | None = None,
    mode: RuleMode | None = None,
    enabled: bool | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    lists = scope.lists()
    current = rule_store.current(scope.session, lists)
    updated = current.with_updated_rule(
        rule_id,
        source=source,
        mode=Mode(mode) if mode else None,
        enabled=enabled,
        description=description,
        lists=lists,
        at=scope.now,
        by=scope.actor,
    )
    _save(scope, updated)
    rule = updated.get(rule_id)
    if rule is None:  # pragma: no cover - with_updated_rule refuses unknown ids
        raise InvalidRequestError(f"No such rule: {rule_id}", code="rule_missing")
    return render_rule(rule, updated)


def delete_rule(scope: Scope, rule_id: str) -> dict[str, Any]:
    current = rule_store.current(scope.session, scope.lists())
    updated = _save(scope, current.without_rule(rule_id, at=scope.now, by=scope.actor))
    return {
        "id": rule_id,
        "object": "radar.rule",
        "deleted": True,
        "ruleset_version": updated.version,
    }


def past_payments(scope: Scope) -> Iterator[dict[str, Any]]:
    """This merchant's recent assessed payments with the inputs recorded at the time."""
    rows = list(
        scope.session.scalars(
            select(RiskAssessment)
            .where(
                RiskAssessment.merchant_id == scope.merchant_id,
                RiskAssessment.livemode.is_(scope.livemode),
                RiskAssessment.score.is_not(None),
            )
            .order_by(RiskAssessment.pk.desc())
            .limit(BACKTEST_MAX_PAYMENTS)
        )
    )
    # Only the window's labels, never the whole history (security review M3).
    labels = latest_labels(
        scope.session,
        livemode=scope.livemode,
        merchant_id=scope.merchant_id,
        payment_intent_ids=sorted({row.payment_intent_id for row in rows}),
    )
    for row in rows:
        label = labels.get(row.payment_intent_id)
        yield {
            "id": row.payment_intent_id,
            "features": {**row.features, "risk_score": row.score, "risk_level": row.level},
            "amount": row.features.get("amount", 0),
            "currency": row.features.get("currency", "usd"),
            "fraud": None if label is None else label == "fraud",
        }


def backtest_rule(scope: Scope, source: str) -> dict[str, Any]:
    """Replay `source` over past payments against the current rule set; changes nothing."""
    lists = scope.lists()
    rule = make_rule(source, lists=lists)
    current = rule_store.current(scope.session, lists)
    report = backtest(
        rule, past_payments(scope), lists, baseline=current, time_budget=BACKTEST_SECONDS
    )
    return {"object": "radar.backtest", "rule": source, **summary(report)}


def list_value_lists(scope: Scope) -> dict[str, Any]:
    lists = scope.lists()
    rule_store.ensure_default_lists(lists)
    data = [render_list(named, lists) for named in lists.all_lists()]
    return {"object": "list", "url": "/v1/radar/value_lists", "has_more": False, "data": data}


def create_value_list(scope: Scope, alias: str, item_type: str, name: str = "") -> dict[str, Any]:
    lists = scope.lists()
    kinds = {k.value for k in LIST_KINDS}
    if item_type not in kinds:
        raise InvalidRequestError(
            f"item_type must be one of: {', '.join(sorted(kinds))}.", param="item_type"
        )
    named = lists.create_list(alias, ValueKind(item_type), name)
    return render_list(named, lists)


def delete_value_list(scope: Scope, alias: str) -> dict[str, Any]:
    """Delete a list and its items; refused while a rule names it (a live rule would then fail)."""
    lists = scope.lists()
    current = rule_store.current(scope.session, lists)
    if alias in current.referenced_lists():
        raise InvalidRequestError(
            f"@{alias} is used by a rule; change the rule first.", code="rule_list_in_use"
        )
    lists.delete_list(alias)
    return {"id": alias, "object": "radar.value_list", "deleted": True}


def add_item(scope: Scope, alias: str, value: str) -> dict[str, Any]:
    lists = scope.lists()
    rule_store.ensure_default_lists(lists)
    normalized = lists.add(alias, value)
    return {"object": "radar.value_list_item", "value_list": alias, "value": normalized}


def remove_item(scope: Scope, alias: str, value: str) -> dict[str, Any]:
    removed = scope.lists().remove(alias, value)
    return {"object": "radar.value_list_item", "value_list": alias, "deleted": removed}


def list_items(scope: Scope, alias: str, *, limit: int) -> dict[str, Any]:
    """A list's items in insertion order, at most `limit` of them (lists hold up to 100,000)."""
    lists = scope.lists()
    rule_store.ensure_default_lists(lists)
    items = list(islice(lists.items(alias), limit + 1))
    return {
        "object": "list",
        "value_list": alias,
        "has_more": len(items) > limit,
        "data": items[:limit],
    }
