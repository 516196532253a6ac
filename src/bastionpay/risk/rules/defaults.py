"""Built-in rules and lists, as data: every merchant starts from these.

Following Stripe Radar's built-in rules: payments at the *highest* risk level are blocked; placing
*elevated* risk in review is offered but off by default here (a review holds the merchant's money
until someone acts on it, so it is a choice a merchant with a reviewer makes). The thresholds behind
the levels (elevated ≥ 65, highest ≥ 75) belong to scoring and are adjustable there, which is why
these rules test `:risk_level:` rather than a fixed `:risk_score:`.

Block lists and allow lists are ordinary named lists with an ordinary rule each, so they follow the
same ordering (an allow-listed customer is never blocked by a rule) and show up in explanations
and back-tests like any other rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bastionpay.risk.rules.attributes import DEFAULT_REGISTRY, AttributeRegistry
from bastionpay.risk.rules.engine import Rule, RuleSet, make_rule
from bastionpay.risk.rules.lists import ListStore, NamedList
from bastionpay.risk.rules.values import ValueKind


@dataclass(frozen=True, slots=True)
class RuleTemplate:
    key: str
    source: str
    enabled: bool
    description: str

    @property
    def rule_id(self) -> str:
        # Stable ids so merchants, docs and audit records can name the built-ins.
        return f"rule_default_{self.key}"


# attribute → kind of the block list (and allow list, where one exists) named after it
BLOCKABLE: Final[dict[str, ValueKind]] = {
    "card_fingerprint": ValueKind.CARD_FINGERPRINT,
    "card_bin": ValueKind.CARD_BIN,
    "email": ValueKind.EMAIL,
    "email_domain": ValueKind.EMAIL_DOMAIN,
    "ip_address": ValueKind.IP_ADDRESS,
    "customer": ValueKind.CUSTOMER_ID,
    "card_country": ValueKind.COUNTRY,
    "ip_country": ValueKind.COUNTRY,
}
ALLOWABLE: Final = ("card_fingerprint", "email", "ip_address", "customer")


def blocklist_name(attribute: str) -> str:
    return f"{attribute}_blocklist"


def allowlist_name(attribute: str) -> str:
    return f"{attribute}_allowlist"


DEFAULT_LISTS: Final[tuple[NamedList, ...]] = (
    *(
        NamedList(blocklist_name(attr), kind, f"payments with these {attr} values are blocked")
        for attr, kind in BLOCKABLE.items()
    ),
    *(
        NamedList(
            allowlist_name(attr), BLOCKABLE[attr], f"payments with these {attr} values are allowed"
        )
        for attr in ALLOWABLE
    ),
)

DEFAULT_RULES: Final[tuple[RuleTemplate, ...]] = (
    RuleTemplate(
        "block_highest_risk",
        "block if :risk_level: = 'highest'",
        True,
        "Block payments the model places at the highest risk level (Radar's built-in rule).",
    ),
    RuleTemplate(
        "review_elevated_risk",
        "review if :risk_level: = 'elevated'",
        False,
        "Hold payments at elevated risk for a reviewer (opt in: needs someone reviewing).",
    ),
    *(
        RuleTemplate(
            f"block_listed_{attr}",
            f"block if :{attr}: in @{blocklist_name(attr)}",
            True,
            f"Block payments whose {attr.replace('_', ' ')} is on the block list.",
        )
        for attr in BLOCKABLE
    ),
    *(
        RuleTemplate(
            f"allow_listed_{attr}",
            f"allow if :{attr}: in @{allowlist_name(attr)}",
            True,
            f"Allow payments whose {attr.replace('_', ' ')} is on the allow list.",
        )
        for attr in ALLOWABLE
    ),
)


def install_default_lists(store: ListStore) -> None:
    """Create the built-in lists a store does not have yet (idempotent)."""
    for named in DEFAULT_LISTS:
        if store.get_list(named.name) is None:
            store.create_list(named.name, named.kind, named.description)


def default_rules(
    lists: ListStore, *, registry: AttributeRegistry = DEFAULT_REGISTRY
) -> tuple[Rule, ...]:
    install_default_lists(lists)
    return tuple(
        make_rule(
            template.source,
            rule_id=template.rule_id,
            enabled=template.enabled,
            description=template.description,
            registry=registry,
            lists=lists,
        )
        for template in DEFAULT_RULES
    )


def default_rule_set(
    merchant_id: str,
    lists: ListStore,
    *,
    registry: AttributeRegistry = DEFAULT_REGISTRY,
    at: int | None = None,
) -> RuleSet:
    """Version 1 of a new merchant's rule set: the built-ins, with their lists installed."""
    return RuleSet(
        merchant_id, 1, default_rules(lists, registry=registry), at, None, "created with defaults"
    )
