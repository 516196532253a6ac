"""The canonical form of an entry, its Merkle leaf (RFC 6962) and its keyed chain link.

leaf  = SHA-256(0x00 || canonical JSON of the entry, seq included)       (RFC 9162 §2.1.1)
chain = HMAC-SHA-256(chain key, "seq:previous chain:leaf")                 (keyed hash chain)
The chain starts from GENESIS; the head MAC binds (size, chain) so the tail cannot be cut off.
"""

from __future__ import annotations

import json
from typing import Any

from bastionpay.audit import merkle
from bastionpay.crypto.keyed_hash import KeyedHasher

GENESIS = "0" * 64
CHECKPOINT_DOMAIN = "bastionpay-audit-checkpoint/v1"
FIELDS = (
    "event_id",
    "occurred_us",
    "actor_type",
    "actor_id",
    "merchant_id",
    "livemode",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "origin_ip",
    "user_agent",
    "request_id",
    "details",
)


def canonical(seq: int, fields: dict[str, Any]) -> bytes:
    body = {name: fields.get(name) for name in FIELDS}
    body["seq"] = seq
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_hex(seq: int, fields: dict[str, Any]) -> str:
    return merkle.leaf_hash(canonical(seq, fields)).hex()


def link(chain: KeyedHasher, seq: int, previous: str, leaf: str) -> str:
    return chain.hexdigest(f"{seq}:{previous}:{leaf}")


def head_mac(chain: KeyedHasher, size: int, chain_hash: str) -> str:
    return chain.hexdigest(f"head:{size}:{chain_hash}")


def checkpoint_message(
    tree_size: int, root_hash: str, chain_hash: str, created_us: int, key_id: str
) -> bytes:
    """What a checkpoint signature covers; exports repeat it so a third party can check it."""
    return "\n".join(
        [CHECKPOINT_DOMAIN, str(tree_size), root_hash, chain_hash, str(created_us), key_id]
    ).encode()
