"""Sandbox providers side by side: local (bubblewrap) against docker (on podman), in one run.

Each provider, through the provider protocol only, the same workload:

- create_to_first_command: create a sandbox, run `echo hi`, have its output (median,
  min and max of --repeat; each in a new sandbox, destroyed untimed after);
- process_state: one `process_state` of a running process (`sleep`), median and p90
  of --exec-repeat calls;
- exec_true: `true` from its start to its exit code (start_process, then
  process_state every 5 ms while it runs), median and p90 of --exec-repeat runs;
- full_snapshot: `SnapshotEngine.take` of a --workspace-mb workspace (files of
  100 kB of seeded random bytes, ten per MB, in nested directories, plus empty
  ones) into an empty local-directory snapshot store (a fresh one each repeat);
- incremental_snapshot: the next snapshot after rewriting one file (a different one
  each repeat);
- restore: the latest snapshot into a fresh, empty sandbox (created untimed).

Snapshot times are medians of --repeat, with the bytes uploaded (restore: restored).
Every provider first runs one create_to_first_command unreported, so that no case
pays for the first imports, connection or bubblewrap check.

docker runs on podman's Docker-API service, started by the bench on a socket in a
temporary directory with its own storage and deploy/podman/containers.conf, on the
tests' image made of the host's busybox, bash, python and GNU tools
(tests/podman_service.py), as uid 1000; without podman, runc or busybox it is
skipped with the reason. Its setup (service and image) is printed as engine_setup.

Prints one JSON line per measurement, then one line of docker/local ratios of the
medians (local is the baseline). Every sandbox, container, the service and the
temporary directory are removed at the end, also on Ctrl-C or SIGTERM.

    python bench/providers.py [--providers local,docker] [--repeat 5] [--exec-repeat 30] [--workspace-mb 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import math
import random
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from activities.snapshot_engine import SnapshotEngine, TakenSnapshot
from harness.logging import configure_logging
from harness.object_store import LocalDirectoryStore
from harness.snapshot_store import SnapshotStore
from sandbox_providers.base import (
    ProcessSpec,
    ProcessState,
    SandboxConfig,
    SandboxProvider,
    SandboxRef,
    WorkspaceStat,
)
from sandbox_providers.docker import DockerProvider
from sandbox_providers.local import LocalProvider

REPO = Path(__file__).resolve().parent.parent
PROVIDERS = ("local", "docker")
SEED = 20240601
FILE_BYTES = 100_000
FILES_PER_MB = 1_000_000 // FILE_BYTES
PACKAGES = 10
EMPTY_DIRS = 5
POLL_S = 0.005
DOCKER_USER = "1000"  # the test image's `sandbox` user


def emit(**fields: object) -> dict[str, Any]:
    line = {"bench": "providers", **fields}
    print(json.dumps(line), flush=True)
    return line


class DockerSkipped(Exception):
    """The docker provider cannot run on this machine; the message says why."""


# -- the workspace (not measured) ---------------------------------------------------------------------


@dataclass
class Workspace:
    archive: bytes
    files: list[str]
    total_bytes: int


def build_workspace(megabytes: int) -> Workspace:
    """The workspace as a tar archive (imported into each provider's sandbox the same way)."""
    rng = random.Random(SEED)
    count = max(1, megabytes * FILES_PER_MB)
    files = [
        f"src/pkg_{index % PACKAGES:02d}/{'data/' if index % 2 else ''}file_{index:04d}.bin"
        for index in range(count)
    ]
    packages = [f"src/pkg_{index:02d}" for index in range(PACKAGES)]
    dirs = ["src", *packages, *(f"{package}/data" for package in packages), "build"]
    dirs += [f"build/cache_{index}" for index in range(EMPTY_DIRS)]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = FILE_BYTES, 0o644
            tar.addfile(info, io.BytesIO(rng.randbytes(FILE_BYTES)))
    return Workspace(archive=buffer.getvalue(), files=files, total_bytes=count * FILE_BYTES)


# -- sandboxes ------------------------------------------------------------------------------------------


class Sandboxes:
    """The sandboxes one provider's cases make, each destroyed after use and all of them at the end."""

    def __init__(self, provider: SandboxProvider) -> None:
        self.provider = provider
        self.live: dict[str, SandboxRef] = {}
        self.made = 0

    async def create(self, what: str) -> SandboxRef:
        self.made += 1
        sandbox_id = f"bench-{what}-{self.made}"
        # known before it exists: an interrupted create is cleaned up too
        self.live[sandbox_id] = SandboxRef(provider=self.provider.name, sandbox_id=sandbox_id)
        ref = await self.provider.create(sandbox_id, SandboxConfig())
        self.live[sandbox_id] = ref
        return ref

    async def destroy(self, ref: SandboxRef) -> None:
        await self.provider.destroy(ref)
        self.live.pop(ref.sandbox_id, None)

    async def destroy_all(self) -> None:
        for ref in list(self.live.values()):
            try:
                await self.destroy(ref)
            except Exception as error:  # keep removing the others
                print(f"could not destroy {ref.sandbox_id}: {error}", file=sys.stderr)


async def until_exit(provider: SandboxProvider, ref: SandboxRef, state: ProcessState) -> ProcessState:
    while state.running:
        await asyncio.sleep(POLL_S)
        state = await provider.process_state(ref, state.process_id)
    return state


# -- the cases ------------------------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def p90(values: list[float]) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


async def create_to_first_command(sandboxes: Sandboxes) -> float:
    provider = sandboxes.provider
    started = time.perf_counter()
    ref = await sandboxes.create("first")
    state = await provider.start_process(ref, ProcessSpec(process_id="first", argv=["echo", "hi"]))
    state = await until_exit(provider, ref, state)
    chunk = await provider.read_output(ref, "first", 0, 1024)
    seconds = time.perf_counter() - started
    if state.exit_code != 0 or chunk.data != b"hi\n":
        raise RuntimeError(
            f"`echo hi` in {provider.name}: exit code {state.exit_code}, output {chunk.data!r}"
        )
    await sandboxes.destroy(ref)
    return seconds


async def process_state_times(sandboxes: Sandboxes, ref: SandboxRef, repeat: int) -> list[float]:
    provider = sandboxes.provider
    state = await provider.start_process(ref, ProcessSpec(process_id="sleeper", argv=["sleep", "3600"]))
    times = []
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            state = await provider.process_state(ref, "sleeper")
            times.append(time.perf_counter() - started)
            if not state.running:
                raise RuntimeError(f"`sleep 3600` in {provider.name} ended: {state}")
    finally:
        await provider.kill_process(ref, "sleeper")
    return times


async def exec_true_times(sandboxes: Sandboxes, ref: SandboxRef, repeat: int) -> list[float]:
    provider = sandboxes.provider
    times = []
    for index in range(repeat):
        started = time.perf_counter()
        state = await provider.start_process(ref, ProcessSpec(process_id=f"true-{index}", argv=["true"]))
        state = await until_exit(provider, ref, state)
        times.append(time.perf_counter() - started)
        if state.exit_code != 0:
            raise RuntimeError(f"`true` in {provider.name} exited with {state.exit_code}")
    return times


async def snapshot_cases(
    sandboxes: Sandboxes, workspace: Workspace, scratch: Path, repeat: int
) -> list[dict[str, Any]]:
    provider = sandboxes.provider
    source = await sandboxes.create("source")
    await provider.import_paths(source, workspace.archive)
    count = len(workspace.files)
    lines = []

    # each full snapshot into an empty store; the last one's store is kept for the rest
    full_times, fulls = [], []
    for index in range(repeat):
        engine = SnapshotEngine(SnapshotStore(LocalDirectoryStore(scratch / f"store-{index}")), provider)
        started = time.perf_counter()
        fulls.append(await engine.take(source))
        full_times.append(time.perf_counter() - started)
    check_changed(fulls, count)
    lines.append(
        emit(
            provider=provider.name,
            case="full_snapshot",
            repeat=repeat,
            seconds=round(statistics.median(full_times), 4),
            files=count,
            workspace_bytes=workspace.total_bytes,
            changed_files=count,
            uploaded_bytes=statistics.median(taken.uploaded_bytes for taken in fulls),
        )
    )
    rng = random.Random(SEED + 1)
    changed: dict[str, bytes] = {}
    incremental_times, incrementals = [], []
    for index in range(repeat):
        path = workspace.files[(index * 37 + 11) % count]
        changed[path] = rng.randbytes(FILE_BYTES)
        await provider.write_file(source, path, changed[path])
        started = time.perf_counter()
        incrementals.append(await engine.take(source))
        incremental_times.append(time.perf_counter() - started)
    check_changed(incrementals, 1)
    lines.append(
        emit(
            provider=provider.name,
            case="incremental_snapshot",
            repeat=repeat,
            seconds=round(statistics.median(incremental_times), 4),
            changed_files=1,
            uploaded_bytes=statistics.median(taken.uploaded_bytes for taken in incrementals),
        )
    )
    latest = incrementals[-1].snapshot_id
    restore_times = []
    restored_bytes = 0
    for index in range(repeat):
        target = await sandboxes.create("restore")
        started = time.perf_counter()
        restored = await engine.restore(target, latest)
        restore_times.append(time.perf_counter() - started)
        restored_bytes = restored.total_bytes
        if index == 0:
            await check_restored(provider, source, target, changed)
        await sandboxes.destroy(target)
    lines.append(
        emit(
            provider=provider.name,
            case="restore",
            repeat=repeat,
            seconds=round(statistics.median(restore_times), 4),
            files=count,
            restored_bytes=restored_bytes,
        )
    )
    await sandboxes.destroy(source)
    return lines


def check_changed(taken: list[TakenSnapshot], expected: int) -> None:
    seen = {snapshot.changed_files for snapshot in taken}
    if seen != {expected}:
        raise RuntimeError(f"expected {expected} changed file(s) per snapshot, the engine saw {seen}")


def shape(scan: list[WorkspaceStat]) -> set[tuple[str, str, int]]:
    return {(item.path, item.kind, item.size if item.kind == "file" else 0) for item in scan}


async def check_restored(
    provider: SandboxProvider, source: SandboxRef, target: SandboxRef, changed: dict[str, bytes]
) -> None:
    """The restore brought back every path with its size, and the changed files' new content."""
    expected = shape(await provider.scan_workspace(source))
    got = shape(await provider.scan_workspace(target))
    if got != expected:
        raise RuntimeError(f"the restored workspace differs from the source: {sorted(got ^ expected)[:5]}")
    for path, data in changed.items():
        if await provider.read_file(target, path) != data:
            raise RuntimeError(f"restored {path} differs from the source")


async def measure(
    provider: SandboxProvider, workspace: Workspace, scratch: Path, repeat: int, exec_repeat: int
) -> list[dict[str, Any]]:
    """Every case on one provider, its lines printed as they come."""
    name = provider.name
    sandboxes = Sandboxes(provider)
    # SIGTERM as Ctrl-C: the task is cancelled, the sandboxes destroyed
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    lines = []
    try:
        await create_to_first_command(sandboxes)  # warm-up, unreported
        firsts = [await create_to_first_command(sandboxes) for _ in range(repeat)]
        lines.append(
            emit(
                provider=name,
                case="create_to_first_command",
                repeat=repeat,
                median_ms=ms(statistics.median(firsts)),
                min_ms=ms(min(firsts)),
                max_ms=ms(max(firsts)),
            )
        )
        ref = await sandboxes.create("exec")
        for case, times in (
            ("process_state", await process_state_times(sandboxes, ref, exec_repeat)),
            ("exec_true", await exec_true_times(sandboxes, ref, exec_repeat)),
        ):
            lines.append(
                emit(
                    provider=name,
                    case=case,
                    repeat=exec_repeat,
                    median_ms=ms(statistics.median(times)),
                    p90_ms=ms(p90(times)),
                )
            )
        await sandboxes.destroy(ref)
        lines += await snapshot_cases(sandboxes, workspace, scratch / f"{name}-stores", repeat)
    finally:
        await sandboxes.destroy_all()
    return lines


# -- the docker engine: podman's API service, as the tests start it ---------------------------------


def podman_service_module() -> ModuleType:
    """tests/podman_service.py (its functions need no pytest fixture), imported from the checkout."""
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    from tests import podman_service

    return podman_service


def start_podman(root: Path, cleanups: contextlib.ExitStack) -> tuple[str, str, str]:
    """podman's API service with its own storage under `root`, and the test image with GNU tools in
    it: (the service's URL, the image, podman's version). Its stop is pushed on `cleanups` first."""
    import pytest

    service_module = podman_service_module()
    try:
        podman = service_module.podman_binary()
    except pytest.skip.Exception as skip:  # the tests' own reasons: no podman, runc or busybox
        raise DockerSkipped(str(skip)) from None
    version = subprocess.run([podman, "--version"], capture_output=True, text=True, check=False).stdout
    root.mkdir()
    service = service_module.PodmanProcess(podman, root)
    cleanups.callback(service.stop)
    service.start()
    problem = service.wait_until_up()
    if problem is not None:
        raise RuntimeError(f"the podman service cannot start: {problem}")
    rootfs = root / "rootfs.tar"
    try:
        service_module.build_rootfs(rootfs, gnu=True)
    except pytest.skip.Exception as skip:  # a host program the image is made of is missing
        raise DockerSkipped(str(skip)) from None
    service.import_image(rootfs, service_module.GNU_IMAGE)
    rootfs.unlink()
    return service.base_url, service_module.GNU_IMAGE, version.strip()


# -- running it all -------------------------------------------------------------------------------------


def ratio_line(lines: list[dict[str, Any]]) -> dict[str, Any] | None:
    by = {(line["provider"], line["case"]): line for line in lines if "provider" in line}
    ratios = {}
    for (provider, case), line in by.items():
        baseline = by.get(("local", case))
        if provider != "docker" or baseline is None:
            continue
        metric = "median_ms" if "median_ms" in line else "seconds"
        ratios[case] = round(line[metric] / baseline[metric], 2)
    if not ratios:
        return None
    return emit(case="ratio", provider="docker", baseline="local", of="medians", ratios=ratios)


def raise_interrupt(_signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt


def run_measure(
    provider: SandboxProvider, workspace: Workspace, scratch: Path, repeat: int, exec_repeat: int
) -> list[dict[str, Any]]:
    lines = asyncio.run(measure(provider, workspace, scratch, repeat, exec_repeat))
    # closing the loop put SIGTERM back to its default
    signal.signal(signal.SIGTERM, raise_interrupt)
    return lines


def main() -> int:
    configure_logging("console", level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", default="local,docker", help="comma-separated, of: local, docker")
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs of create_to_first_command and of each snapshot case"
    )
    parser.add_argument("--exec-repeat", type=int, default=30, help="runs of process_state and exec_true")
    parser.add_argument("--workspace-mb", type=int, default=20, help="snapshot workspace size (100 kB files)")
    parser.add_argument(
        "--turns",
        type=int,
        default=None,
        help="a smoke run (as the other benchmarks take it): N of everything, 1 MB",
    )
    args = parser.parse_args()
    if args.turns is not None:
        args.repeat = args.exec_repeat = args.turns
        args.workspace_mb = 1
    wanted = {name.strip() for name in args.providers.split(",") if name.strip()}
    if not wanted or wanted - set(PROVIDERS):
        parser.error(f"--providers: one or more of {', '.join(PROVIDERS)}, comma-separated")
    repeat, exec_repeat = max(1, args.repeat), max(1, args.exec_repeat)
    signal.signal(signal.SIGTERM, raise_interrupt)
    workspace = build_workspace(args.workspace_mb)
    lines: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="farline-bench-providers-") as scratch_dir,
        contextlib.ExitStack() as cleanups,
    ):
        # the cleanups (the podman service's stop) run before the directory goes
        scratch = Path(scratch_dir)
        try:
            if "local" in wanted:
                local = LocalProvider(scratch / "local-sandboxes")
                lines += run_measure(local, workspace, scratch, repeat, exec_repeat)
            if "docker" in wanted:
                started = time.perf_counter()
                try:
                    # in the main thread: the service is killed when the thread that started it ends
                    base_url, image, version = start_podman(scratch / "podman", cleanups)
                except DockerSkipped as skip:
                    print(f"docker provider skipped: {skip}", file=sys.stderr)
                else:
                    emit(
                        provider="docker",
                        case="engine_setup",
                        seconds=round(time.perf_counter() - started, 2),
                        engine=version,
                        image=image,
                    )
                    docker = DockerProvider(
                        image, base_url=base_url, user=DOCKER_USER, name_prefix="farline-bench-"
                    )
                    lines += run_measure(docker, workspace, scratch, repeat, exec_repeat)
            ratio_line(lines)
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("interrupted: cleaning up", file=sys.stderr)
            return 130
        finally:
            # a second Ctrl-C must not cut the cleanup short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
