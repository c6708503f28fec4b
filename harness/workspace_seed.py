"""A run's starting workspace, built on the trusted side as a snapshot tree.

The manifest's entries, the skills and the agent's memory are gathered on the
worker into one tree in the snapshot store (content-addressed blobs, like any
snapshot). The first sandbox of the run is restored from it, and so is any
sandbox that replaces one before the run's first snapshot: every sandbox starts
from exactly the same workspace, on any worker, without fetching anything again.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from harness.snapshot_store import SnapshotStore, blob_hash
from harness.snapshot_tree import SnapshotTree, TreeEntry, check_tree, split_chunks

DIRECTORY_MODE = 0o755
FILE_MODE = 0o644


class SeedConflict(Exception):
    """Two sources fill the same path, or a path would go through a file; the message names it."""


class SeedTooBig(Exception):
    """The starting workspace exceeds the worker's limit (FARLINE_MANIFEST_MAX_BYTES)."""


class WorkspaceSeed:
    """Collects paths and content; `finish` stores the tree and returns it."""

    def __init__(self, store: SnapshotStore, max_bytes: int, mtime: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        # one time for every path: the same sources give the same tree
        self.mtime = mtime
        self.entries: dict[str, TreeEntry] = {}
        self.descriptions: dict[str, str] = {}
        self.total_bytes = 0
        self.uploaded_bytes = 0
        # paths not copied (sockets, devices, FIFOs)
        self.skipped: list[str] = []

    def start_from(self, tree: SnapshotTree) -> None:
        """Begin with a snapshot's paths (a fork); what is added after may not fill them again."""
        self.entries.update({entry.path: entry for entry in tree.entries})
        self.total_bytes += tree.total_bytes

    def describe(self, path: str, description: str | None) -> None:
        if description:
            self.descriptions[path] = description

    def add_dir(self, path: str, mode: int = DIRECTORY_MODE) -> None:
        self._parents(path)
        existing = self.entries.get(path)
        if existing is not None and existing.kind != "dir":
            raise SeedConflict(f"{path!r} is a {existing.kind} already; it cannot also be a folder")
        if existing is None:
            self.entries[path] = TreeEntry(path=path, kind="dir", mode=mode & 0o777)

    def add_file(self, path: str, data: bytes, mode: int = FILE_MODE, source: str = "") -> None:
        self._parents(path)
        self._claim(path, source)
        self.total_bytes += len(data)
        if self.total_bytes > self.max_bytes:
            raise SeedTooBig(
                f"the starting workspace passed {self.max_bytes:,} bytes at {path!r}; raise "
                "FARLINE_MANIFEST_MAX_BYTES on the worker or copy less"
            )
        chunks = []
        for chunk in split_chunks(data):
            digest = blob_hash(chunk)
            self.uploaded_bytes += self.store.put_blob(digest, chunk)
            chunks.append(digest)
        self.entries[path] = TreeEntry(
            path=path, kind="file", mode=mode & 0o777, size=len(data), mtime=self.mtime, chunks=chunks
        )

    def add_link(self, path: str, target: str, source: str = "") -> None:
        self._parents(path)
        self._claim(path, source)
        self.entries[path] = TreeEntry(path=path, kind="symlink", mode=0o777, target=target)

    def add_from_disk(self, path: str, host_path: Path, skip: frozenset[str] = frozenset()) -> None:
        """A file or a folder of the worker's disk at `path`; links kept as links, never followed.

        `skip` names entries left out at any depth (e.g. `.git` of a skill's checkout).
        """
        info = host_path.lstat()
        if stat.S_ISLNK(info.st_mode):
            self.add_link(path, os.readlink(host_path), source=str(host_path))
        elif stat.S_ISREG(info.st_mode):
            self.add_file(path, host_path.read_bytes(), info.st_mode, source=str(host_path))
        elif stat.S_ISDIR(info.st_mode):
            self.add_dir(path, info.st_mode | 0o700)
            with os.scandir(host_path) as children:
                for child in sorted(children, key=lambda child: child.name):
                    if child.name not in skip:
                        self.add_from_disk(f"{path}/{child.name}", Path(child.path), skip)
        else:
            self.skipped.append(f"{path} (a socket, device or FIFO: not copied)")

    def finish(self) -> SnapshotTree:
        tree = SnapshotTree(entries=list(self.entries.values()))
        check_tree(tree)
        self.store.put_tree(tree)
        return tree

    def _parents(self, path: str) -> None:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            existing = self.entries.get(parent)
            if existing is None:
                self.entries[parent] = TreeEntry(path=parent, kind="dir", mode=DIRECTORY_MODE)
            elif existing.kind != "dir":
                raise SeedConflict(f"{path!r} would be inside {parent!r}, which is a {existing.kind}")

    def _claim(self, path: str, source: str) -> None:
        existing = self.entries.get(path)
        if existing is not None:
            origin = f" (from {source})" if source else ""
            raise SeedConflict(f"{path!r}{origin} is filled twice in the starting workspace")
