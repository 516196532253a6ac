"""Audit exports a third party can verify (issue 3, item 3; docs/security/audit-log.md).

Format (JSON lines, `bastionpay-audit-export/v1`):
  line 1  {"type": "checkpoint", tree_size, root_hash, chain_hash, created_us, key_id, signature,
           public_key (base64 Ed25519), format}
  then    {"type": "entry", seq, fields, leaf_hash, inclusion_proof: [hex, …]}
Verification needs only this file (and, ideally, the public key pinned from elsewhere): check the
checkpoint signature, recompute each leaf from `seq` + `fields`, and check its inclusion proof
against the signed root (RFC 9162 §2.1.3.2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.audit import chain, merkle
from bastionpay.audit.keys import AuditKeys
from bastionpay.audit.models import AuditCheckpoint, AuditEntry
from bastionpay.audit.seal import leaf_hashes
from bastionpay.audit.verify import CheckpointInvalid, check_signed_checkpoint, signed_checkpoint

FORMAT = "bastionpay-audit-export/v1"


class ExportInvalid(Exception):
    """The export does not verify; the message names the first bad line."""


def export_lines(
    session: Session, keys: AuditKeys, checkpoint: AuditCheckpoint, *, since_us: int
) -> Iterator[dict[str, Any]]:
    yield {
        "type": "checkpoint",
        "format": FORMAT,
        **signed_checkpoint(checkpoint, keys.public_key_b64),
    }
    # Built once: each inclusion proof is then O(log n), not O(n).
    tree = merkle.MerkleTree(leaf_hashes(session, checkpoint.tree_size))
    query = (
        select(AuditEntry)
        .where(AuditEntry.seq < checkpoint.tree_size, AuditEntry.occurred_us >= since_us)
        .order_by(AuditEntry.seq)
    )
    for entry in session.scalars(query).yield_per(1_000):
        yield {
            "type": "entry",
            "seq": entry.seq,
            "fields": {name: getattr(entry, name) for name in chain.FIELDS},
            "leaf_hash": entry.leaf_hash,
            "inclusion_proof": [node.hex() for node in tree.inclusion_proof(entry.seq)],
        }


def write_export(lines: Iterable[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    for line in lines:
        out.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")
        count += line["type"] == "entry"
    return count


def verify_export(stream: Iterable[str], *, pinned_public_key: str | None = None) -> int:
    """Verify an export; returns the number of entries verified, raises ExportInvalid."""
    lines = iter(stream)
    try:
        header = json.loads(next(lines))
    except (StopIteration, ValueError) as exc:
        raise ExportInvalid("line 1: not a checkpoint header") from exc
    if header.get("type") != "checkpoint" or header.get("format") != FORMAT:
        raise ExportInvalid("line 1: not a bastionpay audit export checkpoint")
    try:
        check_signed_checkpoint(header, pinned_public_key=pinned_public_key)
    except CheckpointInvalid as exc:
        raise ExportInvalid(f"line 1: {exc}") from exc
    root = bytes.fromhex(header["root_hash"])
    count = 0
    for number, raw in enumerate(lines, start=2):
        try:
            line = json.loads(raw)
            seq, fields = int(line["seq"]), dict(line["fields"])
            leaf = chain.leaf_hex(seq, fields)
            if leaf != line["leaf_hash"]:
                raise ExportInvalid(f"line {number} (entry {seq}): content was modified")
            merkle.verify_inclusion(
                bytes.fromhex(leaf),
                seq,
                header["tree_size"],
                [bytes.fromhex(node) for node in line["inclusion_proof"]],
                root,
            )
        except ExportInvalid:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportInvalid(f"line {number}: does not verify ({type(exc).__name__})") from exc
        count += 1
    return count


CONSISTENCY_FORMAT = "bastionpay-audit-consistency/v1"


def consistency_document(
    session: Session, keys: AuditKeys, checkpoint: AuditCheckpoint, old_size: int
) -> dict[str, Any]:
    """Proof that the first `old_size` entries are a prefix of the signed `checkpoint`'s tree.

    Someone who pinned an older checkpoint (size and root) checks it with `verify_consistency`:
    the log was only ever appended to (RFC 9162 §2.1.4).
    """
    if not 0 <= old_size <= checkpoint.tree_size:
        raise ValueError(f"old size must be between 0 and {checkpoint.tree_size}")
    hashes = leaf_hashes(session, checkpoint.tree_size)
    return {
        "format": CONSISTENCY_FORMAT,
        "old_size": old_size,
        "old_root": merkle.root_from_leaf_hashes(hashes[:old_size]).hex(),
        "checkpoint": signed_checkpoint(checkpoint, keys.public_key_b64),
        "proof": [node.hex() for node in merkle.consistency_proof(hashes, old_size)],
    }


def verify_consistency_document(
    document: dict[str, Any], *, pinned_old_root: str, pinned_public_key: str | None = None
) -> None:
    """Raise ExportInvalid unless the signed checkpoint extends the pinned older tree."""
    try:
        if document.get("format") != CONSISTENCY_FORMAT:
            raise ExportInvalid("not a bastionpay audit consistency proof")
        if document["old_root"] != pinned_old_root:
            raise ExportInvalid("the proof is for a different old root than the pinned one")
        cp = document["checkpoint"]
        check_signed_checkpoint(cp, pinned_public_key=pinned_public_key)
        merkle.verify_consistency(
            int(document["old_size"]),
            int(cp["tree_size"]),
            bytes.fromhex(pinned_old_root),
            bytes.fromhex(cp["root_hash"]),
            [bytes.fromhex(n) for n in document["proof"]],
        )
    except ExportInvalid:
        raise
    except CheckpointInvalid as exc:
        raise ExportInvalid(str(exc)) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportInvalid(f"consistency proof does not verify ({type(exc).__name__})") from exc
