"""Key management operations, audited (C4, L1; PCI DSS 3.6, 3.7, 10.2.1.2).

The CLI (`bastionpay vault keys …`) and the internal API's `keys/status` call these. Each is one
audit event with its outcome — refusals included (`KeyInUse`, `GracePeriod`), which are raised
again after they are recorded. The event names the operator; whether that operator holds the
key-management permission (with step-up MFA, I3) is checked by the identity issue's operator
sessions, which do not exist yet: today the CLI records the local OS user as the operator and
anyone who can run it on the vault host with the vault's data dir can rotate keys.

Rotation runs to completion by default (`rewrap` after a KEK rotation, `reencrypt` after a DEK
rotation); retiring the old version is separate because it must wait out the grace period
(`Keyring.supersede_grace_seconds`), after which a retired version protects nothing (C4).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bastionpay.crypto.kek import KekError
from bastionpay.vault import auditlog
from bastionpay.vault.auditlog import Outcome, VaultAction, VaultEvent
from bastionpay.vault.keyring import DEFAULT_BATCH, KeyringError
from bastionpay.vault.runtime import VaultRuntime
from bastionpay.vault.tokens import Actor


def _audit(
    runtime: VaultRuntime,
    actor: Actor,
    action: VaultAction,
    outcome: Outcome,
    *,
    merchant_id: str | None = None,
    target_id: str | None = None,
    **details: Any,
) -> None:
    auditlog.record_now(
        runtime.db,
        VaultEvent(
            actor_type=actor.type,
            actor_id=actor.id,
            action=action,
            outcome=outcome,
            merchant_id=merchant_id,
            target_type="key",
            target_id=target_id,
            origin=actor.origin,
            details=details,
        ),
    )


def status(runtime: VaultRuntime, merchant_id: str | None, *, actor: Actor) -> dict[str, Any]:
    """Versions, ages and how many data keys / records each protects."""
    report = runtime.keyring.status(merchant_id).to_dict()
    _audit(runtime, actor, "vault.keys.status", "success", merchant_id=merchant_id)
    return {"object": "vault.key_status", **report}


def rotate_kek(
    runtime: VaultRuntime, *, actor: Actor, rewrap: bool = True, batch_size: int = DEFAULT_BATCH
) -> dict[str, Any]:
    """A new KEK version; every live data key is rewrapped under it (unless `rewrap=False`)."""
    previous = runtime.kek.active_version
    try:
        version = runtime.keyring.rotate_kek()
    except KekError as exc:
        _audit(runtime, actor, "vault.keys.rotate_kek", "failure", error=type(exc).__name__)
        raise
    _audit(
        runtime,
        actor,
        "vault.keys.rotate_kek",
        "success",
        target_id=f"kek:v{version}",
        previous_version=previous,
        version=version,
    )
    result: dict[str, Any] = {"kek_version": version, "previous_version": previous}
    if rewrap:
        result["rewrap"] = rewrap_data_keys(runtime, actor=actor, batch_size=batch_size)
    return result


def rewrap_data_keys(
    runtime: VaultRuntime, *, actor: Actor, batch_size: int = DEFAULT_BATCH
) -> dict[str, Any]:
    try:
        done = runtime.keyring.rewrap(batch_size=batch_size)
    except (KeyringError, KekError) as exc:
        _audit(runtime, actor, "vault.keys.rewrap", "failure", error=type(exc).__name__)
        raise
    result = asdict(done)
    _audit(
        runtime,
        actor,
        "vault.keys.rewrap",
        "success",
        target_id=f"kek:v{done.kek_version}",
        **result,
    )
    return result


def retire_kek(runtime: VaultRuntime, version: int, *, actor: Actor) -> dict[str, Any]:
    """Destroy an old KEK version; refused while it still wraps a data key (C4)."""
    target = f"kek:v{version}"
    try:
        runtime.keyring.retire_kek(version)
    except (KeyringError, KekError) as exc:
        _audit(
            runtime,
            actor,
            "vault.keys.retire_kek",
            "failure",
            target_id=target,
            error=type(exc).__name__,
            reason=str(exc)[:200],
        )
        raise
    _audit(runtime, actor, "vault.keys.retire_kek", "success", target_id=target)
    return {"retired_kek_version": version}


def rotate_dek(
    runtime: VaultRuntime,
    merchant_id: str,
    *,
    actor: Actor,
    reencrypt: bool = True,
    batch_size: int = DEFAULT_BATCH,
) -> dict[str, Any]:
    """A new data key version for the merchant; its records are re-encrypted under it."""
    try:
        version = runtime.keyring.rotate_dek(merchant_id)
    except (KeyringError, KekError) as exc:
        _audit(
            runtime,
            actor,
            "vault.keys.rotate_dek",
            "failure",
            merchant_id=merchant_id,
            error=type(exc).__name__,
        )
        raise
    _audit(
        runtime,
        actor,
        "vault.keys.rotate_dek",
        "success",
        merchant_id=merchant_id,
        target_id=f"dek:{merchant_id}:v{version}",
        version=version,
    )
    result: dict[str, Any] = {"merchant_id": merchant_id, "dek_version": version}
    if reencrypt:
        result["reencrypt"] = reencrypt_records(
            runtime, merchant_id, actor=actor, batch_size=batch_size
        )
    return result


def reencrypt_records(
    runtime: VaultRuntime, merchant_id: str, *, actor: Actor, batch_size: int = DEFAULT_BATCH
) -> dict[str, Any]:
    try:
        done = runtime.keyring.reencrypt(merchant_id, batch_size=batch_size)
    except (KeyringError, KekError) as exc:
        _audit(
            runtime,
            actor,
            "vault.keys.reencrypt",
            "failure",
            merchant_id=merchant_id,
            error=type(exc).__name__,
        )
        raise
    result = {
        "merchant_id": done.merchant_id,
        "active_version": done.active_version,
        "moved": done.moved,
        "remaining": {str(version): count for version, count in done.remaining.items()},
    }
    _audit(
        runtime,
        actor,
        "vault.keys.reencrypt",
        "success",
        merchant_id=merchant_id,
        target_id=f"dek:{merchant_id}:v{done.active_version}",
        moved=done.moved,
        remaining=result["remaining"],
    )
    return result


def destroy_retired_deks(
    runtime: VaultRuntime, merchant_id: str, *, actor: Actor
) -> dict[str, Any]:
    """Destroy every old data key version of the merchant that protects nothing any more."""
    destroyed = runtime.keyring.destroy_drained(merchant_id)
    _audit(
        runtime,
        actor,
        "vault.keys.destroy_dek",
        "success",
        merchant_id=merchant_id,
        target_id=f"dek:{merchant_id}",
        destroyed_versions=list(destroyed),
    )
    return {"merchant_id": merchant_id, "destroyed_versions": list(destroyed)}
