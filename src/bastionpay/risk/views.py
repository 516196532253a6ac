"""Routes: Radar-like rules, value lists and back-tests (issue 7, item 4). BastionPay extensions.

Stripe manages rules only in its Dashboard; here they are API objects under `/v1/radar/rules`.
Every change creates a new rule-set version (the old ones stay in `risk_rulesets`) and is audited.
Value lists follow Stripe's `radar.value_list` vocabulary (alias, item_type) with a simpler shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select

from bastionpay.api.params import FormBool, FormStr, Params
from bastionpay.api.routing import Call, Endpoint, Result
from bastionpay.kernel.errors import InvalidRequestError
from bastionpay.merchants import permissions as perm
from bastionpay.risk import rule_store
from bastionpay.risk.models import RiskAssessment, RiskLabel
from bastionpay.risk.rules import (
    Mode,
    Rule,
    RuleSet,
    ValueKind,
    backtest,
    make_rule,
    rule_to_dict,
    summary,
)
from bastionpay.risk.rules.values import LIST_KINDS

BACKTEST_MAX_PAYMENTS = 10_000


class NoParams(Params):
    pass


class CreateRule(Params):
    rule: FormStr = Field(max_length=2000)  # e.g. "block if :risk_score: > 80"
    mode: Literal["live", "shadow"] = "live"
    description: FormStr = Field(default="", max_length=500)


class UpdateRule(Params):
    rule: FormStr | None = Field(default=None, max_length=2000)
    mode: Literal["live", "shadow"] | None = None
    enabled: FormBool | None = None
    description: FormStr | None = Field(default=None, max_length=500)


class Backtest(Params):
    rule: FormStr = Field(max_length=2000)


class CreateList(Params):
    alias: FormStr = Field(max_length=64)
    item_type: FormStr = Field(max_length=32)
    name: FormStr = Field(default="", max_length=500)


class ListItem(Params):
    value: FormStr = Field(max_length=512)


def _lists(call: Call) -> rule_store.SqlListStore:
    return rule_store.SqlListStore(
        call.session, call.caller.merchant_id, call.caller.livemode, call.ctx.now
    )


def _render_rule(rule: Rule, ruleset: RuleSet) -> dict[str, Any]:
    return {"object": "radar.rule", "ruleset_version": ruleset.version, **rule_to_dict(rule)}


def _render_rules(ruleset: RuleSet) -> dict[str, Any]:
    return {
        "object": "list",
        "url": "/v1/radar/rules",
        "has_more": False,
        "ruleset_version": ruleset.version,
        "data": [_render_rule(r, ruleset) for r in ruleset.rules],
    }


def _commit(call: Call, ruleset: RuleSet) -> RuleSet:
    return rule_store.save(call.session, ruleset, call.caller.livemode, call.caller.key_id)


def list_rules(call: Call) -> Result:
    return Result(_render_rules(rule_store.current(call.session, _lists(call))))


def create_rule(call: Call) -> Result:
    p: CreateRule = call.params
    lists = _lists(call)
    current = rule_store.current(call.session, lists)
    rule = make_rule(p.rule, mode=Mode(p.mode), description=p.description, lists=lists)
    updated = _commit(call, current.with_rule(rule, at=call.ctx.now, by=call.caller.key_id))
    return Result(_render_rule(rule, updated))


def update_rule(call: Call) -> Result:
    p: UpdateRule = call.params
    lists = _lists(call)
    current = rule_store.current(call.session, lists)
    updated = current.with_updated_rule(
        call.path["id"],
        source=p.rule,
        mode=Mode(p.mode) if p.mode else None,
        enabled=p.enabled,
        description=p.description,
        lists=lists,
        at=call.ctx.now,
        by=call.caller.key_id,
    )
    _commit(call, updated)
    rule = updated.get(call.path["id"])
    if rule is None:  # pragma: no cover - with_updated_rule refuses unknown ids
        raise InvalidRequestError(f"No such rule: {call.path['id']}", code="rule_missing")
    return Result(_render_rule(rule, updated))


def delete_rule(call: Call) -> Result:
    current = rule_store.current(call.session, _lists(call))
    updated = _commit(
        call, current.without_rule(call.path["id"], at=call.ctx.now, by=call.caller.key_id)
    )
    return Result(
        {
            "id": call.path["id"],
            "object": "radar.rule",
            "deleted": True,
            "ruleset_version": updated.version,
        }
    )


def _past_payments(call: Call) -> Iterator[dict[str, Any]]:
    """This merchant's recent assessed payments with the inputs recorded at the time."""
    caller = call.caller
    labels = dict(
        call.session.execute(
            select(RiskLabel.payment_intent_id, RiskLabel.label).where(
                RiskLabel.merchant_id == caller.merchant_id,
                RiskLabel.livemode.is_(caller.livemode),
            )
        ).all()
    )
    rows = call.session.scalars(
        select(RiskAssessment)
        .where(
            RiskAssessment.merchant_id == caller.merchant_id,
            RiskAssessment.livemode.is_(caller.livemode),
            RiskAssessment.score.is_not(None),
        )
        .order_by(RiskAssessment.pk.desc())
        .limit(BACKTEST_MAX_PAYMENTS)
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


def backtest_rule(call: Call) -> Result:
    p: Backtest = call.params
    lists = _lists(call)
    rule = make_rule(p.rule, lists=lists)
    current = rule_store.current(call.session, lists)
    report = backtest(rule, _past_payments(call), lists, baseline=current)
    return Result({"object": "radar.backtest", "rule": p.rule, **summary(report)})


def _render_list(named: Any, lists: rule_store.SqlListStore) -> dict[str, Any]:
    return {
        "id": named.name,
        "object": "radar.value_list",
        "alias": named.name,
        "item_type": named.kind.value,
        "name": named.description,
        "list_items": list(islice(lists.items(named.name), 100)),  # not the whole list
    }


def list_value_lists(call: Call) -> Result:
    lists = _lists(call)
    rule_store.ensure_default_lists(lists)
    data = [_render_list(named, lists) for named in lists.all_lists()]
    return Result(
        {"object": "list", "url": "/v1/radar/value_lists", "has_more": False, "data": data}
    )


def create_value_list(call: Call) -> Result:
    p: CreateList = call.params
    lists = _lists(call)
    kinds = {k.value for k in LIST_KINDS}
    if p.item_type not in kinds:
        raise InvalidRequestError(
            f"item_type must be one of: {', '.join(sorted(kinds))}.", param="item_type"
        )
    named = lists.create_list(p.alias, ValueKind(p.item_type), p.name)
    return Result(_render_list(named, lists))


def delete_value_list(call: Call) -> Result:
    lists = _lists(call)
    current = rule_store.current(call.session, lists)
    if call.path["id"] in current.referenced_lists():
        raise InvalidRequestError(
            f"@{call.path['id']} is used by a rule; change the rule first.",
            code="rule_list_in_use",
        )
    lists.delete_list(call.path["id"])
    return Result({"id": call.path["id"], "object": "radar.value_list", "deleted": True})


def add_item(call: Call) -> Result:
    p: ListItem = call.params
    lists = _lists(call)
    rule_store.ensure_default_lists(lists)
    value = lists.add(call.path["id"], p.value)
    return Result(
        {"object": "radar.value_list_item", "value_list": call.path["id"], "value": value}
    )


def remove_item(call: Call) -> Result:
    p: ListItem = call.params
    lists = _lists(call)
    removed = lists.remove(call.path["id"], p.value)
    return Result(
        {"object": "radar.value_list_item", "value_list": call.path["id"], "deleted": removed}
    )


ENDPOINTS = [
    Endpoint("GET", "/v1/radar/rules", perm.RISK_READ, NoParams, list_rules),
    Endpoint(
        "POST", "/v1/radar/rules", perm.RISK_WRITE, CreateRule, create_rule,
        audit_action="risk.rule.create",
    ),
    Endpoint(
        "POST", "/v1/radar/rules/backtest", perm.RISK_READ, Backtest, backtest_rule,
    ),
    Endpoint(
        "POST", "/v1/radar/rules/{id}", perm.RISK_WRITE, UpdateRule, update_rule,
        audit_action="risk.rule.update",
    ),
    Endpoint(
        "DELETE", "/v1/radar/rules/{id}", perm.RISK_WRITE, NoParams, delete_rule,
        audit_action="risk.rule.delete",
    ),
    Endpoint("GET", "/v1/radar/value_lists", perm.RISK_READ, NoParams, list_value_lists),
    Endpoint(
        "POST", "/v1/radar/value_lists", perm.RISK_WRITE, CreateList, create_value_list,
        audit_action="risk.list.update",
    ),
    Endpoint(
        "DELETE", "/v1/radar/value_lists/{id}", perm.RISK_WRITE, NoParams, delete_value_list,
        audit_action="risk.list.update",
    ),
    Endpoint(
        "POST", "/v1/radar/value_lists/{id}/items", perm.RISK_WRITE, ListItem, add_item,
        audit_action="risk.list.update",
    ),
    Endpoint(
        "POST", "/v1/radar/value_lists/{id}/remove_item", perm.RISK_WRITE, ListItem, remove_item,
        audit_action="risk.list.update",
    ),
]  # fmt: skip
