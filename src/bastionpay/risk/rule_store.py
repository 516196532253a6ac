"""Rules and lists in the api database, and the rules step of a payment (issue 7, item 4).

Rule sets are versioned and append-only (`risk_rulesets`): every change is a new version, old ones
stay readable for the audit trail. A merchant without a stored set runs the built-in defaults
(`risk.rules.defaults`). Compiled sets are cached per (merchant, mode, version), so a payment pays
one indexed query for the current version number; lists are read at evaluation time, and only
non-empty lists cost a query.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from bastionpay.risk.models import RiskList, RiskListItem, RiskRuleSet
from bastionpay.risk.rules import (
    Decision,
    ListError,
    NamedList,
    RuleSet,
    ValueKind,
    default_rule_set,
    explain,
    install_default_lists,
    ruleset_from_dict,
    ruleset_to_dict,
)
from bastionpay.risk.rules.lists import normalize_entry, validate_list_name
from bastionpay.risk.rules.values import LIST_KINDS
from bastionpay.risk.service import RuleOutcome

MAX_ITEMS_PER_LIST = 100_000
MAX_LISTS = 1_000  # per merchant and mode, as InMemoryListStore (security review M3)
MAX_REMEMBERED_ANSWERS = 50_000


class SqlListStore:
    """`risk.rules.ListStore` over the database, for one merchant and mode in one session."""

    def __init__(self, session: Session, merchant_id: str, livemode: bool, now: int) -> None:
        self.session, self.merchant_id, self.livemode, self.now = (
            session,
            merchant_id,
            livemode,
            now,
        )
        self._lists: dict[str, tuple[NamedList, int]] | None = None
        # One evaluation asks the same (list, values) question once: 500 rules testing one list
        # cost one query, not 500 (security review M3). Any change to the lists clears it.
        self._answers: dict[tuple[str, tuple[str, ...]], bool] = {}

    def _scope(self, model: Any) -> list[Any]:
        return [model.merchant_id == self.merchant_id, model.livemode.is_(self.livemode)]

    def _load(self) -> dict[str, tuple[NamedList, int]]:
        if self._lists is None:
            counts: dict[str, int] = {
                name: int(count)
                for name, count in self.session.execute(
                    select(RiskListItem.list_name, func.count())
                    .where(*self._scope(RiskListItem))
                    .group_by(RiskListItem.list_name)
                )
            }
            self._lists = {
                row.name: (NamedList(row.name, ValueKind(row.kind), row.description), 0)
                for row in self.session.scalars(select(RiskList).where(*self._scope(RiskList)))
            }
            for name, (named, _) in list(self._lists.items()):
                self._lists[name] = (named, int(counts.get(name, 0)))
        return self._lists

    def list_kind(self, name: str) -> ValueKind | None:
        entry = self._load().get(name)
        return entry[0].kind if entry else None

    def contains(self, name: str, keys: tuple[str, ...]) -> bool | None:
        entry = self._load().get(name)
        if entry is None:
            return None
        if entry[1] == 0 or not keys:
            return False  # an empty list costs no query
        answer = self._answers.get((name, keys))
        if answer is None:
            found = self.session.scalar(
                select(RiskListItem.pk)
                .where(*self._scope(RiskListItem))
                .where(RiskListItem.list_name == name, RiskListItem.value.in_(keys))
                .limit(1)
            )
            if len(self._answers) >= MAX_REMEMBERED_ANSWERS:  # a back-test reuses one store
                self._answers.clear()
            answer = self._answers[(name, keys)] = found is not None
        return answer

    def get_list(self, name: str) -> NamedList | None:
        entry = self._load().get(name)
        return entry[0] if entry else None

    def all_lists(self) -> tuple[NamedList, ...]:
        return tuple(named for named, _ in self._load().values())

    def create_list(self, name: str, kind: ValueKind, description: str = "") -> NamedList:
        validate_list_name(name)
        if kind not in LIST_KINDS:
            raise ListError(f"lists hold text values, not {kind.value}s")
        if name in self._load():
            raise ListError(f"list @{name} already exists", code="rule_list_exists")
        if len(self._load()) >= MAX_LISTS:
            raise ListError(f"at most {MAX_LISTS} lists", code="rule_list_limit")
        self.session.add(
            RiskList(
                merchant_id=self.merchant_id,
                livemode=self.livemode,
                name=name,
                kind=kind.value,
                description=description[:500],
                created=self.now,
            )
        )
        named = NamedList(name, kind, description)
        self._load()[name] = (named, 0)
        return named

    def delete_list(self, name: str) -> None:
        if name not in self._load():
            raise ListError(f"no such list: @{name}", code="rule_list_missing")
        for model, column in ((RiskListItem, RiskListItem.list_name), (RiskList, RiskList.name)):
            self.session.execute(delete(model).where(*self._scope(model)).where(column == name))
        del self._load()[name]
        self._answers.clear()

    def _entry(self, name: str) -> tuple[NamedList, int]:
        entry = self._load().get(name)
        if entry is None:
            raise ListError(f"no such list: @{name}", code="rule_list_missing")
        return entry

    def add(self, name: str, value: str) -> str:
        named, count = self._entry(name)
        normalized = normalize_entry(named.kind, value)
        exists = self.session.scalar(
            select(RiskListItem.pk)
            .where(*self._scope(RiskListItem))
            .where(RiskListItem.list_name == name, RiskListItem.value == normalized)
        )
        if exists is None:
            if count >= MAX_ITEMS_PER_LIST:
                raise ListError(f"@{name} is full", code="rule_list_limit")
            self.session.add(
                RiskListItem(
                    merchant_id=self.merchant_id,
                    livemode=self.livemode,
                    list_name=name,
                    value=normalized,
                    created=self.now,
                )
            )
            self._load()[name] = (named, count + 1)
            self._answers.clear()
        return normalized

    def remove(self, name: str, value: str) -> bool:
        named, count = self._entry(name)
        normalized = normalize_entry(named.kind, value)
        result: CursorResult[Any] = self.session.execute(  # type: ignore[assignment]
            delete(RiskListItem)
            .where(*self._scope(RiskListItem))
            .where(RiskListItem.list_name == name, RiskListItem.value == normalized)
        )
        removed = result.rowcount
        if removed:
            self._load()[name] = (named, max(0, count - 1))
            self._answers.clear()
        return bool(removed)

    def items(self, name: str) -> Iterator[str]:
        self._entry(name)
        yield from self.session.scalars(
            select(RiskListItem.value)
            .where(*self._scope(RiskListItem))
            .where(RiskListItem.list_name == name)
            .order_by(RiskListItem.pk)
        )


def _latest(session: Session, merchant_id: str, livemode: bool) -> RiskRuleSet | None:
    row: RiskRuleSet | None = session.scalar(
        select(RiskRuleSet)
        .where(RiskRuleSet.merchant_id == merchant_id, RiskRuleSet.livemode.is_(livemode))
        .order_by(RiskRuleSet.version.desc())
        .limit(1)
    )
    return row


def ensure_default_lists(lists: SqlListStore) -> None:
    """The built-in block and allow lists exist for every merchant (created on first use)."""
    if not lists.all_lists():
        install_default_lists(lists)


def current(session: Session, lists: SqlListStore) -> RuleSet:
    """The merchant's current rule set: the latest stored version, or the defaults."""
    row = _latest(session, lists.merchant_id, lists.livemode)
    ensure_default_lists(lists)
    if row is None:
        return default_rule_set(lists.merchant_id, lists, at=lists.now)
    return ruleset_from_dict(row.body, lists=lists)


def save(session: Session, ruleset: RuleSet, livemode: bool, by: str | None) -> RuleSet:
    """Store a new version (append-only); the unique key refuses a concurrent same version."""
    session.add(
        RiskRuleSet(
            merchant_id=ruleset.merchant_id,
            livemode=livemode,
            version=ruleset.version,
            body=ruleset_to_dict(ruleset),
            created=ruleset.created_at or 0,
            changed_by=by,
        )
    )
    session.flush()
    return ruleset


def rule_outcome(decision: Decision) -> RuleOutcome:
    """The engine's decision in the payment path's terms (outcome.rule like Stripe's)."""
    acting = decision.rule
    rule = (
        {"id": acting.rule_id, "predicate": acting.source, "action": acting.action.value}
        if acting is not None
        else None
    )
    shadow = [m.to_dict() for m in decision.shadow_matches]
    # Reasons only when a rule acted; the inputs it read are recorded on the assessment already.
    reasons = (
        []
        if decision.by_default
        else [line for line in explain(decision) if not line.startswith("Values read")][:2]
    )
    return RuleOutcome(decision.action.value, rule, shadow, reasons)


class MerchantRules:
    """The `Rules` step of `RiskEngine`: each merchant's current rule set, compiled once."""

    def __init__(self, cache_size: int = 1024) -> None:
        self._cache: OrderedDict[tuple[str, bool, int], RuleSet] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()

    def decide(
        self,
        session: Session,
        merchant_id: str,
        livemode: bool,
        now: int,
        attributes: dict[str, Any],
        *,
        three_ds_completed: bool = False,
    ) -> RuleOutcome:
        lists = SqlListStore(session, merchant_id, livemode, now)
        row = _latest(session, merchant_id, livemode)
        version = 0 if row is None else row.version
        key = (merchant_id, livemode, version)
        with self._lock:
            ruleset = self._cache.get(key)
            if ruleset is not None:
                self._cache.move_to_end(key)
        if ruleset is None:
            ensure_default_lists(lists)
            ruleset = (
                default_rule_set(merchant_id, lists, at=now)
                if row is None
                else ruleset_from_dict(row.body, lists=lists)
            )
            with self._lock:
                self._cache[key] = ruleset
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        return rule_outcome(
            ruleset.evaluate(attributes, lists, three_ds_completed=three_ds_completed)
        )
