"""Workspace snapshots: full, incremental and restore, against tar.gz and a plain disk copy.

One workspace of 5,000 files and 100 MiB (text files of varied text spread over
about 50 directories, plus five random 10 MiB binaries; seeded, so every run
builds the same bytes) in a local bubblewrap sandbox, snapshotted by
`SnapshotEngine` into a local-directory store. Measured:

- full_snapshot: the first snapshot into an empty store (a fresh store each repeat);
- incremental_snapshot: the next one after rewriting one small text file;
- incremental_big_file: the next one after changing a few bytes in the middle of one
  binary (its one changed 1 MiB chunk is uploaded);
- restore: the latest snapshot into a fresh, empty sandbox.

Baselines, measured in the same run on the same (page-cached) workspace:

- tar_gz: Python `tarfile` mode "w:gz" at its default level (9) of the whole workspace,
  what the OpenAI Agents SDK does at every stop; tar_czf: `tar -czf` (gzip's level 6);
- untar_gz / untar_xzf: extracting that archive into an empty directory, with `tarfile`
  and with `tar -xzf`;
- disk_copy: `cp -a` of the workspace into an empty directory (the disk's speed).

Snapshot cases are compared with tar_gz and tar_czf, restore with untar_gz, untar_xzf
and disk_copy: "speedup" is baseline seconds over case seconds (above 1: faster than
the baseline). Every time is the median of --repeat runs; the incremental repeats each
change a different file. Nothing is fsynced, by the engine or the baselines. Prints
one JSON line per measurement.

    python bench/snapshot.py [--files 5000] [--megabytes 100] [--big-files 5] [--repeat 3]

`--turns N` (what the smoke test passes) shrinks the workspace to a few megabytes
and repeats N times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from activities.snapshot_engine import SnapshotEngine, TakenSnapshot
from harness.logging import configure_logging
from harness.object_store import LocalDirectoryStore
from harness.snapshot_store import SnapshotStore
from sandbox_providers.base import SandboxConfig, SandboxRef
from sandbox_providers.local import LocalProvider

MIB = 1024 * 1024
SEED = 20240601
FILES_PER_DIR = 100
SMALL_EDIT_BYTES = 4096
BIG_EDIT_BYTES = 16


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "snapshot", **fields}), flush=True)


@dataclass
class Workload:
    files: int
    total_bytes: int
    big_files: int
    big_file_bytes: int
    repeat: int


@dataclass
class Workspace:
    """What was written: paths relative to the workspace root."""

    root: Path
    text_files: list[str]
    big_files: list[str]
    files: int
    total_bytes: int


# -- content (not measured) --------------------------------------------------------------------------

_VOCABULARY = (
    "def class return import from self value result error config workspace snapshot chunk "
    "store tree entry path size mode hash upload restore sandbox provider process output "
    "if else for while with try except raise yield async await lambda None True False "
    "data items list dict set tuple int str bytes float len range print open read write"
)


def _line_pool(rng: random.Random, count: int) -> list[str]:
    """Lines that look a bit like code and prose, so gzip works about as hard as on a repository."""
    words_known = _VOCABULARY.split()
    pool = []
    for _ in range(count):
        indent = " " * (4 * rng.randrange(4))
        words = rng.choices(words_known, k=rng.randrange(3, 14))
        words[rng.randrange(len(words))] += f"_{rng.randrange(100_000)}"
        pool.append(indent + " ".join(words) + "\n")
    return pool


def build_workspace(root: Path, workload: Workload) -> Workspace:
    rng = random.Random(SEED)
    text_count = workload.files - workload.big_files
    text_bytes = workload.total_bytes - workload.big_files * workload.big_file_bytes
    if text_count < 1 or text_bytes < text_count:
        raise SystemExit(
            f"{workload.files} files and {workload.total_bytes} bytes leave no room for text files "
            f"next to {workload.big_files} binaries of {workload.big_file_bytes} bytes"
        )
    pool = _line_pool(rng, 20_000)
    dirs = max(1, text_count // FILES_PER_DIR)
    average = text_bytes // text_count
    text_files: list[str] = []
    written = 0
    for index in range(text_count):
        # sizes vary around the average; the last file takes what is left
        remaining = text_count - index
        if remaining == 1:
            size = text_bytes - written
        else:
            size = max(64, min(int(average * rng.uniform(0.5, 1.5)), text_bytes - written - (remaining - 1)))
        rel = f"pkg{index % dirs // 10:02d}/mod{index % dirs:03d}/file_{index:05d}.py"
        text_files.append(rel)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_text(rng, pool, index, size))
        written += size
    big_files = []
    for index in range(workload.big_files):
        rel = f"assets/blob_{index}.bin"
        big_files.append(rel)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rng.randbytes(workload.big_file_bytes))
    return Workspace(
        root=root,
        text_files=text_files,
        big_files=big_files,
        files=workload.files,
        total_bytes=written + workload.big_files * workload.big_file_bytes,
    )


def _text(rng: random.Random, pool: list[str], index: int, size: int) -> bytes:
    """`size` bytes of text, unique to `index` (no two files share content)."""
    parts = [f"# file {index} {rng.getrandbits(64):016x}\n"]
    length = len(parts[0])
    while length < size:
        line = rng.choice(pool)
        parts.append(line)
        length += len(line)
    return "".join(parts).encode()[:size]


def chown_tree(root: Path, uid: int | None) -> None:
    if uid is not None:
        subprocess.run(["chown", "-R", f"{uid}:{uid}", str(root)], check=True)


def rewrite_text_file(workspace: Workspace, repeat: int) -> None:
    """Rewrite one small text file in place (owner kept), a different one each repeat."""
    path = workspace.root / workspace.text_files[(repeat * 997 + 13) % len(workspace.text_files)]
    text = f"# edited in repeat {repeat}\n" + "".join(_line_pool(random.Random(repeat), 200))
    path.write_bytes(text.encode()[:SMALL_EDIT_BYTES])


def poke_big_file(workspace: Workspace, repeat: int) -> None:
    """Overwrite a few bytes in the middle of one binary, a different one each repeat."""
    path = workspace.root / workspace.big_files[repeat % len(workspace.big_files)]
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2 + repeat * BIG_EDIT_BYTES)
        handle.write(random.Random(repeat).randbytes(BIG_EDIT_BYTES))


# -- measuring ---------------------------------------------------------------------------------------


def disk_bytes(root: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of every file under `root`."""
    apparent = allocated = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def median_of(repeat: int, before: Callable[[int], None], run: Callable[[], object]) -> float:
    times = []
    for index in range(repeat):
        before(index)
        times.append(timed(run))
    return statistics.median(times)


def fresh_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir()


def baselines(workspace: Workspace, scratch: Path, repeat: int) -> tuple[dict[str, float], int]:
    """Median seconds of each baseline, and the size of the tar.gz."""
    archive = scratch / "workspace.tar.gz"
    out = scratch / "extracted"
    have_tar = shutil.which("tar") is not None

    def python_tar() -> None:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(workspace.root, arcname=".")

    def python_untar() -> None:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(out, filter="fully_trusted")

    seconds: dict[str, float] = {}
    seconds["tar_gz"] = median_of(repeat, lambda _: archive.unlink(missing_ok=True), python_tar)
    archive_bytes = archive.stat().st_size
    seconds["untar_gz"] = median_of(repeat, lambda _: fresh_dir(out), python_untar)
    if have_tar:
        cli_archive = scratch / "workspace-cli.tar.gz"
        seconds["tar_czf"] = median_of(
            repeat,
            lambda _: cli_archive.unlink(missing_ok=True),
            lambda: subprocess.run(
                ["tar", "-czf", str(cli_archive), "-C", str(workspace.root), "."], check=True
            ),
        )
        seconds["untar_xzf"] = median_of(
            repeat,
            lambda _: fresh_dir(out),
            lambda: subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)], check=True),
        )
        cli_archive.unlink()
    copy = scratch / "copy"
    seconds["disk_copy"] = median_of(
        repeat,
        lambda _: shutil.rmtree(copy, ignore_errors=True),
        lambda: subprocess.run(["cp", "-a", str(workspace.root), str(copy)], check=True),
    )
    shutil.rmtree(copy)
    shutil.rmtree(out, ignore_errors=True)
    archive.unlink()
    return seconds, archive_bytes


async def take_median(
    engine: SnapshotEngine, ref: SandboxRef, repeat: int, change: Callable[[int], None], changed: int
) -> tuple[float, TakenSnapshot, list[int]]:
    times, uploads = [], []
    taken: TakenSnapshot | None = None
    for index in range(repeat):
        change(index)
        started = time.perf_counter()
        taken = await engine.take(ref)
        times.append(time.perf_counter() - started)
        uploads.append(taken.uploaded_bytes)
        if taken.changed_files != changed:
            raise RuntimeError(f"expected {changed} changed file(s), the engine saw {taken.changed_files}")
    assert taken is not None
    return statistics.median(times), taken, uploads


def report(
    case: str,
    seconds: float,
    against: list[str],
    base: dict[str, float],
    workspace: Workspace,
    **extra: object,
) -> None:
    for name in against:
        if name not in base:
            continue
        emit(
            case=case,
            seconds=round(seconds, 4),
            baseline=name,
            baseline_seconds=round(base[name], 4),
            speedup=round(base[name] / seconds, 2),
            files=workspace.files,
            bytes=workspace.total_bytes,
            **extra,
        )


async def run(workload: Workload, scratch: Path) -> None:
    provider = LocalProvider(scratch / "sandboxes")
    owner = provider.sandbox_uid if os.geteuid() == 0 else None
    source = await provider.create("bench-source", SandboxConfig())
    try:
        workspace = build_workspace(scratch / "sandboxes" / "bench-source" / "workspace", workload)
        chown_tree(workspace.root, owner)
        emit(
            case="workspace",
            files=workspace.files,
            bytes=workspace.total_bytes,
            text_files=len(workspace.text_files),
            big_files=len(workspace.big_files),
            big_file_bytes=workload.big_file_bytes,
            repeat=workload.repeat,
        )
        base, archive_bytes = baselines(workspace, scratch, workload.repeat)
        for name, value in base.items():
            emit(case="baseline", baseline=name, seconds=round(value, 4), files=workspace.files)

        # full snapshots, each into an empty store; the last store is kept for the rest
        full_times: list[float] = []
        engine: SnapshotEngine | None = None
        full: TakenSnapshot | None = None
        for index in range(workload.repeat):
            store_dir = scratch / f"store-{index}"
            if index:
                shutil.rmtree(scratch / f"store-{index - 1}")
            engine = SnapshotEngine(SnapshotStore(LocalDirectoryStore(store_dir)), provider)
            started = time.perf_counter()
            full = await engine.take(source)
            full_times.append(time.perf_counter() - started)
        assert engine is not None and full is not None
        store_dir = scratch / f"store-{workload.repeat - 1}"
        full_s = statistics.median(full_times)
        report(
            "full_snapshot",
            full_s,
            ["tar_gz", "tar_czf"],
            base,
            workspace,
            changed_files=full.changed_files,
            uploaded_bytes=full.uploaded_bytes,
        )
        store_apparent, store_allocated = disk_bytes(store_dir)
        emit(
            case="store_size",
            store_bytes=store_apparent,
            store_disk_bytes=store_allocated,
            tar_gz_bytes=archive_bytes,
            store_over_tar_gz=round(store_apparent / archive_bytes, 3),
            workspace_bytes=workspace.total_bytes,
        )

        small_s, small, small_uploads = await take_median(
            engine, source, workload.repeat, lambda i: rewrite_text_file(workspace, i), 1
        )
        report(
            "incremental_snapshot",
            small_s,
            ["tar_gz", "tar_czf"],
            base,
            workspace,
            changed_files=small.changed_files,
            uploaded_bytes=statistics.median(small_uploads),
        )
        big_s, latest, big_uploads = await take_median(
            engine, source, workload.repeat, lambda i: poke_big_file(workspace, i), 1
        )
        report(
            "incremental_big_file",
            big_s,
            ["tar_gz", "tar_czf"],
            base,
            workspace,
            changed_files=latest.changed_files,
            uploaded_bytes=statistics.median(big_uploads),
        )

        restore_times = []
        for index in range(workload.repeat):
            target = await provider.create(f"bench-restore-{index}", SandboxConfig())
            try:
                started = time.perf_counter()
                await engine.restore(target, latest.snapshot_id)
                restore_times.append(time.perf_counter() - started)
                if index == 0:
                    check_restored(workspace, scratch / "sandboxes" / target.sandbox_id / "workspace")
            finally:
                await provider.destroy(target)
        report(
            "restore",
            statistics.median(restore_times),
            ["untar_gz", "untar_xzf", "disk_copy"],
            base,
            workspace,
        )
    finally:
        await provider.destroy(source)


def check_restored(workspace: Workspace, restored: Path) -> None:
    """The restore brought back every file with its content (checked on a sample; not timed)."""
    expected, got = file_sizes(workspace.root), file_sizes(restored)
    if got != expected:
        raise RuntimeError(f"restored {len(got)} files of {sum(got.values())} bytes, not {len(expected)}")
    sample = [*workspace.text_files[:: max(1, len(workspace.text_files) // 50)], *workspace.big_files]
    for rel in sample:
        if (restored / rel).read_bytes() != (workspace.root / rel).read_bytes():
            raise RuntimeError(f"restored {rel} differs from the workspace")


def file_sizes(root: Path) -> dict[str, int]:
    sizes = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            sizes[os.path.relpath(path, root)] = os.lstat(path).st_size
    return sizes


async def main() -> None:
    configure_logging("console", level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--megabytes", type=int, default=100, help="workspace size in MiB")
    parser.add_argument("--big-files", type=int, default=5)
    parser.add_argument("--big-file-megabytes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median is reported")
    parser.add_argument(
        "--turns", type=int, default=None, help="smoke test: a tiny workspace, repeated TURNS times"
    )
    args = parser.parse_args()
    workload = Workload(
        files=args.files,
        total_bytes=args.megabytes * MIB,
        big_files=args.big_files,
        big_file_bytes=args.big_file_megabytes * MIB,
        repeat=max(1, args.repeat),
    )
    if args.turns is not None:
        workload = Workload(files=60, total_bytes=3 * MIB, big_files=1, big_file_bytes=MIB, repeat=args.turns)
    with tempfile.TemporaryDirectory(prefix="farline-bench-snapshot-") as scratch:
        await run(workload, Path(scratch))


if __name__ == "__main__":
    asyncio.run(main())
