"""Routes: Radar-like rules, value lists and back-tests (issue 7, item 4). BastionPay extensions.

Stripe manages rules only in its Dashboard; here they are API objects under `/v1/radar/rules`.
Every change creates a new rule-set version (the old ones stay in `risk_rulesets`) and is audited.
Value lists follow Stripe's `radar.value_list` vocabulary (alias, item_type) with a simpler shape.
The logic is `risk.radar`'s, shared with the `bastionpay radar` commands; these views only decode
parameters and name the permission and audit action of each route.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bastionpay.api.params import FormBool, FormStr, Params
from bastionpay.api.routing import Call, Endpoint, Result
from bastionpay.merchants import permissions as perm
from bastionpay.risk import radar
from bastionpay.risk.radar import AUDIT_ACTIONS

BACKTEST_MAX_PAYMENTS = radar.BACKTEST_MAX_PAYMENTS


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


def _scope(call: Call) -> radar.Scope:
    caller = call.caller
    return radar.Scope(
        call.session, caller.merchant_id, caller.livemode, call.ctx.now, caller.key_id
    )


def list_rules(call: Call) -> Result:
    return Result(radar.list_rules(_scope(call)))


def create_rule(call: Call) -> Result:
    p: CreateRule = call.params
    return Result(radar.create_rule(_scope(call), p.rule, mode=p.mode, description=p.description))


def update_rule(call: Call) -> Result:
    p: UpdateRule = call.params
    return Result(
        radar.update_rule(
            _scope(call),
            call.path["id"],
            source=p.rule,
            mode=p.mode,
            enabled=p.enabled,
            description=p.description,
        )
    )


def delete_rule(call: Call) -> Result:
    return Result(radar.delete_rule(_scope(call), call.path["id"]))


def backtest_rule(call: Call) -> Result:
    p: Backtest = call.params
    return Result(radar.backtest_rule(_scope(call), p.rule))


def list_value_lists(call: Call) -> Result:
    return Result(radar.list_value_lists(_scope(call)))


def create_value_list(call: Call) -> Result:
    p: CreateList = call.params
    return Result(radar.create_value_list(_scope(call), p.alias, p.item_type, p.name))


def delete_value_list(call: Call) -> Result:
    return Result(radar.delete_value_list(_scope(call), call.path["id"]))


def add_item(call: Call) -> Result:
    p: ListItem = call.params
    return Result(radar.add_item(_scope(call), call.path["id"], p.value))


def remove_item(call: Call) -> Result:
    p: ListItem = call.params
    return Result(radar.remove_item(_scope(call), call.path["id"], p.value))


ENDPOINTS = [
    Endpoint("GET", "/v1/radar/rules", perm.RISK_READ, NoParams, list_rules),
    Endpoint(
        "POST", "/v1/radar/rules", perm.RISK_WRITE, CreateRule, create_rule,
        audit_action=AUDIT_ACTIONS["create_rule"],
    ),
    Endpoint(
        "POST", "/v1/radar/rules/backtest", perm.RISK_READ, Backtest, backtest_rule,
    ),
    Endpoint(
        "POST", "/v1/radar/rules/{id}", perm.RISK_WRITE, UpdateRule, update_rule,
        audit_action=AUDIT_ACTIONS["update_rule"],
    ),
    Endpoint(
        "DELETE", "/v1/radar/rules/{id}", perm.RISK_WRITE, NoParams, delete_rule,
        audit_action=AUDIT_ACTIONS["delete_rule"],
    ),
    Endpoint("GET", "/v1/radar/value_lists", perm.RISK_READ, NoParams, list_value_lists),
    Endpoint(
        "POST", "/v1/radar/value_lists", perm.RISK_WRITE, CreateList, create_value_list,
        audit_action=AUDIT_ACTIONS["create_value_list"],
    ),
    Endpoint(
        "DELETE", "/v1/radar/value_lists/{id}", perm.RISK_WRITE, NoParams, delete_value_list,
        audit_action=AUDIT_ACTIONS["delete_value_list"],
    ),
    Endpoint(
        "POST", "/v1/radar/value_lists/{id}/items", perm.RISK_WRITE, ListItem, add_item,
        audit_action=AUDIT_ACTIONS["add_item"],
    ),
    Endpoint(
        "POST", "/v1/radar/value_lists/{id}/remove_item", perm.RISK_WRITE, ListItem, remove_item,
        audit_action=AUDIT_ACTIONS["remove_item"],
    ),
]  # fmt: skip
