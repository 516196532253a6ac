"""First-run initialisation of a data dir, and the dev demo merchant.

Idempotent: run on every `bastionpay up`. Creates the data dir (0700), the keyed-hash keys, the dev
PKI (unless real certificate files are configured), applies migrations, and makes sure a demo
merchant with test-mode keys exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.audit import events as audit
from bastionpay.config import Settings
from bastionpay.crypto.devpki import ensure_dev_pki
from bastionpay.crypto.keyfiles import write_private
from bastionpay.db import migrate
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.errors import AuthenticationError
from bastionpay.merchants import service as merchants
from bastionpay.merchants.models import ApiKey
from bastionpay.payments.vault_connector import card_vault
from bastionpay.risk.platform import ensure_platform_model
from bastionpay.runtime import Runtime, build_runtime

DEMO_FILE = "demo-merchant.json"


@dataclass(frozen=True)
class TLSFiles:
    cert_file: Path
    key_file: Path
    ca_file: Path | None


def tls_files(settings: Settings) -> TLSFiles:
    if settings.tls_cert_file and settings.tls_key_file:
        return TLSFiles(settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file)
    pki = ensure_dev_pki(settings.tls_dir)
    return TLSFiles(pki.cert_file, pki.key_file, pki.ca_file)


def initialise(settings: Settings) -> Runtime:
    data_dir = settings.resolved_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkdir's mode does not apply to a directory that already exists (e.g. created 0755 by hand).
    data_dir.chmod(0o700)
    if settings.risk_enabled:
        # A fresh install scores with a model trained on the transaction simulator (issue 7).
        ensure_platform_model(settings.risk_models_dir)
    runtime = build_runtime(settings)
    migrate.upgrade(settings.resolved_database_url())
    return runtime


def key_event(action: audit.Action, key: ApiKey) -> audit.AuditEvent:
    """An audit event about an API key: its id and redacted form, never the key."""
    return audit.AuditEvent(
        actor_type="system",
        actor_id="cli",
        action=action,
        outcome="success",
        merchant_id=key.merchant_id,
        livemode=key.livemode,
        target_type="api_key",
        target_id=key.id,
        details={
            "kind": key.kind,
            "redacted": key.redacted,
            "permissions": key.permissions,
            "allowed_ips": key.allowed_ips,
        },
    )


def register_publishable_key(runtime: Runtime, record: ApiKey, plaintext: str) -> None:
    """Tell the card vault about a publishable key, so its hosted fields accept it (issue 4).

    Only while the plaintext is at hand (it is stored here as a keyed hash only, I7), inside the
    caller's unit of work: if the vault refuses or cannot be reached the key is not issued (P3).
    Without a configured vault there is nothing to do.
    """
    vault = card_vault(runtime.connector)
    if vault is None or record.kind != "publishable":
        return
    vault.register_publishable_key(
        key_id=record.id,
        key=plaintext,
        merchant_id=record.merchant_id,
        livemode=record.livemode,
    )


def revoke_publishable_key(runtime: Runtime, record: ApiKey) -> None:
    """A revoked publishable key stops working in the vault's hosted fields too."""
    vault = card_vault(runtime.connector)
    if vault is not None and record.kind == "publishable":
        vault.revoke_publishable_key(record.id, record.merchant_id)


def create_merchant_with_keys(runtime: Runtime, name: str) -> dict[str, Any]:
    now = runtime.clock.now()
    with unit_of_work(runtime.db, write=True) as session:
        merchant = merchants.create_merchant(session, name, now)
        secret = merchants.issue_key(
            session,
            runtime.api_keys,
            merchant_id=merchant.id,
            kind="secret",
            livemode=False,
            now=now,
        )
        publishable = merchants.issue_key(
            session,
            runtime.api_keys,
            merchant_id=merchant.id,
            kind="publishable",
            livemode=False,
            now=now,
        )
        audit.record(
            session,
            audit.AuditEvent(
                actor_type="system",
                actor_id="cli",
                action="merchant.account.create",
                outcome="success",
                merchant_id=merchant.id,
                target_type="account",
                target_id=merchant.id,
                details={"name": merchant.name},
            ),
        )
        for issued in (secret, publishable):
            audit.record(session, key_event("merchant.api_key.create", issued.record))
        register_publishable_key(runtime, publishable.record, publishable.plaintext)
    return {
        "id": merchant.id,
        "secret_key": secret.plaintext,
        "publishable_key": publishable.plaintext,
    }


def ensure_demo_merchant(runtime: Runtime) -> dict[str, Any]:
    """The demo merchant's test keys, kept in a 0600 dev-only file so `make run` can print them.

    This is the one place a key is kept in plain text, and only for the test-mode demo merchant of a
    local data dir; every other key is shown once and stored as a keyed hash (I7).
    """
    path = runtime.settings.resolved_data_dir() / DEMO_FILE
    if path.exists():
        demo: dict[str, Any] = json.loads(path.read_text())
        try:
            with unit_of_work(runtime.db, write=False) as session:
                merchants.authenticate(session, runtime.api_keys, demo.get("secret_key"))
                _register_demo_key(runtime, session, demo)
            return demo
        except AuthenticationError:
            pass  # a different database (or revoked key): mint a fresh demo merchant
    demo = create_merchant_with_keys(runtime, "Demo merchant")
    write_private(path, json.dumps(demo, indent=2).encode())
    return demo


def _register_demo_key(runtime: Runtime, session: Session, demo: dict[str, Any]) -> None:
    """Register the demo merchant's publishable key again (idempotent): the vault's database may
    be newer than the api's (docs/vault.md, "What `bastionpay up` must do")."""
    plaintext = demo.get("publishable_key")
    if card_vault(runtime.connector) is None or not isinstance(plaintext, str):
        return
    record = session.scalar(
        select(ApiKey).where(
            ApiKey.key_hash == runtime.api_keys.hexdigest(plaintext), ApiKey.revoked_at.is_(None)
        )
    )
    if record is not None:
        register_publishable_key(runtime, record, plaintext)
