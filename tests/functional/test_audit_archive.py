"""Archival of old audit segments that stay verifiable (issue 3, item 7; PCI DSS 10.5.1)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from tests.conftest import make_runtime

from bastionpay.audit import archive, events, seal
from bastionpay.audit.models import AuditArchivedLeaf, AuditEntry
from bastionpay.audit.verify import verify_log
from bastionpay.db.uow import unit_of_work
from bastionpay.runtime import Runtime

DAY_US = 86_400_000_000


def _record(runtime: Runtime, count: int, *, occurred_us: int) -> None:
    with unit_of_work(runtime.db, write=True) as session:
        for index in range(count):
            events.record(
                session,
                events.AuditEvent(
                    actor_type="system",
                    actor_id="test",
                    action="audit.log.read",
                    outcome="success",
                    details={"n": index},
                ),
                occurred_us=occurred_us + index,
            )
        seal.seal(session, runtime.audit_keys)
        seal.checkpoint(session, runtime.audit_keys, now_us=occurred_us + count)


def _archive(runtime: Runtime, directory: Path, cutoff_us: int) -> archive.Archived | None:
    with unit_of_work(runtime.db, write=True) as session:
        return archive.archive(
            session,
            runtime.audit_keys,
            cutoff_us=cutoff_us,
            directory=directory,
            now_us=time.time_ns() // 1000,
        )


def _problems(runtime: Runtime, directory: Path) -> list[str]:
    with unit_of_work(runtime.db, write=False) as session:
        report = verify_log(session, runtime.audit_keys)
        return report.problems + archive.verify_archives(session, runtime.audit_keys, directory)


def _online(runtime: Runtime) -> tuple[int, int]:
    with unit_of_work(runtime.db, write=False) as session:
        entries = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
        archived = session.scalar(select(func.count()).select_from(AuditArchivedLeaf)) or 0
    return entries, archived


def test_old_segments_move_to_files_and_everything_still_verifies(
    fresh_db_url: str, tmp_path: Path
) -> None:
    runtime = make_runtime(fresh_db_url, tmp_path)
    now = time.time_ns() // 1000
    directory = tmp_path / "archive"
    _record(runtime, 7, occurred_us=now - 200 * DAY_US)
    _record(runtime, 5, occurred_us=now - 120 * DAY_US)
    _record(runtime, 4, occurred_us=now - 1 * DAY_US)

    first = _archive(runtime, directory, cutoff_us=now - 150 * DAY_US)
    assert first is not None and (first.first_seq, first.end_seq) == (0, 7)
    assert _online(runtime) == (9, 7)
    assert _problems(runtime, directory) == []
    second = _archive(runtime, directory, cutoff_us=now - 92 * DAY_US)
    assert second is not None and (second.first_seq, second.end_seq) == (7, 12)
    assert _archive(runtime, directory, cutoff_us=now - 92 * DAY_US) is None
    assert _online(runtime) == (4, 12)

    _record(runtime, 3, occurred_us=now)  # the chain and the tree go on after archival
    assert _problems(runtime, directory) == []
    # A third party verifies a segment with only the file and the pinned public key.
    with second.path.open() as stream:
        verified = archive.verify_segment(
            stream, pinned_public_key=runtime.audit_keys.public_key_b64
        )
    assert [seq for seq, _, _ in verified] == list(range(7, 12))
    runtime.db.dispose()


def test_tampered_missing_or_mismatched_archives_are_detected(
    fresh_db_url: str, tmp_path: Path
) -> None:
    runtime = make_runtime(fresh_db_url, tmp_path)
    now = time.time_ns() // 1000
    directory = tmp_path / "archive"
    _record(runtime, 6, occurred_us=now - 200 * DAY_US)
    _record(runtime, 2, occurred_us=now)
    done = _archive(runtime, directory, cutoff_us=now - 100 * DAY_US)
    assert done is not None
    original = done.path.read_text()

    lines = original.splitlines()
    entry = json.loads(lines[3])
    entry["fields"]["outcome"] = "failure"
    done.path.write_text("\n".join([*lines[:3], json.dumps(entry), *lines[4:]]) + "\n")
    assert "was modified" in _problems(runtime, directory)[0]
    with pytest.raises(archive.ArchiveInvalid, match="line 4"):
        archive.verify_segment(done.path.read_text().splitlines())

    done.path.unlink()
    assert "missing" in _problems(runtime, directory)[0]
    done.path.write_text(original)
    assert _problems(runtime, directory) == []

    with unit_of_work(runtime.db, write=True) as session:  # an attacker edits the kept hashes
        if runtime.db.is_sqlite:
            session.execute(text("DROP TRIGGER audit_archived_leaves_no_update"))
        else:
            session.execute(
                text("DROP TRIGGER audit_archived_leaves_immutable ON audit_archived_leaves")
            )
        session.execute(
            text("UPDATE audit_archived_leaves SET leaf_hash = '" + "0" * 64 + "' WHERE seq = 2")
        )
    problems = _problems(runtime, directory)
    assert problems and "archived entry 2" in problems[0]
    runtime.db.dispose()
