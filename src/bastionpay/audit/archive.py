"""Archival of old audit segments that stay verifiable (issue 3, item 7; PCI DSS 10.5.1).

`archive` moves the prefix of sealed entries older than the online window into a segment file:
every entry with its fields, leaf, chain link and inclusion proof, under a signed checkpoint. The
file is written, fsynced and verified before anything online changes. Then, in one transaction, each
archived entry's leaf and chain link are kept online (`audit_archived_leaves`, append-only); the
segment's SHA-256 is recorded, and the full rows are deleted — the only delete the log allows, done
with its guard lifted inside that transaction. The online log keeps verifying (the tree and chain
continue from the archived hashes), and `verify_archives` re-checks every file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, text
from sqlalchemy.orm import Session

from bastionpay.audit import chain, merkle
from bastionpay.audit.keys import AuditKeys
from bastionpay.audit.models import AuditArchive, AuditArchivedLeaf, AuditEntry
from bastionpay.audit.seal import latest_checkpoint, leaf_hashes
from bastionpay.audit.verify import CheckpointInvalid, check_signed_checkpoint, signed_checkpoint
from bastionpay.crypto.keyed_hash import KeyedHasher

SEGMENT_FORMAT = "bastionpay-audit-segment/v1"
_ENTRIES = cast(Table, AuditEntry.__table__)
_ARCHIVED = cast(Table, AuditArchivedLeaf.__table__)


class ArchiveInvalid(Exception):
    """A segment file does not verify; the message names the first bad line."""


@dataclass(frozen=True)
class Archived:
    first_seq: int
    end_seq: int
    path: Path
    sha256: str


def first_online_seq(session: Session) -> int:
    last = session.scalar(select(func.max(_ARCHIVED.c.seq)))
    return 0 if last is None else int(last) + 1


def _segment_lines(
    session: Session, keys: AuditKeys, first: int, end: int
) -> Iterable[dict[str, Any]]:
    checkpoint = latest_checkpoint(session)
    if checkpoint is None or checkpoint.tree_size < end:
        raise ArchiveInvalid("seal and checkpoint before archiving")
    previous = chain.GENESIS
    if first:
        previous = str(
            session.scalar(select(_ARCHIVED.c.chain_hash).where(_ARCHIVED.c.seq == first - 1))
        )
    yield {
        "type": "segment",
        "format": SEGMENT_FORMAT,
        "first_seq": first,
        "end_seq": end,
        "previous_chain_hash": previous,
        "checkpoint": signed_checkpoint(checkpoint, keys.public_key_b64),
    }
    tree = merkle.MerkleTree(leaf_hashes(session, checkpoint.tree_size))
    query = select(AuditEntry).where(AuditEntry.seq >= first, AuditEntry.seq < end)
    for entry in session.scalars(query.order_by(AuditEntry.seq)):
        yield {
            "type": "entry",
            "seq": entry.seq,
            "fields": {name: getattr(entry, name) for name in chain.FIELDS},
            "leaf_hash": entry.leaf_hash,
            "chain_hash": entry.chain_hash,
            "inclusion_proof": [node.hex() for node in tree.inclusion_proof(entry.seq)],
        }


def verify_segment(
    lines: Iterable[str],
    *,
    chain_key: KeyedHasher | None = None,
    pinned_public_key: str | None = None,
) -> list[tuple[int, str, str]]:
    """Verify a segment file; returns (seq, leaf, chain) per entry. Raises ArchiveInvalid.

    Without the chain key (a third party) the signature, leaves and inclusion proofs are checked;
    with it (`audit verify --archive-dir`) every chain link too.
    """
    stream = iter(lines)
    try:
        header = json.loads(next(stream))
        cp = header["checkpoint"]
        if header.get("format") != SEGMENT_FORMAT:
            raise ArchiveInvalid("line 1: not a bastionpay audit segment")
        check_signed_checkpoint(cp, pinned_public_key=pinned_public_key)
    except ArchiveInvalid:
        raise
    except CheckpointInvalid as exc:
        raise ArchiveInvalid(f"line 1: {exc}") from exc
    except (StopIteration, KeyError, TypeError, ValueError) as exc:
        raise ArchiveInvalid("line 1: the segment header does not verify") from exc
    root, previous = bytes.fromhex(cp["root_hash"]), str(header["previous_chain_hash"])
    expected, out = int(header["first_seq"]), []
    for number, raw in enumerate(stream, start=2):
        try:
            line = json.loads(raw)
            seq = int(line["seq"])
            leaf = chain.leaf_hex(seq, dict(line["fields"]))
            if seq != expected or leaf != line["leaf_hash"]:
                raise ArchiveInvalid(f"line {number} (entry {seq}): modified or out of order")
            merkle.verify_inclusion(
                bytes.fromhex(leaf),
                seq,
                cp["tree_size"],
                [bytes.fromhex(n) for n in line["inclusion_proof"]],
                root,
            )
            if chain_key is not None:
                previous = chain.link(chain_key, seq, previous, leaf)
                if previous != line["chain_hash"]:
                    raise ArchiveInvalid(f"line {number} (entry {seq}): chain link broken")
        except ArchiveInvalid:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveInvalid(f"line {number}: does not verify ({type(exc).__name__})") from exc
        out.append((seq, leaf, str(line["chain_hash"])))
        expected += 1
    if expected != int(header["end_seq"]):
        raise ArchiveInvalid(f"segment ends at {expected}, header says {header['end_seq']}")
    return out


def _delete_archived_rows(session: Session, first: int, end: int) -> None:
    """The one delete the audit log allows, with its guard lifted inside this transaction only."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_immutable"))
    elif dialect == "sqlite":
        session.execute(text("DROP TRIGGER audit_entries_no_delete"))
    session.execute(delete(_ENTRIES).where(_ENTRIES.c.seq >= first, _ENTRIES.c.seq < end))
    if dialect == "postgresql":
        session.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_immutable"))
    elif dialect == "sqlite":
        session.execute(
            text(
                "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
                "BEGIN SELECT RAISE(ABORT, 'rows of audit_entries are immutable'); END"
            )
        )


def archive(
    session: Session, keys: AuditKeys, *, cutoff_us: int, directory: Path, now_us: int
) -> Archived | None:
    """Archive the sealed entries older than `cutoff_us` (a prefix of the online log)."""
    first = first_online_seq(session)
    end = first
    for seq, occurred in session.execute(
        select(_ENTRIES.c.seq, _ENTRIES.c.occurred_us)
        .where(_ENTRIES.c.seq >= first)
        .order_by(_ENTRIES.c.seq)
    ):
        if occurred >= cutoff_us or seq != end:
            break
        end += 1
    if end == first:
        return None
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"audit-segment-{first:012d}-{end:012d}.jsonl"
    tmp = path.with_suffix(".tmp")
    digest = hashlib.sha256()
    with tmp.open("w", encoding="utf-8") as stream:
        for line in _segment_lines(session, keys, first, end):
            data = json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n"
            stream.write(data)
            digest.update(data.encode())
        stream.flush()
        os.fsync(stream.fileno())
    with tmp.open(encoding="utf-8") as stream:
        verified = verify_segment(stream, chain_key=keys.chain)  # before anything online changes
    tmp.replace(path)
    session.execute(
        insert(_ARCHIVED),
        [{"seq": seq, "leaf_hash": leaf, "chain_hash": link} for seq, leaf, link in verified],
    )
    session.add(
        AuditArchive(
            first_seq=first,
            end_seq=end,
            file_name=path.name,
            sha256=digest.hexdigest(),
            created_us=now_us,
        )
    )
    session.flush()
    _delete_archived_rows(session, first, end)
    return Archived(first_seq=first, end_seq=end, path=path, sha256=digest.hexdigest())


def verify_archives(session: Session, keys: AuditKeys, directory: Path) -> list[str]:
    """Every recorded segment file is present, unchanged, and matches the hashes kept online."""
    problems: list[str] = []
    for record in session.scalars(select(AuditArchive).order_by(AuditArchive.pk)):
        path = directory / record.file_name
        if not path.exists():
            problems.append(f"archive {record.file_name}: missing")
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != record.sha256:
            problems.append(f"archive {record.file_name}: the file was modified")
            continue
        try:
            with path.open(encoding="utf-8") as stream:
                entries = verify_segment(stream, chain_key=keys.chain)
        except ArchiveInvalid as exc:
            problems.append(f"archive {record.file_name}: {exc}")
            continue
        online = session.execute(
            select(_ARCHIVED.c.seq, _ARCHIVED.c.leaf_hash, _ARCHIVED.c.chain_hash)
            .where(_ARCHIVED.c.seq >= record.first_seq, _ARCHIVED.c.seq < record.end_seq)
            .order_by(_ARCHIVED.c.seq)
        ).all()
        if [tuple(row) for row in online] != entries:
            problems.append(f"archive {record.file_name}: does not match the hashes kept online")
    return problems
