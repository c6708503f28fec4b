"""Where snapshot objects live: a flat key space of immutable bytes.

Two backends implement it: a local directory (the embedded default, under the
data dir) and S3-compatible storage (`harness.object_store_s3`). Keys are
slash-separated and relative (`blobs/ab/ab12...`); the snapshot store decides
what they mean. Everything here is synchronous: activities call it from a
thread.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class ObjectStoreError(Exception):
    """The store could not be reached or refused an operation."""


class ObjectMissing(ObjectStoreError):
    """No object under that key."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    # epoch seconds of the last write
    modified_at: float


class ObjectStore(Protocol):
    """A key-value store of immutable objects (local directory or S3)."""

    def put(self, key: str, data: bytes) -> None:
        """Write (or overwrite) one object atomically: readers see the old or the new bytes."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectMissing when there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with `prefix`, in key order."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; removing a missing one is not an error."""
        ...

    def describe(self) -> str:
        """Where the objects are, for messages (never a credential)."""
        ...


def check_key(key: str) -> str:
    """A key must be relative, slash-separated and free of `.`/`..` parts."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\0" in key or any(part in ("", ".", "..") for part in parts):
        raise ObjectStoreError(f"invalid object key {key!r}")
    return key


class LocalDirectoryStore:
    """Objects as files under one directory (the default: `<data dir>/snapshots`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(f"no object {key!r} in {self.describe()}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[StoredObject]:
        if not self.root.is_dir():
            return
        # walk only the directory that holds the prefix
        base, _, _ = prefix.rpartition("/")
        start = self.root / base if base else self.root
        found: list[StoredObject] = []
        for directory, _dirs, files in os.walk(start):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                path = Path(directory) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    stat = path.stat()
                    found.append(StoredObject(key=key, size=stat.st_size, modified_at=stat.st_mtime))
        yield from sorted(found, key=lambda stored: stored.key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_file():
            path.unlink(missing_ok=True)

    def describe(self) -> str:
        return f"local directory {self.root}"
