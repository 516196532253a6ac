"""`bastionpay audit verify`: re-derive the chain, the tree and every checkpoint signature.

Detects an edited field (leaf mismatch), a deleted, inserted or reordered entry (gap in `seq` or
a broken chain link), a truncated tail (head MAC, checkpoint size), and a replaced or forged
checkpoint (signature, root or chain mismatch). Reports the first problem; the CLI exits non-zero.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from bastionpay.audit import chain, merkle
from bastionpay.audit.keys import AuditKeys, key_id, load_public_key
from bastionpay.audit.models import AuditArchivedLeaf, AuditCheckpoint, AuditEntry, AuditHead

_ENTRIES = cast(Table, AuditEntry.__table__)


@dataclass
class AuditReport:
    entries: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_checkpoint_signature(
    public_key: Ed25519PublicKey,
    tree_size: int,
    root_hash: str,
    chain_hash: str,
    created_us: int,
    key_id: str,
    signature_hex: str,
) -> None:
    """Raises InvalidSignature (or ValueError for a malformed signature)."""
    message = chain.checkpoint_message(tree_size, root_hash, chain_hash, created_us, key_id)
    public_key.verify(bytes.fromhex(signature_hex), message)


class CheckpointInvalid(ValueError):
    """A signed checkpoint (in an export, a segment or a consistency proof) does not verify."""


def signed_checkpoint(checkpoint: AuditCheckpoint, public_key_b64: str) -> dict[str, Any]:
    """The wire form of a checkpoint: everything a third party needs to check its signature."""
    return {
        "tree_size": checkpoint.tree_size,
        "root_hash": checkpoint.root_hash,
        "chain_hash": checkpoint.chain_hash,
        "created_us": checkpoint.created_us,
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
        "public_key": public_key_b64,
    }


def check_signed_checkpoint(cp: Mapping[str, Any], *, pinned_public_key: str | None) -> None:
    """Raise CheckpointInvalid unless `cp` is signed by its (or the pinned) Ed25519 key."""
    if pinned_public_key is not None and cp.get("public_key") != pinned_public_key:
        raise CheckpointInvalid("signed with a key other than the pinned one")
    try:
        public_key = load_public_key(cp["public_key"])
        if key_id(public_key) != cp["key_id"]:
            raise CheckpointInvalid("key id does not match the public key")
        verify_checkpoint_signature(
            public_key,
            cp["tree_size"],
            cp["root_hash"],
            cp["chain_hash"],
            cp["created_us"],
            cp["key_id"],
            cp["signature"],
        )
    except CheckpointInvalid:
        raise
    except (InvalidSignature, KeyError, TypeError, ValueError) as exc:
        raise CheckpointInvalid("checkpoint signature does not verify") from exc


def _entries(session: Session) -> Iterator[AuditEntry]:
    yield from session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).yield_per(2_000)


def _verify_entries(
    session: Session, keys: AuditKeys, report: AuditReport
) -> tuple[list[bytes], list[str]]:
    """Re-derive every leaf and chain link in order; stops at the first bad entry."""
    leaves: list[bytes] = []
    chain_at: list[str] = []
    previous = chain.GENESIS
    # Archived entries: their fields are in segment files, their leaves and links stay online.
    archived = session.execute(
        select(
            AuditArchivedLeaf.seq, AuditArchivedLeaf.leaf_hash, AuditArchivedLeaf.chain_hash
        ).order_by(AuditArchivedLeaf.seq)
    )
    for expected_seq, (seq, leaf, link) in enumerate(archived):
        previous = chain.link(keys.chain, seq, previous, leaf)
        if seq != expected_seq or previous != link:
            report.problems.append(f"archived entry {expected_seq}: missing or altered")
            return leaves, chain_at
        leaves.append(bytes.fromhex(leaf))
        chain_at.append(previous)
    for expected_seq, entry in enumerate(_entries(session), start=len(leaves)):
        if entry.seq != expected_seq:
            report.problems.append(
                f"entry {expected_seq}: missing (next stored entry is {entry.seq}) — deleted or "
                "inserted entries"
            )
            break
        fields = {name: getattr(entry, name) for name in chain.FIELDS}
        leaf = chain.leaf_hex(entry.seq, fields)
        if leaf != entry.leaf_hash:
            report.problems.append(f"entry {entry.seq} ({entry.event_id}): content was modified")
            break
        previous = chain.link(keys.chain, entry.seq, previous, leaf)
        if previous != entry.chain_hash:
            report.problems.append(
                f"entry {entry.seq} ({entry.event_id}): chain link broken — entries reordered, "
                "inserted or forged"
            )
            break
        leaves.append(bytes.fromhex(leaf))
        chain_at.append(previous)
    report.entries = len(leaves)
    return leaves, chain_at


def _verify_head(
    session: Session, keys: AuditKeys, report: AuditReport, chain_at: list[str]
) -> None:
    head = session.scalar(select(AuditHead).where(AuditHead.id == 1))
    last = chain_at[-1] if chain_at else chain.GENESIS
    if head is None:
        if chain_at:
            report.problems.append("audit head: missing while entries exist")
    elif not keys.chain.matches(f"head:{head.size}:{head.chain_hash}", head.mac):
        report.problems.append("audit head: MAC does not match — the head was altered")
    elif head.size != len(chain_at) or head.chain_hash != last:
        report.problems.append(
            f"audit head: records {head.size} entries but {len(chain_at)} verify — the log was "
            "truncated or extended"
        )


def _verify_checkpoints(
    session: Session, keys: AuditKeys, report: AuditReport, leaves: list[bytes], chain_at: list[str]
) -> None:
    last_size = 0
    for cp in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.pk)):
        report.checkpoints += 1
        label = f"checkpoint {cp.pk} (size {cp.tree_size})"
        problem = None
        if cp.key_id != keys.key_id:
            problem = f"{label}: signed by unknown key {cp.key_id}"
        else:
            try:
                verify_checkpoint_signature(
                    keys.public_key,
                    cp.tree_size,
                    cp.root_hash,
                    cp.chain_hash,
                    cp.created_us,
                    cp.key_id,
                    cp.signature,
                )
            except (InvalidSignature, ValueError):
                problem = f"{label}: signature does not verify — checkpoint replaced or forged"
        if problem is None and cp.tree_size < last_size:
            problem = f"{label}: smaller than an earlier checkpoint ({last_size})"
        if problem is None and cp.tree_size > len(leaves):
            problem = (
                f"{label}: covers {cp.tree_size} entries but only {len(leaves)} exist — "
                "the log was truncated"
            )
        if (
            problem is None
            and merkle.root_from_leaf_hashes(leaves[: cp.tree_size]).hex() != cp.root_hash
        ):
            problem = f"{label}: Merkle root does not match the entries"
        if problem is None and cp.tree_size and chain_at[cp.tree_size - 1] != cp.chain_hash:
            problem = f"{label}: chain head does not match the entries"
        if problem is not None:
            report.problems.append(problem)
            return
        last_size = cp.tree_size


def verify_log(session: Session, keys: AuditKeys) -> AuditReport:
    report = AuditReport()
    leaves, chain_at = _verify_entries(session, keys, report)
    if report.ok:
        _verify_head(session, keys, report, chain_at)
    if report.ok:
        _verify_checkpoints(session, keys, report, leaves, chain_at)
    return report
