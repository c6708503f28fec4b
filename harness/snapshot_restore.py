"""Writing a snapshot out to a directory on this machine (`farline restore SNAPSHOT DIR`).

The tree is checked against the restore rules first. Everything is written
into a fresh staging directory next to the target and renamed into place only
once every blob has been verified, so a bad snapshot leaves the target as it
was.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from pydantic import BaseModel

from harness.snapshot_store import SnapshotMissing, SnapshotStore
from harness.snapshot_tree import SnapshotTree, check_tree

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class RestoreRefused(Exception):
    """The target cannot take a restore (it is not empty)."""


class RestoredDirectory(BaseModel):
    snapshot_id: str
    directory: str
    files: int
    directories: int
    symlinks: int
    total_bytes: int


def resolve_snapshot_id(store: SnapshotStore, given: str) -> str:
    """A full snapshot id from a full one or a unique prefix of at least 8 hex digits."""
    if len(given) == 64:
        return given
    if len(given) < 8:
        raise SnapshotMissing(f"{given!r} is too short: give a snapshot id or at least its first 8 digits")
    matches = [stored.key.removeprefix("trees/") for stored in store.objects.list(f"trees/{given}")]
    if len(matches) != 1:
        found = "no snapshot" if not matches else f"{len(matches)} snapshots"
        raise SnapshotMissing(f"{found} in {store.describe()} start with {given!r}")
    return matches[0]


def restore_to_directory(store: SnapshotStore, snapshot_id: str, target: Path) -> RestoredDirectory:
    tree = store.get_tree(snapshot_id)
    check_tree(tree)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RestoreRefused(f"{target} exists and is not an empty directory; give a new or empty one")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.farline-restore-{uuid.uuid4().hex[:8]}"
    staging.mkdir(mode=0o700)
    try:
        _write_tree(store, tree, staging)
        if target.exists():
            target.rmdir()
        staging.rename(target)
        # the staging directory was private; the result gets the mode a new directory would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(target, 0o777 & ~umask)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RestoredDirectory(
        snapshot_id=snapshot_id,
        directory=str(target),
        files=tree.count("file"),
        directories=tree.count("dir"),
        symlinks=tree.count("symlink"),
        total_bytes=tree.total_bytes,
    )


def _write_tree(store: SnapshotStore, tree: SnapshotTree, root: Path) -> None:
    """Write a checked tree into a new, private directory (every parent is a directory we made)."""
    entries = sorted(tree.entries, key=lambda entry: entry.path)
    for entry in entries:
        path = root / entry.path
        if entry.kind == "dir":
            path.mkdir(mode=0o700)
        elif entry.kind == "symlink":
            assert entry.target is not None
            os.symlink(entry.target, path)
        else:
            data = store.file_content(entry)
            descriptor = os.open(path, _NEW_FILE, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.chmod(path, entry.mode)
            os.utime(path, (entry.mtime, entry.mtime))
    for entry in reversed(entries):  # children first: a read-only directory is closed last
        if entry.kind == "dir":
            os.chmod(root / entry.path, entry.mode)
