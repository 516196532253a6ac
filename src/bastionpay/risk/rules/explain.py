"""Plain-words reasons for a decision, for the dashboard, the review queue and support."""

from __future__ import annotations

from typing import Final

from bastionpay.risk.rules.decision import Action, Decision, RuleMatch
from bastionpay.risk.rules.values import render_value

_VERBS: Final = {
    Action.REQUEST_3DS: "sent to 3-D Secure",
    Action.ALLOW: "allowed",
    Action.BLOCK: "blocked",
    Action.REVIEW: "placed in review",
}


def _rule(match: RuleMatch) -> str:
    return f"rule {match.rule_id} ({match.action.value} if {match.condition})"


def explain(decision: Decision) -> tuple[str, ...]:
    """One sentence per fact: what happened and why, what else matched, what shadow rules say."""
    lines: list[str] = []
    verb = _VERBS[decision.action]
    if decision.by_default:
        lines.append("Allowed: no live rule matched.")
    else:
        head = decision.rules[0]
        lines.append(f"{verb[0].upper()}{verb[1:]} by {_rule(head)}.")
        lines.extend(f"Also {verb} by {_rule(other)}." for other in decision.rules[1:])
    acting = {m.rule_id for m in decision.rules}
    for match in decision.matches:
        if match.rule_id in acting:
            continue
        if match.action is Action.REQUEST_3DS and decision.three_ds_completed:
            reason = "3-D Secure was already done"
        elif decision.action is Action.REQUEST_3DS:
            reason = "3-D Secure comes first; the rules run again once it is done"
        else:
            reason = f"{decision.action.value} takes precedence over {match.action.value}"
        lines.append(f"Also matched: {_rule(match)}, but {reason}.")
    for match in decision.shadow_matches:
        lines.append(f"Shadow {_rule(match)} matched; shadow rules do not act.")
    if decision.shadow_differs:
        lines.append(
            f"With the shadow rules live, the payment would have been "
            f"{_VERBS[decision.shadow_action]}."
        )
    if decision.inputs:
        values = ", ".join(
            f"{name.replace('_', ' ')} = {render_value(value)}"
            if value is not None
            else f"{name.replace('_', ' ')} missing"
            for name, value in sorted(decision.inputs.items())
        )
        lines.append(f"Values read: {values}.")
    return tuple(lines)
