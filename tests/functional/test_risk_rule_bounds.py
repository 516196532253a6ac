"""Bounds on the work a merchant's rules can cause (security review M3): one query per distinct
list question in an evaluation, at most MAX_LISTS lists, a time budget for back-tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from tests.conftest import make_runtime

from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.ids import new_id
from bastionpay.risk import rule_store
from bastionpay.risk.rule_store import SqlListStore
from bastionpay.risk.rules import ListError, ValueKind
from bastionpay.runtime import Runtime

T0 = 1_800_000_000


@pytest.fixture
def runtime(db_url: str, tmp_path: Path) -> Any:
    rt = make_runtime(db_url, tmp_path)
    yield rt
    rt.db.dispose()


def _count_item_queries(rt: Runtime) -> list[str]:
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "risk_list_items" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(rt.db.write_engine, "before_cursor_execute", before)
    return seen


def test_one_evaluation_asks_each_list_question_once(runtime: Runtime) -> None:
    merchant = new_id("acct")  # the database is shared by the session's tests
    queries = _count_item_queries(runtime)
    with unit_of_work(runtime.db, write=True) as session:
        lists = SqlListStore(session, merchant, False, T0)
        lists.create_list("bad_emails", ValueKind.EMAIL)
        lists.add("bad_emails", "mallory@example.com")
        queries.clear()
        # 500 rules testing the same list for the same payment cost one query, not 500.
        answers = {lists.contains("bad_emails", ("mallory@example.com",)) for _ in range(500)}
        assert answers == {True}
        assert len(queries) == 1
        assert lists.contains("bad_emails", ("eve@example.com",)) is False
        assert len(queries) == 2
        # A change to the lists is seen at once: remembered answers are dropped.
        assert lists.remove("bad_emails", "mallory@example.com") is True
        assert lists.contains("bad_emails", ("mallory@example.com",)) is False
        lists.add("bad_emails", "eve@example.com")
        assert lists.contains("bad_emails", ("eve@example.com",)) is True


def test_a_merchant_has_at_most_max_lists_lists(runtime: Runtime) -> None:
    merchant = new_id("acct")
    with unit_of_work(runtime.db, write=True) as session:
        lists = SqlListStore(session, merchant, False, T0)
        for index in range(rule_store.MAX_LISTS):
            lists.create_list(f"l{index}", ValueKind.STRING)
        with pytest.raises(ListError) as caught:
            lists.create_list("one_more", ValueKind.STRING)
        assert caught.value.code == "rule_list_limit"
    with unit_of_work(runtime.db, write=True) as session:
        # Counted from the database, not only in one store's memory.
        fresh = SqlListStore(session, merchant, False, T0)
        with pytest.raises(ListError):
            fresh.create_list("one_more", ValueKind.STRING)
        assert len(SqlListStore(session, merchant, True, T0).all_lists()) == 0  # live is apart
