"""CLI commands on the snapshot store: `farline snapshots`, `farline restore`, `farline gc`."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import click

from harness.config import ConfigError, FarlineConfig
from harness.object_store import ObjectStoreError
from harness.snapshot_restore import RestoreRefused, resolve_snapshot_id, restore_to_directory
from harness.snapshot_store import DEFAULT_GC_GRACE_S, SnapshotMissing, SnapshotStore, open_snapshot_store
from harness.snapshot_tree import SnapshotInvalid


def _store() -> SnapshotStore:
    try:
        return open_snapshot_store(FarlineConfig.from_env())
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


@click.command()
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per snapshot.")
def snapshots(workflow_id: str, as_json: bool) -> None:
    """List a run's snapshots, oldest first."""
    store = _store()
    try:
        records = store.snapshots(workflow_id)
    except ObjectStoreError as error:
        raise click.ClickException(str(error)) from None
    if not records:
        raise click.ClickException(f"run {workflow_id!r} has no snapshots in {store.describe()}")
    for record in records:
        if as_json:
            click.echo(record.model_dump_json())
            continue
        when = datetime.datetime.fromtimestamp(record.created_at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(
            f"{record.sequence:>4}  {when}  {record.snapshot_id[:16]}  {record.reason:<10}  "
            f"{record.files} files, {_size(record.total_bytes)}; "
            f"{record.changed_files} changed, {_size(record.uploaded_bytes)} uploaded"
        )
        for skipped in record.skipped:
            click.echo(f"        skipped: {skipped}")


@click.command()
@click.argument("snapshot")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def restore(snapshot: str, directory: Path) -> None:
    """Write snapshot SNAPSHOT (its id, or a unique prefix) out to a new or empty DIRECTORY."""
    store = _store()
    try:
        restored = restore_to_directory(store, resolve_snapshot_id(store, snapshot), directory)
    except (SnapshotMissing, SnapshotInvalid, RestoreRefused, ObjectStoreError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"restored {restored.snapshot_id[:16]} into {restored.directory}: {restored.files} files "
        f"({_size(restored.total_bytes)}), {restored.directories} directories, {restored.symlinks} symlinks"
    )


@click.command()
@click.option(
    "--grace-hours",
    type=click.FloatRange(min=0),
    default=DEFAULT_GC_GRACE_S / 3600,
    show_default=True,
    help="Keep unreferenced blobs younger than this (a snapshot being taken uploads them first).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
def gc(grace_hours: float, dry_run: bool) -> None:
    """Delete blobs that no snapshot references. Snapshots themselves are kept."""
    store = _store()
    try:
        report = store.gc(grace_s=grace_hours * 3600, dry_run=dry_run)
    except (SnapshotInvalid, ObjectStoreError) as error:
        raise click.ClickException(str(error)) from None
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{report.trees} snapshots; {report.blobs_kept} blobs referenced; {verb} {report.blobs_deleted} "
        f"({_size(report.bytes_freed)}); {report.blobs_spared} unreferenced but younger than the grace period"
    )
    if dry_run:
        click.echo(json.dumps(report.model_dump()))


COMMANDS = [snapshots, restore, gc]
