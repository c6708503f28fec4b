"""The snapshot store: content-addressed blobs, trees and each run's list of snapshots.

Layout inside an object store (local directory or S3):

    blobs/ab/ab12...       one chunk of file content, zstd-compressed, named by the sha256 of
                           the uncompressed bytes (shared by every snapshot, run and fork)
    trees/<snapshot id>    a snapshot's tree, zstd-compressed canonical JSON
    runs/<run>/<seq>-<id>  one record per snapshot a run took, in order
    statcache/<sandbox>    per sandbox: the stat data and chunk hashes of the last snapshot,
                           so the next one hashes only what changed

Every read is verified: a blob whose content does not hash to its name, a tree
whose bytes do not hash to its id, and a missing object are loud errors.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field

import structlog
import zstandard
from pydantic import BaseModel, ValidationError

from harness.config import FarlineConfig
from harness.object_store import ObjectMissing, ObjectStore
from harness.snapshot_tree import SnapshotInvalid, SnapshotRecord, SnapshotTree, TreeEntry
from harness.stores import open_run_store

log = structlog.get_logger(__name__)

ZSTD_LEVEL = 3
# gc never deletes a blob younger than this: a snapshot in progress uploads its blobs before
# it writes the tree that references them
DEFAULT_GC_GRACE_S = 6 * 3600.0
_SNAPSHOT_ID = re.compile(r"[0-9a-f]{64}")


class SnapshotMissing(Exception):
    """A snapshot, or a blob it needs, is not in the store: never restored as an empty workspace."""


@dataclass(frozen=True)
class CachedFile:
    # (size, mtime_ns, ctime_ns, inode) when the content was hashed
    signature: tuple[int, int, int, int]
    chunks: list[str]


@dataclass
class StatCache:
    """What the previous snapshot of one sandbox saw, by path (a plain, compact format: it is
    read and written at every snapshot, for every file)."""

    snapshot_id: str
    files: dict[str, CachedFile] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        files = {path: [*cached.signature, cached.chunks] for path, cached in self.files.items()}
        return json.dumps({"snapshot_id": self.snapshot_id, "files": files}, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> StatCache:
        document = json.loads(raw)
        files = {
            path: CachedFile(signature=(size, mtime_ns, ctime_ns, inode), chunks=list(chunks))
            for path, (size, mtime_ns, ctime_ns, inode, chunks) in document["files"].items()
        }
        return cls(snapshot_id=str(document["snapshot_id"]), files=files)


class GcReport(BaseModel):
    trees: int
    blobs_kept: int
    blobs_deleted: int
    bytes_freed: int
    # unreferenced but younger than the grace period
    blobs_spared: int


def blob_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_key(run_id: str) -> str:
    """A key-safe, collision-free name for a run (workflow) id."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:80]
    return f"{readable}-{hashlib.sha256(run_id.encode()).hexdigest()[:12]}"


class SnapshotStore:
    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def describe(self) -> str:
        return self.objects.describe()

    # -- blobs ---------------------------------------------------------------------------------------

    @staticmethod
    def _blob_key(digest: str) -> str:
        return f"blobs/{digest[:2]}/{digest}"

    def has_blob(self, digest: str) -> bool:
        return self.objects.exists(self._blob_key(digest))

    def put_blob(self, digest: str, data: bytes) -> int:
        """Store a chunk unless it is there already; the number of bytes uploaded."""
        key = self._blob_key(digest)
        if self.objects.exists(key):
            return 0
        compressed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
        self.objects.put(key, compressed)
        return len(compressed)

    def get_blob(self, digest: str) -> bytes:
        try:
            compressed = self.objects.get(self._blob_key(digest))
        except ObjectMissing:
            raise SnapshotMissing(f"blob {digest} is missing from {self.describe()}") from None
        try:
            data = zstandard.ZstdDecompressor().decompress(compressed)
        except zstandard.ZstdError as error:
            raise SnapshotInvalid(f"blob {digest} in {self.describe()} is corrupt: {error}") from None
        if blob_hash(data) != digest:
            raise SnapshotInvalid(f"blob {digest} in {self.describe()} is corrupt: its content hash differs")
        return data

    def file_content(self, entry: TreeEntry) -> bytes:
        """A file entry's whole content, every chunk verified, its size checked."""
        data = b"".join(self.get_blob(chunk) for chunk in entry.chunks)
        if len(data) != entry.size:
            raise SnapshotInvalid(f"file {entry.path!r}: its chunks hold {len(data)} bytes, not {entry.size}")
        return data

    # -- trees ---------------------------------------------------------------------------------------

    def put_tree(self, tree: SnapshotTree) -> str:
        raw = tree.canonical_bytes()
        snapshot_id = hashlib.sha256(raw).hexdigest()
        key = f"trees/{snapshot_id}"
        if not self.objects.exists(key):
            self.objects.put(key, zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw))
        return snapshot_id

    def has_tree(self, snapshot_id: str) -> bool:
        return bool(_SNAPSHOT_ID.fullmatch(snapshot_id)) and self.objects.exists(f"trees/{snapshot_id}")

    def get_tree(self, snapshot_id: str) -> SnapshotTree:
        if not _SNAPSHOT_ID.fullmatch(snapshot_id):
            raise SnapshotMissing(f"{snapshot_id!r} is not a snapshot id (64 hex digits)")
        try:
            compressed = self.objects.get(f"trees/{snapshot_id}")
        except ObjectMissing:
            raise SnapshotMissing(f"snapshot {snapshot_id} is not in {self.describe()}") from None
        try:
            raw = zstandard.ZstdDecompressor().decompress(compressed)
            tree = SnapshotTree.model_validate_json(raw)
        except (zstandard.ZstdError, ValidationError) as error:
            raise SnapshotInvalid(f"snapshot {snapshot_id} is corrupt: {error}") from None
        if hashlib.sha256(raw).hexdigest() != snapshot_id or tree.snapshot_id != snapshot_id:
            raise SnapshotInvalid(f"snapshot {snapshot_id} is corrupt: its content hash differs")
        return tree

    # -- each run's list -----------------------------------------------------------------------------

    def record(self, record: SnapshotRecord) -> None:
        key = f"runs/{run_key(record.run_id)}/{record.sequence:08d}-{record.snapshot_id}"
        self.objects.put(key, record.model_dump_json().encode())

    def snapshots(self, run_id: str) -> list[SnapshotRecord]:
        """A run's snapshots, oldest first."""
        return self._records(f"runs/{run_key(run_id)}/")

    def _records(self, prefix: str) -> list[SnapshotRecord]:
        return [
            SnapshotRecord.model_validate_json(self.objects.get(stored.key))
            for stored in self.objects.list(prefix)
        ]

    # -- stat caches ---------------------------------------------------------------------------------

    def load_stat_cache(self, sandbox_id: str) -> StatCache | None:
        try:
            raw = self.objects.get(f"statcache/{sandbox_id}")
            return StatCache.from_bytes(zstandard.ZstdDecompressor().decompress(raw))
        except ObjectMissing:
            return None
        except (zstandard.ZstdError, ValueError, TypeError, KeyError):
            # only an optimisation: without it the next snapshot hashes every file
            log.warning("snapshot.stat_cache_unreadable", sandbox_id=sandbox_id)
            return None

    def save_stat_cache(self, sandbox_id: str, cache: StatCache) -> None:
        raw = cache.to_bytes()
        self.objects.put(f"statcache/{sandbox_id}", zstandard.ZstdCompressor(level=1).compress(raw))

    def forget_stat_cache(self, sandbox_id: str) -> None:
        self.objects.delete(f"statcache/{sandbox_id}")

    # -- garbage collection --------------------------------------------------------------------------

    def gc(
        self, grace_s: float = DEFAULT_GC_GRACE_S, dry_run: bool = False, now: float | None = None
    ) -> GcReport:
        """Delete blobs that no tree references and that are older than `grace_s`.

        Trees (snapshots) are never deleted here, so a running workflow's snapshots and
        everything they reference stay; the grace period covers a snapshot being taken
        right now, whose blobs are uploaded before its tree.
        """
        now = time.time() if now is None else now
        referenced: set[str] = set()
        trees = 0
        for stored in self.objects.list("trees/"):
            trees += 1
            for entry in self.get_tree(stored.key.removeprefix("trees/")).entries:
                referenced.update(entry.chunks)
        kept = deleted = spared = freed = 0
        for stored in self.objects.list("blobs/"):
            if stored.key.rsplit("/", 1)[-1] in referenced:
                kept += 1
            elif now - stored.modified_at < grace_s:
                spared += 1
            else:
                deleted += 1
                freed += stored.size
                if not dry_run:
                    self.objects.delete(stored.key)
        report = GcReport(
            trees=trees, blobs_kept=kept, blobs_deleted=deleted, bytes_freed=freed, blobs_spared=spared
        )
        log.info("snapshot.gc", dry_run=dry_run, **report.model_dump())
        return report


def open_snapshot_store(config: FarlineConfig) -> SnapshotStore:
    """The store the worker's settings name (FARLINE_SNAPSHOT_STORE and the FARLINE_S3_* settings)."""
    return SnapshotStore(open_run_store(config))
