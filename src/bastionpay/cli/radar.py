"""`bastionpay radar rules|lists`: a merchant's rules and value lists from the command line.

Issue 7, item 4 asks for an API and a CLI to manage rules, every change audited. Both call
`bastionpay.risk.radar`, so a rule is parsed, versioned and stored exactly as through
`/v1/radar/...`, and the same JSON objects are printed. Each change and its audit event (the same
action and target the API records; the actor is the CLI operator) commit in one unit of work:
no audit record, no change (SECURITY-REQUIREMENTS L1, P3). Errors print one clear message and
exit with status 1; a rule that does not parse shows the parser's message and where it stopped.

    bastionpay radar rules list --merchant acct_…
    bastionpay radar rules create 'block if :amount_in_usd: > 500' --merchant acct_… [--shadow]
    bastionpay radar rules update|disable|enable|delete RULE_ID --merchant acct_…
    bastionpay radar rules backtest 'review if :risk_score: > 60' --merchant acct_…
    bastionpay radar lists list|create|delete …;  bastionpay radar lists items list|add|remove …
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import select

from bastionpay import bootstrap
from bastionpay.audit import events as audit
from bastionpay.cli.common import data_dir_option, emit_json, settings_for
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.errors import BastionPayError
from bastionpay.merchants.models import Merchant
from bastionpay.risk import radar
from bastionpay.risk.rules import RuleSyntaxError
from bastionpay.risk.rules.errors import excerpt

F = TypeVar("F", bound=Callable[..., Any])

ACTOR_ID = "cli"  # as `bastionpay reviews` records its decisions
CARET_MAX_SOURCE = 200  # longer rules get the message and position, not a caret line
ITEMS_LIMIT_MAX = 100_000  # risk.rule_store.MAX_ITEMS_PER_LIST


def _scope_options(func: F) -> F:
    func = data_dir_option(func)
    func = click.option("--live", is_flag=True, help="Live mode (default: test mode).")(func)
    return click.option("--merchant", "merchant_id", required=True, help="acct_… id.")(func)


def _operator() -> str:
    """The operating-system account running the command: the person behind actor `cli`."""
    try:
        return getpass.getuser()[:64]
    except (OSError, KeyError):  # no login name in some containers; the event still records
        return "unknown"


def _rule_error(exc: RuleSyntaxError, source: str) -> str:
    lines = [exc.message]
    single = source.count("\n") == 0 and len(source) <= CARET_MAX_SOURCE
    if single and all(" " <= ch <= "~" for ch in source):
        # The source is echoed only when it is plain printable ASCII, so an error message can
        # neither forge terminal output nor hide text with control characters (ASVS 16.4.1).
        lines += [f"  {source}", "  " + " " * exc.position + "^"]
    else:
        lines.append(f"  near {excerpt(source[exc.position :])}")
    return "\n".join(lines)


@contextmanager
def _scope(
    merchant_id: str, live: bool, data_dir: Path | None, *, write: bool, source: str = ""
) -> Iterator[radar.Scope]:
    """One unit of work for one merchant and mode; library errors become a clean exit 1."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    try:
        with unit_of_work(runtime.db, write=write) as session:
            if session.scalar(select(Merchant.id).where(Merchant.id == merchant_id)) is None:
                raise click.ClickException(f"No such merchant: {merchant_id}")
            yield radar.Scope(session, merchant_id, live, runtime.clock.now(), ACTOR_ID)
    except RuleSyntaxError as exc:
        raise click.ClickException(_rule_error(exc, source)) from None
    except BastionPayError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        runtime.db.dispose()


def _audited(scope: radar.Scope, operation: str, body: dict[str, Any], **details: Any) -> None:
    """Record a change as the API does (same action, target and outcome), by the CLI's operator."""
    audit.record(
        scope.session,
        audit.AuditEvent(
            actor_type="system",
            actor_id=ACTOR_ID,
            action=radar.AUDIT_ACTIONS[operation],
            outcome="success",
            merchant_id=scope.merchant_id,
            livemode=scope.livemode,
            target_type=body.get("object"),
            target_id=body.get("id"),
            details={"operator": _operator(), **details},
        ),
    )


@click.group("radar")
def radar_group() -> None:
    """Radar-like rules and value lists (block and allow lists) per merchant."""


@radar_group.group("rules")
def rules_group() -> None:
    """A merchant's rules: `block|review|request_3ds|allow if <condition>`."""


@rules_group.command("list")
@_scope_options
def rules_list(merchant_id: str, live: bool, data_dir: Path | None) -> None:
    """The current rule set (the defaults until the first change), as JSON."""
    with _scope(merchant_id, live, data_dir, write=False) as scope:
        emit_json(radar.list_rules(scope))


@rules_group.command("create")
@click.argument("rule")
@click.option("--shadow", is_flag=True, help="Evaluate and record matches; never act.")
@click.option("--description", default="", help="Free text shown with the rule.")
@_scope_options
def rules_create(
    rule: str,
    shadow: bool,
    description: str,
    merchant_id: str,
    live: bool,
    data_dir: Path | None,
) -> None:
    """Add RULE, e.g. 'block if :amount_in_usd: > 500' (a new rule-set version)."""
    with _scope(merchant_id, live, data_dir, write=True, source=rule) as scope:
        body = radar.create_rule(
            scope, rule, mode="shadow" if shadow else "live", description=description
        )
        _audited(scope, "create_rule", body, ruleset_version=body["ruleset_version"])
    emit_json(body)  # after the commit


@rules_group.command("update")
@click.argument("rule_id")
@click.option("--rule", "source", default=None, help="New rule text.")
@click.option(
    "--shadow/--act", default=None, help="Shadow mode (record only) or acting (live) mode."
)
@click.option("--description", default=None)
@_scope_options
def rules_update(
    rule_id: str,
    source: str | None,
    shadow: bool | None,
    description: str | None,
    merchant_id: str,
    live: bool,
    data_dir: Path | None,
) -> None:
    """Change RULE_ID's text, mode or description."""
    if source is None and shadow is None and description is None:
        raise click.UsageError("give --rule, --shadow/--act and/or --description")
    mode: radar.RuleMode | None = None if shadow is None else ("shadow" if shadow else "live")
    with _scope(merchant_id, live, data_dir, write=True, source=source or "") as scope:
        body = radar.update_rule(scope, rule_id, source=source, mode=mode, description=description)
        _audited(scope, "update_rule", body, ruleset_version=body["ruleset_version"])
    emit_json(body)  # after the commit


def _set_enabled(
    rule_id: str, enabled: bool, merchant_id: str, live: bool, data_dir: Path | None
) -> None:
    with _scope(merchant_id, live, data_dir, write=True) as scope:
        body = radar.update_rule(scope, rule_id, enabled=enabled)
        _audited(scope, "update_rule", body, ruleset_version=body["ruleset_version"])
    emit_json(body)  # after the commit


@rules_group.command("disable")
@click.argument("rule_id")
@_scope_options
def rules_disable(rule_id: str, merchant_id: str, live: bool, data_dir: Path | None) -> None:
    """Stop evaluating RULE_ID (kept, can be enabled again)."""
    _set_enabled(rule_id, False, merchant_id, live, data_dir)


@rules_group.command("enable")
@click.argument("rule_id")
@_scope_options
def rules_enable(rule_id: str, merchant_id: str, live: bool, data_dir: Path | None) -> None:
    """Evaluate RULE_ID again."""
    _set_enabled(rule_id, True, merchant_id, live, data_dir)


@rules_group.command("delete")
@click.argument("rule_id")
@_scope_options
def rules_delete(rule_id: str, merchant_id: str, live: bool, data_dir: Path | None) -> None:
    """Remove RULE_ID from the rule set (older versions keep it for the audit trail)."""
    with _scope(merchant_id, live, data_dir, write=True) as scope:
        body = radar.delete_rule(scope, rule_id)
        _audited(scope, "delete_rule", body, ruleset_version=body["ruleset_version"])
    emit_json(body)  # after the commit


@rules_group.command("backtest")
@click.argument("rule")
@_scope_options
def rules_backtest(rule: str, merchant_id: str, live: bool, data_dir: Path | None) -> None:
    """Replay RULE over recent payments: what it would have matched and blocked. Changes nothing."""
    with _scope(merchant_id, live, data_dir, write=False, source=rule) as scope:
        emit_json(radar.backtest_rule(scope, rule))


@radar_group.group("lists")
def lists_group() -> None:
    """Value lists rules refer to as @alias (emails, card fingerprints, IPs, customers, …)."""


@lists_group.command("list")
@_scope_options
def lists_list(merchant_id: str, live: bool, data_dir: Path | None) -> None:
    """The merchant's lists (with their first items), as JSON."""
    with _scope(merchant_id, live, data_dir, write=True) as scope:
        # write: the built-in block and allow lists are created on first use, as the API does.
        emit_json(radar.list_value_lists(scope))


@lists_group.command("create")
@click.argument("alias")
@click.option("--item-type", required=True, help="email, card_fingerprint, card_bin, ip_address…")
@click.option("--name", default="", help="A description.")
@_scope_options
def lists_create(
    alias: str, item_type: str, name: str, merchant_id: str, live: bool, data_dir: Path | None
) -> None:
    """Create the list @ALIAS."""
    with _scope(merchant_id, live, data_dir, write=True) as scope:
        body = radar.create_value_list(scope, alias, item_type, name)
        _audited(scope, "create_value_list", body, item_type=item_type)
    emit_json(body)  # after the commit


@lists_group.command("delete")
@click.argument("alias")
@_scope_options
def lists_delete(alias: str, merchant_id: str, live: bool, data_dir: Path | None) -> None:
    """Delete @ALIAS and its items (refused while a rule uses it)."""
    with _scope(merchant_id, live, data_dir, write=True) as scope:
        body = radar.delete_value_list(scope, alias)
        _audited(scope, "delete_value_list", body)
    emit_json(body)  # after the commit


@lists_group.group("items")
def items_group() -> None:
    """The values in a list."""


@items_group.command("list")
@click.argument("alias")
@click.option("--limit", type=click.IntRange(1, ITEMS_LIMIT_MAX), default=1000, show_default=True)
@_scope_options
def items_list(alias: str, limit: int, merchant_id: str, live: bool, data_dir: Path | None) -> None:
    """The values in @ALIAS, oldest first."""
    with _scope(merchant_id, live, data_dir, write=True) as scope:
        emit_json(radar.list_items(scope, alias, limit=limit))


@items_group.command("add")
@click.argument("alias")
@click.argument("values", nargs=-1, required=True)
@_scope_options
def items_add(
    alias: str, values: tuple[str, ...], merchant_id: str, live: bool, data_dir: Path | None
) -> None:
    """Add VALUES to @ALIAS (normalised as the list's item type says); all or none."""
    with _scope(merchant_id, live, data_dir, write=True) as scope:
        added = []
        for value in values:
            body = radar.add_item(scope, alias, value)
            # One event per value, as one API request per value would record.
            _audited(scope, "add_item", body, value_list=alias, change="add")
            added.append(body)
    emit_json(added)  # after the commit


@items_group.command("remove")
@click.argument("alias")
@click.argument("values", nargs=-1, required=True)
@_scope_options
def items_remove(
    alias: str, values: tuple[str, ...], merchant_id: str, live: bool, data_dir: Path | None
) -> None:
    """Remove VALUES from @ALIAS."""
    with _scope(merchant_id, live, data_dir, write=True) as scope:
        removed = []
        for value in values:
            body = radar.remove_item(scope, alias, value)
            _audited(scope, "remove_item", body, value_list=alias, change="remove")
            removed.append(body)
    emit_json(removed)  # after the commit
