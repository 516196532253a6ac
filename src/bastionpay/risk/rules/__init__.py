"""Radar-style risk rules (issue 7, item 4): a small language merchants write, parsed safely.

    block if :risk_score: > 75
    review if :amount_in_usd: > 1000 and :card_country: != :ip_country:
    allow if :customer: in @trusted_customers

No Python `eval`, no regex built from merchant text: a hand-written tokenizer and recursive-descent
parser, a type checker against the attribute registry, and a tree evaluator with three-valued logic
for missing values. See docs/risk-rules.md for the grammar and the semantics.
"""

from bastionpay.risk.rules.attributes import (
    DEFAULT_REGISTRY,
    AttributeRegistry,
    AttributeSpec,
    registry_from_features,
)
from bastionpay.risk.rules.backtest import (
    BacktestReport,
    Comparison,
    OutcomeStats,
    PastPayment,
    backtest,
    summary,
)
from bastionpay.risk.rules.blocklists import BlockAllowLists
from bastionpay.risk.rules.compiler import NO_LISTS, CompiledRule, ListCatalog, compile_rule
from bastionpay.risk.rules.decision import ACTION_ORDER, Action, Decision, Mode, RuleMatch
from bastionpay.risk.rules.defaults import (
    DEFAULT_LISTS,
    DEFAULT_RULES,
    RuleTemplate,
    default_rule_set,
    default_rules,
    install_default_lists,
)
from bastionpay.risk.rules.engine import Rule, RuleSet, evaluate_rules, make_rule
from bastionpay.risk.rules.errors import (
    FeatureValueError,
    ListError,
    RuleEvaluationError,
    RuleSetError,
    RuleSyntaxError,
    UnknownListError,
)
from bastionpay.risk.rules.explain import explain
from bastionpay.risk.rules.history import RuleSetHistory
from bastionpay.risk.rules.limits import DEFAULT_LIMITS, Limits
from bastionpay.risk.rules.lists import InMemoryListStore, ListStore, NamedList
from bastionpay.risk.rules.predicate import CompiledPredicate, FeatureView, ListLookup
from bastionpay.risk.rules.serialization import (
    rule_from_dict,
    rule_to_dict,
    ruleset_from_dict,
    ruleset_from_json,
    ruleset_to_dict,
    ruleset_to_json,
)
from bastionpay.risk.rules.values import ValueKind

__all__ = [
    "ACTION_ORDER",
    "DEFAULT_LIMITS",
    "DEFAULT_LISTS",
    "DEFAULT_REGISTRY",
    "DEFAULT_RULES",
    "NO_LISTS",
    "Action",
    "AttributeRegistry",
    "AttributeSpec",
    "BacktestReport",
    "BlockAllowLists",
    "Comparison",
    "CompiledPredicate",
    "CompiledRule",
    "Decision",
    "FeatureValueError",
    "FeatureView",
    "InMemoryListStore",
    "Limits",
    "ListCatalog",
    "ListError",
    "ListLookup",
    "ListStore",
    "Mode",
    "NamedList",
    "OutcomeStats",
    "PastPayment",
    "Rule",
    "RuleEvaluationError",
    "RuleMatch",
    "RuleSet",
    "RuleSetError",
    "RuleSetHistory",
    "RuleSyntaxError",
    "RuleTemplate",
    "UnknownListError",
    "ValueKind",
    "backtest",
    "compile_rule",
    "default_rule_set",
    "default_rules",
    "evaluate_rules",
    "explain",
    "install_default_lists",
    "make_rule",
    "registry_from_features",
    "rule_from_dict",
    "rule_to_dict",
    "ruleset_from_dict",
    "ruleset_from_json",
    "ruleset_to_dict",
    "ruleset_to_json",
    "summary",
]
