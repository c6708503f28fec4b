"""Snapshots of real bubblewrap sandboxes into a real store, and restores into fresh ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activities.snapshot_engine import SnapshotEngine
from harness.object_store import LocalDirectoryStore
from harness.snapshot_store import SnapshotMissing, SnapshotStore, blob_hash
from harness.snapshot_tree import CHUNK_SIZE, SnapshotInvalid, SnapshotTree, TreeEntry
from sandbox_providers.base import SandboxConfig, SandboxRef
from sandbox_providers.local import LocalProvider
from tests.sandbox_support import sh

Shape = dict[str, tuple[str, int, str | bytes | None]]


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(LocalDirectoryStore(tmp_path / "snapshots"))


@pytest.fixture
def engine(store: SnapshotStore, provider: LocalProvider) -> SnapshotEngine:
    return SnapshotEngine(store, provider)


async def shape_of(provider: LocalProvider, ref: SandboxRef) -> Shape:
    """Every path of a workspace: kind, mode and content (files) or target (links)."""
    shape: Shape = {}
    for item in await provider.scan_workspace(ref):
        if item.kind == "file":
            shape[item.path] = ("file", item.mode, await provider.read_file(ref, item.path))
        elif item.kind == "symlink":
            shape[item.path] = ("symlink", 0, item.link_target)
        else:
            shape[item.path] = (item.kind, item.mode, None)
    return shape


async def build_project(provider: LocalProvider, ref: SandboxRef) -> None:
    await provider.write_file(ref, "src/app.py", b"print('hello')\n")
    await provider.write_file(ref, "src/tool.sh", b"#!/bin/sh\necho tool ran\n", mode=0o755)
    await provider.write_file(ref, "data/blob.bin", os.urandom(3 * CHUNK_SIZE + 12345))
    await provider.write_file(ref, "empty.txt", b"")
    state, output = await sh(
        provider,
        ref,
        "mkdir -p empty/dir && ln -s src/app.py link && ln -s ../../etc/hostname up "
        "&& python3 -m venv --without-pip venv && chmod 700 data",
    )
    assert state.exit_code == 0, output


async def test_round_trip_into_a_fresh_sandbox(provider: LocalProvider, engine: SnapshotEngine) -> None:
    source = await provider.create("source", SandboxConfig())
    await build_project(provider, source)
    taken = await engine.take(source)
    assert taken.changed_files == taken.tree.count("file") > 5
    assert taken.skipped_count == 0

    target = await provider.create("target", SandboxConfig())
    restored = await engine.restore(target, taken.snapshot_id)
    assert restored.files == taken.tree.count("file")
    assert await shape_of(provider, target) == await shape_of(provider, source)

    # the venv's absolute links came back as they were, and work in the new sandbox
    python = next(e for e in taken.tree.entries if e.path == "venv/bin/python3")
    assert python.kind == "symlink" and python.target.startswith("/")
    state, output = await sh(provider, target, "venv/bin/python -c 'print(6*7)' && src/tool.sh && cat link")
    assert state.exit_code == 0 and output == "42\ntool ran\nprint('hello')\n"


async def test_incremental_snapshots_hash_and_upload_only_changes(
    provider: LocalProvider, engine: SnapshotEngine
) -> None:
    ref = await provider.create("inc", SandboxConfig())
    await build_project(provider, ref)
    first = await engine.take(ref)

    same = await engine.take(ref)
    assert same.snapshot_id == first.snapshot_id
    assert same.changed_files == 0 and same.uploaded_bytes == 0

    await provider.write_file(ref, "src/app.py", b"print('hello again')\n")
    small = await engine.take(ref)
    assert small.snapshot_id != first.snapshot_id
    assert small.changed_files == 1 and 0 < small.uploaded_bytes < 200

    # one byte changed in the middle of a big file: one chunk uploaded, not the file
    blob = bytearray(await provider.read_file(ref, "data/blob.bin"))
    blob[CHUNK_SIZE + 10] ^= 0xFF
    await provider.write_file(ref, "data/blob.bin", bytes(blob))
    big = await engine.take(ref)
    assert big.changed_files == 1
    assert CHUNK_SIZE // 2 < big.uploaded_bytes < CHUNK_SIZE * 1.1
    old = next(e for e in small.tree.entries if e.path == "data/blob.bin").chunks
    new = next(e for e in big.tree.entries if e.path == "data/blob.bin").chunks
    assert [a == b for a, b in zip(old, new, strict=True)] == [True, False, True, True]

    await sh(provider, ref, "rm -r empty && rm link")
    removed = await engine.take(ref)
    assert not {"empty", "empty/dir", "link"} & {e.path for e in removed.tree.entries}


async def test_forks_share_blobs(provider: LocalProvider, engine: SnapshotEngine) -> None:
    one = await provider.create("one", SandboxConfig())
    await build_project(provider, one)
    first = await engine.take(one)
    fork = await provider.create("fork", SandboxConfig())
    await engine.restore(fork, first.snapshot_id)
    await provider.write_file(fork, "fork.txt", b"mine\n")
    forked = await engine.take(fork)
    # the restore primed the fork's stat data: only the new file was read and uploaded
    assert forked.changed_files == 1 and forked.uploaded_bytes < 100


async def test_special_files_are_skipped_and_named(provider: LocalProvider, engine: SnapshotEngine) -> None:
    ref = await provider.create("fifo", SandboxConfig())
    state, _ = await sh(provider, ref, "mkfifo pipe && echo x > file")
    assert state.exit_code == 0
    taken = await engine.take(ref)
    assert taken.skipped_count == 1 and "pipe" in taken.skipped[0]
    assert {e.path for e in taken.tree.entries} == {"file"}


def crafted(store: SnapshotStore, *entries: TreeEntry) -> str:
    """Store a tree as an attacker would, without the snapshot engine's checks (and the blob X)."""
    store.put_blob(X, b"x")
    return store.put_tree(SnapshotTree(entries=list(entries)))


X = blob_hash(b"x")


def file(path: str, chunks: list[str] | None = None) -> TreeEntry:
    return TreeEntry(path=path, kind="file", mode=0o644, size=1, chunks=[X] if chunks is None else chunks)


@pytest.mark.parametrize(
    "entries",
    [
        [file("ok.txt"), file("../evil")],
        [file("/etc/farline-evil")],
        [file("a/../../evil")],
        # a link, then a file written through it
        [TreeEntry(path="etc", kind="symlink", mode=0o777, target="/etc"), file("etc/farline-evil")],
        # a chain of links that ends outside the workspace
        [
            TreeEntry(path="a", kind="symlink", mode=0o777, target="b"),
            TreeEntry(path="b", kind="symlink", mode=0o777, target="../../../etc"),
            file("a/farline-evil"),
        ],
        [file("missing-parent/x")],
        [file("twice"), file("twice")],
    ],
)
async def test_crafted_snapshots_are_refused_and_the_sandbox_untouched(
    provider: LocalProvider, engine: SnapshotEngine, store: SnapshotStore, entries: list[TreeEntry]
) -> None:
    snapshot_id = crafted(store, *entries)
    target = await provider.create("victim", SandboxConfig())
    with pytest.raises(SnapshotInvalid):
        await engine.restore(target, snapshot_id)
    assert await provider.scan_workspace(target) == []
    assert not Path("/etc/farline-evil").exists()


async def test_a_corrupt_or_missing_blob_is_a_loud_error(
    provider: LocalProvider, engine: SnapshotEngine, store: SnapshotStore
) -> None:
    target = await provider.create("victim", SandboxConfig())
    wrong = crafted(store, file("first.txt"), file("wrong.txt", [blob_hash(b"y")]))
    store.objects.put(f"blobs/{blob_hash(b'y')[:2]}/{blob_hash(b'y')}", b"not zstd at all")
    with pytest.raises(SnapshotInvalid, match="corrupt"):
        await engine.restore(target, wrong)
    # a blob whose content is well-formed but not what its name says
    swapped = blob_hash(b"z")
    store.put_blob(swapped, b"x")  # stored under z's name, holding x
    with pytest.raises(SnapshotInvalid, match="hash differs"):
        await engine.restore(target, crafted(store, file("first.txt"), file("swapped.txt", [swapped])))
    with pytest.raises(SnapshotMissing):
        await engine.restore(target, crafted(store, file("gone.txt", [blob_hash(b"never stored")])))
    with pytest.raises(SnapshotMissing):
        await engine.restore(target, "0" * 64)
    assert await provider.scan_workspace(target) == []
