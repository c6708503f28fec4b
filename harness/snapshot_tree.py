"""What a snapshot is: one tree object listing every path of a workspace.

A tree lists directories (empty ones included), files (mode, size, mtime and
the sha256 of each chunk of their content) and symlinks (their target, kept
verbatim). Its id is the sha256 of its canonical JSON, so two equal
workspaces have the same snapshot id and a changed byte anywhere gives a new
one.

`check_tree` holds the restore rules. The snapshot engine checks every tree
with them before it stores it, so a snapshot that was taken can always be
restored; a restore checks them again before it writes anything.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, Field

TREE_FORMAT = 1
# files bigger than this are stored in chunks of this size: a change inside a big file
# uploads only the chunks it touched (fixed-size chunking: an insertion re-uploads the rest)
CHUNK_SIZE = 1024 * 1024
_HEX = frozenset("0123456789abcdef")


class SnapshotInvalid(Exception):
    """A tree that breaks the restore rules (crafted, corrupt or from a bug)."""


class TreeEntry(BaseModel):
    path: str
    kind: Literal["file", "dir", "symlink"]
    # permission bits only (0o777): set-id and sticky bits are not kept
    mode: int = Field(ge=0, le=0o777)
    size: int = Field(default=0, ge=0)
    # whole seconds since the epoch (files), so build tools see unchanged files as unchanged
    mtime: int = 0
    chunks: list[str] = Field(default_factory=list)
    target: str | None = None


class SnapshotTree(BaseModel):
    format: Literal[1] = TREE_FORMAT
    entries: list[TreeEntry]

    def canonical_bytes(self) -> bytes:
        """The bytes the snapshot id is the hash of (entries sorted, no whitespace)."""
        ordered = sorted(self.entries, key=lambda entry: entry.path)
        document = {"format": self.format, "entries": [_canonical(entry) for entry in ordered]}
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    @property
    def snapshot_id(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.entries if entry.kind == "file")

    def count(self, kind: str) -> int:
        return sum(1 for entry in self.entries if entry.kind == kind)


def _canonical(entry: TreeEntry) -> dict[str, object]:
    """The entry's fields that differ from their defaults (what `model_dump(exclude_defaults=True)`
    gives, built by hand: this runs for every path at every snapshot)."""
    fields: dict[str, object] = {"path": entry.path, "kind": entry.kind, "mode": entry.mode}
    if entry.size:
        fields["size"] = entry.size
    if entry.mtime:
        fields["mtime"] = entry.mtime
    if entry.chunks:
        fields["chunks"] = entry.chunks
    if entry.target is not None:
        fields["target"] = entry.target
    return fields


def check_path(path: str) -> tuple[str, ...]:
    """The components of a tree path; refuses absolute paths, `..`, `.`, empty parts and NUL."""
    if not path or "\0" in path or path.startswith("/"):
        raise SnapshotInvalid(f"snapshot path {path!r} is empty, absolute or contains NUL")
    parts = tuple(path.split("/"))
    if any(part in ("", ".", "..") for part in parts):
        raise SnapshotInvalid(f"snapshot path {path!r} contains '..', '.' or an empty part")
    return parts


def check_tree(tree: SnapshotTree) -> None:
    """Refuse a tree that a restore must not write (raises SnapshotInvalid naming the entry).

    - every path is relative, without `..`, and appears once;
    - every entry's parent is a directory of the tree, so nothing is ever written through a
      symlink, whatever chain of links the tree holds;
    - symlink targets are kept verbatim (a venv's `bin/python3 -> /usr/bin/python3`): they are
      resolved only inside the sandbox, never by the restore;
    - a file's chunk hashes are sha256 hex digests, one per CHUNK_SIZE piece of its size.
    """
    kinds: dict[tuple[str, ...], str] = {}
    for entry in sorted(tree.entries, key=lambda entry: entry.path):
        parts = check_path(entry.path)
        if parts in kinds:
            raise SnapshotInvalid(f"snapshot path {entry.path!r} appears twice")
        if len(parts) > 1:
            parent_kind = kinds.get(parts[:-1])
            if parent_kind != "dir":
                what = "not in the snapshot" if parent_kind is None else f"a {parent_kind}"
                raise SnapshotInvalid(
                    f"snapshot path {entry.path!r} is under {'/'.join(parts[:-1])!r}, which is {what}; "
                    "a restore never writes through a symlink"
                )
        kinds[parts] = entry.kind
        _check_entry(entry)


def _check_entry(entry: TreeEntry) -> None:
    if entry.kind == "symlink":
        if not entry.target or "\0" in entry.target:
            raise SnapshotInvalid(f"symlink {entry.path!r} has an empty or invalid target")
        return
    if entry.target is not None:
        raise SnapshotInvalid(f"{entry.kind} {entry.path!r} has a link target")
    if entry.kind == "dir":
        if entry.chunks or entry.size:
            raise SnapshotInvalid(f"directory {entry.path!r} has content")
        return
    if not all(len(chunk) == 64 and _HEX.issuperset(chunk) for chunk in entry.chunks):
        raise SnapshotInvalid(f"file {entry.path!r} has a chunk hash that is not a sha256 hex digest")
    if len(entry.chunks) != -(-entry.size // CHUNK_SIZE):
        raise SnapshotInvalid(f"file {entry.path!r}: size {entry.size} does not match its chunk list")


def split_chunks(data: bytes) -> list[bytes]:
    """A file's content in CHUNK_SIZE pieces (one piece for a small file, none for an empty one)."""
    return [data[start : start + CHUNK_SIZE] for start in range(0, len(data), CHUNK_SIZE)]


class SnapshotRecord(BaseModel):
    """One line of a run's snapshot list (`farline snapshots ID`)."""

    snapshot_id: str
    run_id: str
    sequence: int
    created_at: float
    reason: str
    files: int
    total_bytes: int
    # what this snapshot added: changed files and the bytes of blobs uploaded
    changed_files: int
    uploaded_bytes: int
    skipped: list[str] = Field(default_factory=list)
