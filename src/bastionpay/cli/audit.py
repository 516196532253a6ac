"""`bastionpay audit verify | export | checkpoint | public-key`."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import click

from bastionpay import bootstrap
from bastionpay.audit import archive, events, seal
from bastionpay.audit.export import (
    ExportInvalid,
    consistency_document,
    export_lines,
    verify_consistency_document,
    verify_export,
    write_export,
)
from bastionpay.audit.models import AuditCheckpoint
from bastionpay.audit.verify import verify_log
from bastionpay.cli.common import data_dir_option, settings_for
from bastionpay.db.uow import unit_of_work
from bastionpay.runtime import Runtime

CLI_ACTOR = "cli"


def _parse_since(value: str) -> int:
    """Unix seconds or an ISO-8601 date/time (UTC if no zone) → Unix microseconds."""
    if value.isdigit():
        return int(value) * 1_000_000
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use Unix seconds or ISO-8601, e.g. 2026-11-01") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1_000_000)


def _record(
    runtime: Runtime, action: events.Action, outcome: events.Outcome, details: dict[str, object]
) -> None:
    with unit_of_work(runtime.db, write=True) as session:
        events.record(
            session,
            events.AuditEvent(
                actor_type="system",
                actor_id=CLI_ACTOR,
                action=action,
                outcome=outcome,
                details=dict(details),
            ),
        )


def _seal_and_checkpoint(runtime: Runtime) -> AuditCheckpoint:
    with unit_of_work(runtime.db, write=True) as session:
        while seal.seal(session, runtime.audit_keys).count:
            pass
        made = seal.checkpoint(session, runtime.audit_keys, now_us=time.time_ns() // 1000)
        latest = made or seal.latest_checkpoint(session)
        if latest is None:  # an empty log: sign size 0 so exports still carry a checkpoint
            latest = seal.checkpoint(
                session, runtime.audit_keys, now_us=time.time_ns() // 1000, force=True
            )
        if latest is None:  # pragma: no cover - force=True always returns a checkpoint
            raise click.ClickException("could not write a checkpoint")
        return latest


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


@audit_group.command("verify")
@data_dir_option
@click.option(
    "--export",
    "export_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify an export file instead of the database.",
)
@click.option("--public-key", default=None, help="Pinned base64 Ed25519 key for --export.")
@click.option(
    "--consistency",
    "consistency_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify a consistency proof (needs --old-root).",
)
@click.option("--old-root", default=None, help="Pinned Merkle root (hex) of the older tree.")
@click.option(
    "--archive-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also re-verify archived segment files (default DATA_DIR/audit-archive).",
)
def audit_verify(
    data_dir: Path | None,
    export_file: Path | None,
    public_key: str | None,
    consistency_file: Path | None,
    old_root: str | None,
    archive_dir: Path | None,
) -> None:
    """Re-derive the chain, the Merkle tree and every checkpoint; exit 1 naming the first fault."""
    if consistency_file is not None:
        if old_root is None:
            raise click.UsageError("--consistency needs the pinned --old-root")
        try:
            document = json.loads(consistency_file.read_text(encoding="utf-8"))
            verify_consistency_document(
                document, pinned_old_root=old_root, pinned_public_key=public_key
            )
        except (ExportInvalid, ValueError) as exc:
            click.echo(f"audit consistency: INVALID: {exc}", err=True)
            raise SystemExit(1) from None
        click.echo(
            f"audit consistency: the first {document['old_size']} entries are a prefix of "
            f"the signed tree of size {document['checkpoint']['tree_size']}"
        )
        return
    if export_file is not None:
        try:
            with export_file.open(encoding="utf-8") as stream:
                count = verify_export(stream, pinned_public_key=public_key)
        except ExportInvalid as exc:
            click.echo(f"audit export: INVALID: {exc}", err=True)
            raise SystemExit(1) from None
        click.echo(f"audit export: {count} entries verify against the signed checkpoint")
        return
    settings = settings_for(data_dir)
    runtime = bootstrap.initialise(settings)
    with unit_of_work(runtime.db, write=False) as session:
        report = verify_log(session, runtime.audit_keys)
        report.problems.extend(
            archive.verify_archives(
                session,
                runtime.audit_keys,
                archive_dir or settings.resolved_data_dir() / "audit-archive",
            )
        )
    _record(
        runtime,
        "audit.log.verify",
        "success" if report.ok else "failure",
        {"entries": report.entries, "checkpoints": report.checkpoints},
    )
    click.echo(f"audit log: {report.entries} entries, {report.checkpoints} checkpoints verified")
    if not report.ok:
        click.echo(f"audit verify: TAMPERED: {report.problems[0]}", err=True)
        raise SystemExit(1)
    click.echo(f"audit verify: intact (signing key {runtime.audit_keys.public_key_b64})")


@audit_group.command("export")
@data_dir_option
@click.option("--since", default="0", show_default=True, help="Unix seconds or ISO-8601.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of standard output.",
)
def audit_export(data_dir: Path | None, since: str, out: Path | None) -> None:
    """Seal, checkpoint, and write entries with inclusion proofs as JSON lines."""
    since_us = _parse_since(since)
    runtime = bootstrap.initialise(settings_for(data_dir))
    _record(runtime, "audit.log.export", "success", {"since_us": since_us})
    checkpoint = _seal_and_checkpoint(runtime)
    with unit_of_work(runtime.db, write=False) as session:
        lines = export_lines(session, runtime.audit_keys, checkpoint, since_us=since_us)
        if out is None:
            count = write_export(lines, sys.stdout)
        else:
            with out.open("w", encoding="utf-8") as stream:
                count = write_export(lines, stream)
    click.echo(f"exported {count} entries (checkpoint size {checkpoint.tree_size})", err=True)


@audit_group.command("archive")
@data_dir_option
@click.option(
    "--older-than-days",
    type=int,
    default=None,
    help="Archive entries older than this (default: BASTIONPAY_AUDIT_ONLINE_DAYS, 92).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where segment files go (default DATA_DIR/audit-archive).",
)
def audit_archive(
    data_dir: Path | None, older_than_days: int | None, directory: Path | None
) -> None:
    """Move sealed entries older than the online window into a verifiable segment file."""
    settings = settings_for(data_dir)
    runtime = bootstrap.initialise(settings)
    days = older_than_days if older_than_days is not None else settings.audit_online_days
    target = directory or settings.resolved_data_dir() / "audit-archive"
    _seal_and_checkpoint(runtime)
    now_us = time.time_ns() // 1000
    with unit_of_work(runtime.db, write=True) as session:
        done = archive.archive(
            session,
            runtime.audit_keys,
            cutoff_us=now_us - days * 86_400_000_000,
            directory=target,
            now_us=now_us,
        )
    if done is None:
        click.echo(f"audit archive: nothing older than {days} days to archive")
        return
    click.echo(
        f"audit archive: entries {done.first_seq}..{done.end_seq - 1} -> {done.path} "
        f"(sha256 {done.sha256})"
    )


@audit_group.command("prove-consistency")
@data_dir_option
@click.option("--old-size", type=int, required=True, help="Size of the older, pinned tree.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def audit_prove_consistency(data_dir: Path | None, old_size: int, out: Path | None) -> None:
    """Prove that the log of --old-size entries is a prefix of a fresh signed checkpoint."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    checkpoint = _seal_and_checkpoint(runtime)
    with unit_of_work(runtime.db, write=False) as session:
        try:
            document = consistency_document(session, runtime.audit_keys, checkpoint, old_size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--old-size") from None
    text = json.dumps(document, indent=2, sort_keys=True)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")


@audit_group.command("checkpoint")
@data_dir_option
def audit_checkpoint(data_dir: Path | None) -> None:
    """Seal what is staged and sign a checkpoint now."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    checkpoint = _seal_and_checkpoint(runtime)
    click.echo(f"checkpoint: size {checkpoint.tree_size}, root {checkpoint.root_hash}")
    click.echo(f"signing key (pin this): {runtime.audit_keys.public_key_b64}")


@audit_group.command("public-key")
@data_dir_option
def audit_public_key(data_dir: Path | None) -> None:
    """Print the checkpoint-signing public key (base64 Ed25519) to pin elsewhere."""
    runtime = bootstrap.initialise(settings_for(data_dir))
    click.echo(runtime.audit_keys.public_key_b64)
