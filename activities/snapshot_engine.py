"""Snapshot and restore of a workspace, through the provider protocol (any provider).

Taking a snapshot: list the workspace with stat data inside the sandbox,
reuse the chunk hashes of every file whose stat data is unchanged since the
previous snapshot of this sandbox, export only the changed files, hash and
upload only chunks the store lacks. Restoring: check the tree against the
restore rules, fetch and verify every blob before anything is written, then
import the workspace in archives of bounded size.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import structlog
from pydantic import BaseModel, Field

from harness.snapshot_store import CachedFile, SnapshotStore, StatCache, blob_hash
from harness.snapshot_tree import SnapshotTree, TreeEntry, check_tree, split_chunks
from sandbox_providers.base import SandboxProvider, SandboxRef, WorkspaceStat

log = structlog.get_logger(__name__)

# bytes of file content per export or import archive, to bound the worker's memory
BATCH_BYTES = 64 * 1024 * 1024
BATCH_FILES = 2000
# a restore stages its archives in memory up to this size, on the worker's disk beyond
IN_MEMORY_RESTORE_BYTES = 256 * 1024 * 1024
# archives of files imported at once by a restore
IMPORT_CONCURRENCY = 4
UPLOAD_THREADS = 8
# how many skipped paths a result names (the count is always whole)
SKIPPED_SHOWN = 20


class TakenSnapshot(BaseModel):
    snapshot_id: str
    tree: SnapshotTree = Field(exclude=True)
    changed_files: int
    uploaded_bytes: int
    skipped: list[str]
    skipped_count: int
    seconds: float


class RestoredSnapshot(BaseModel):
    snapshot_id: str
    files: int
    total_bytes: int
    seconds: float


Progress = Callable[[], None]
_Item = TypeVar("_Item")


def _no_progress() -> None:
    return None


class SnapshotEngine:
    """Takes and restores snapshots of one provider's sandboxes into one store."""

    def __init__(self, store: SnapshotStore, provider: SandboxProvider, progress: Progress = _no_progress):
        self.store = store
        self.provider = provider
        # called between batches (an activity heartbeats there)
        self.progress = progress

    # -- taking --------------------------------------------------------------------------------------

    async def take(self, ref: SandboxRef) -> TakenSnapshot:
        """Snapshot the workspace and store its tree; the caller records it in a run's list."""
        started = time.monotonic()
        scan = await self.provider.scan_workspace(ref)
        cache = await asyncio.to_thread(self.store.load_stat_cache, ref.sandbox_id)
        cached = cache.files if cache is not None else {}
        entries: dict[str, TreeEntry] = {}
        new_cache: dict[str, CachedFile] = {}
        changed: list[WorkspaceStat] = []
        skipped: list[str] = []
        for item in scan:
            if item.kind == "dir":
                entries[item.path] = TreeEntry(path=item.path, kind="dir", mode=item.mode)
            elif item.kind == "symlink":
                entries[item.path] = TreeEntry(
                    path=item.path, kind="symlink", mode=0o777, target=item.link_target
                )
            elif item.kind == "file":
                hit = cached.get(item.path)
                if hit is not None and hit.signature == _signature(item):
                    entries[item.path] = _file_entry(
                        item.path, item.mode, item.size, item.mtime_ns, hit.chunks
                    )
                    new_cache[item.path] = hit
                else:
                    changed.append(item)
            else:
                skipped.append(f"{item.path} (a socket, device or FIFO: not kept)")
        known = {chunk for hit in new_cache.values() for chunk in hit.chunks}
        uploaded = 0
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            for batch in _batches(changed, lambda item: item.size):
                archive = await self._export(ref, batch)
                uploaded += await asyncio.to_thread(
                    self._ingest,
                    archive,
                    {item.path: item for item in batch},
                    entries,
                    new_cache,
                    known,
                    pool,
                )
                self.progress()
        tree = SnapshotTree(entries=_without_orphans(entries))
        check_tree(tree)  # the restore rules: what is taken can be restored
        snapshot_id = await asyncio.to_thread(self.store.put_tree, tree)
        await asyncio.to_thread(
            self.store.save_stat_cache, ref.sandbox_id, StatCache(snapshot_id=snapshot_id, files=new_cache)
        )
        taken = TakenSnapshot(
            snapshot_id=snapshot_id,
            tree=tree,
            changed_files=len(changed),
            uploaded_bytes=uploaded,
            skipped=skipped[:SKIPPED_SHOWN],
            skipped_count=len(skipped),
            seconds=round(time.monotonic() - started, 3),
        )
        log.info(
            "snapshot.taken",
            sandbox_id=ref.sandbox_id,
            snapshot_id=snapshot_id,
            files=tree.count("file"),
            **taken.model_dump(include={"changed_files", "uploaded_bytes", "skipped_count", "seconds"}),
        )
        return taken

    async def _export(self, ref: SandboxRef, batch: list[WorkspaceStat]) -> bytes:
        """One archive of the batch's files; files deleted since the scan are left out."""
        try:
            return await self.provider.export_paths(ref, [item.path for item in batch])
        except FileNotFoundError:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as merged:
                for item in batch:
                    try:
                        single = await self.provider.export_paths(ref, [item.path])
                    except FileNotFoundError:
                        continue
                    with tarfile.open(fileobj=io.BytesIO(single)) as tar:
                        for member in tar.getmembers():
                            merged.addfile(member, tar.extractfile(member) if member.isreg() else None)
            return buffer.getvalue()

    def _ingest(
        self,
        archive: bytes,
        wanted: dict[str, WorkspaceStat],
        entries: dict[str, TreeEntry],
        new_cache: dict[str, CachedFile],
        known: set[str],
        pool: ThreadPoolExecutor,
    ) -> int:
        """Hash and upload the files of one export archive; returns the bytes uploaded."""
        uploads = []
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for member in tar:
                item = wanted.get(member.name)
                if item is None:
                    continue  # a directory's children (a file became a directory meanwhile)
                entries.pop(member.name, None)
                if member.issym():
                    entries[member.name] = TreeEntry(
                        path=member.name, kind="symlink", mode=0o777, target=member.linkname
                    )
                    continue
                if not member.isreg():
                    continue
                source = tar.extractfile(member)
                data = source.read() if source is not None else b""
                pieces = split_chunks(data)
                hashes = (
                    list(pool.map(blob_hash, pieces)) if len(pieces) > 1 else [blob_hash(p) for p in pieces]
                )
                for digest, piece in zip(hashes, pieces, strict=True):
                    if digest not in known:
                        known.add(digest)
                        uploads.append(pool.submit(self.store.put_blob, digest, piece))
                entries[member.name] = _file_entry(member.name, member.mode, len(data), item.mtime_ns, hashes)
                new_cache[member.name] = CachedFile(signature=_signature(item), chunks=hashes)
        return sum(upload.result() for upload in uploads)

    # -- restoring -----------------------------------------------------------------------------------

    async def restore(self, ref: SandboxRef, snapshot_id: str) -> RestoredSnapshot:
        """Write a snapshot into a fresh sandbox's workspace.

        The tree is checked and every blob fetched and verified before the first byte is
        written, so a crafted or corrupt snapshot leaves the sandbox untouched; a missing
        snapshot or blob raises SnapshotMissing (never an empty workspace).
        """
        started = time.monotonic()
        tree = await asyncio.to_thread(self.store.get_tree, snapshot_id)
        check_tree(tree)
        await self._write_tree(ref, tree)
        await self._prime_stat_cache(ref, tree, snapshot_id)
        restored = RestoredSnapshot(
            snapshot_id=snapshot_id,
            files=tree.count("file"),
            total_bytes=tree.total_bytes,
            seconds=round(time.monotonic() - started, 3),
        )
        log.info("snapshot.restored", sandbox_id=ref.sandbox_id, **restored.model_dump())
        return restored

    async def place(self, ref: SandboxRef, tree: SnapshotTree) -> None:
        """Write a tree's paths into a live workspace, beside what is there (handoffs); checked and
        verified first, like a restore."""
        check_tree(tree)
        await self._write_tree(ref, tree)

    async def _write_tree(self, ref: SandboxRef, tree: SnapshotTree) -> None:
        with tempfile.TemporaryDirectory(prefix="farline-restore-") as scratch:
            # small workspaces are staged in memory, big ones on the worker's disk
            spill = Path(scratch) if tree.total_bytes > IN_MEMORY_RESTORE_BYTES else None
            directories, *files, links, modes = await asyncio.to_thread(self._write_archives, tree, spill)
            await self._import(ref, directories)
            # the files' archives are independent of each other: importing them side by side
            # overlaps the disk's latency of creating each file
            limit = asyncio.Semaphore(IMPORT_CONCURRENCY)

            async def import_files(archive: bytes | Path) -> None:
                async with limit:
                    await self._import(ref, archive)

            await asyncio.gather(*(import_files(archive) for archive in files))
            await self._import(ref, links)
            await self._import(ref, modes)

    async def _import(self, ref: SandboxRef, archive: bytes | Path) -> None:
        await self.provider.import_paths(ref, archive if isinstance(archive, bytes) else archive.read_bytes())
        self.progress()

    def _write_archives(self, tree: SnapshotTree, spill: Path | None) -> list[bytes | Path]:
        """The tree as tar archives (in memory, or files under `spill`), every blob verified:
        the directories, then the files in batches, then the symlinks, then the directories' modes."""
        ordered = sorted(tree.entries, key=lambda entry: entry.path)
        dirs = [entry for entry in ordered if entry.kind == "dir"]
        files = [entry for entry in ordered if entry.kind == "file"]
        links = [entry for entry in ordered if entry.kind == "symlink"]
        archives: list[bytes | Path] = []

        def new_archive(members: Iterator[tuple[tarfile.TarInfo, bytes | None]]) -> None:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for info, data in members:
                    tar.addfile(info, io.BytesIO(data) if data is not None else None)
            if spill is None:
                archives.append(buffer.getvalue())
                return
            path = spill / f"{len(archives):05d}.tar"
            path.write_bytes(buffer.getbuffer())
            archives.append(path)

        # directories first, writable by their owner while their content goes in
        new_archive((_dir_info(entry, entry.mode | 0o700), None) for entry in dirs)
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            for batch in _batches(files, lambda entry: entry.size):
                contents = pool.map(self.store.file_content, batch)
                new_archive((_file_info(entry), data) for entry, data in zip(batch, contents, strict=True))
        # then links, then every directory's own mode (read-only ones last)
        new_archive((_link_info(entry), None) for entry in links)
        new_archive((_dir_info(entry, entry.mode), None) for entry in dirs)
        return archives

    async def _prime_stat_cache(self, ref: SandboxRef, tree: SnapshotTree, snapshot_id: str) -> None:
        """Record the restored files' stat data, so the next snapshot hashes only changes."""
        by_path = {entry.path: entry for entry in tree.entries if entry.kind == "file"}
        files: dict[str, CachedFile] = {}
        for item in await self.provider.scan_workspace(ref):
            entry = by_path.get(item.path)
            if entry is not None and item.kind == "file" and item.size == entry.size:
                files[item.path] = CachedFile(signature=_signature(item), chunks=entry.chunks)
        await asyncio.to_thread(
            self.store.save_stat_cache, ref.sandbox_id, StatCache(snapshot_id=snapshot_id, files=files)
        )


def _signature(item: WorkspaceStat) -> tuple[int, int, int, int]:
    return (item.size, item.mtime_ns, item.ctime_ns, item.inode)


def _file_entry(path: str, mode: int, size: int, mtime_ns: int, chunks: list[str]) -> TreeEntry:
    # every field given: pydantic validates that faster than it fills in a default
    return TreeEntry(
        path=path,
        kind="file",
        mode=mode & 0o777,
        size=size,
        mtime=mtime_ns // 10**9,
        chunks=chunks,
        target=None,
    )


def _batches(items: list[_Item], size_of: Callable[[_Item], int]) -> Iterator[list[_Item]]:
    batch: list[_Item] = []
    total = 0
    for item in items:
        if batch and (total + size_of(item) > BATCH_BYTES or len(batch) >= BATCH_FILES):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size_of(item)
    if batch:
        yield batch


def _without_orphans(entries: dict[str, TreeEntry]) -> list[TreeEntry]:
    """Drop entries whose parent is no longer a directory (the workspace changed mid-snapshot)."""
    kept: list[TreeEntry] = []
    for path in sorted(entries):
        parent, _, _ = path.rpartition("/")
        if parent and (entries.get(parent) is None or entries[parent].kind != "dir"):
            entries.pop(path)
            continue
        kept.append(entries[path])
    return kept


def _dir_info(entry: TreeEntry, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return info


def _file_info(entry: TreeEntry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mode = entry.mode
    info.size = entry.size
    info.mtime = entry.mtime
    return info


def _link_info(entry: TreeEntry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.type = tarfile.SYMTYPE
    info.linkname = entry.target or ""
    return info
