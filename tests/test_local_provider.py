"""The local provider against real bubblewrap sandboxes and real processes."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from harness.config import FarlineConfig
from sandbox_providers.base import (
    ProcessNotFound,
    ProcessSpec,
    SandboxConfig,
    SandboxError,
    SandboxGone,
    SandboxPathError,
    SandboxRef,
    SandboxUnavailable,
)
from sandbox_providers.local import LocalProvider
from tests.sandbox_support import output_of, run, sh, wait_until_done

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AS_ROOT = os.geteuid() == 0


def workspace_of(root: Path, ref: SandboxRef) -> Path:
    return root / ref.sandbox_id / "workspace"


# -- running processes -------------------------------------------------------------------------------


async def test_exit_code_and_combined_output(provider: LocalProvider, sandbox: SandboxRef) -> None:
    state, output = await sh(provider, sandbox, "echo out; echo err >&2; exit 3")
    assert state.exit_code == 3 and not state.lost
    assert "out\n" in output and "err\n" in output
    assert state.output_size == len(output)


async def test_read_output_from_an_offset(provider: LocalProvider, sandbox: SandboxRef) -> None:
    await provider.start_process(sandbox, ProcessSpec(process_id="count", argv=["seq", "1", "1000"]))
    await wait_until_done(provider, sandbox, "count")
    first = await provider.read_output(sandbox, "count", 0, 10)
    rest = await provider.read_output(sandbox, "count", first.next_offset, 1 << 20)
    assert first.data == b"1\n2\n3\n4\n5\n" and first.next_offset == 10
    assert (first.data + rest.data).decode().split() == [str(i) for i in range(1, 1001)]
    end = await provider.read_output(sandbox, "count", rest.next_offset, 100)
    assert end.data == b"" and end.next_offset == rest.next_offset


async def test_environment_is_scrubbed(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    provider = LocalProvider(root)
    ref = await provider.create("env", SandboxConfig(env={"FROM_SANDBOX": "1", "OVERRIDDEN": "sandbox"}))
    state, output = await run(provider, ref, ["env"], env={"FROM_SPEC": "2", "OVERRIDDEN": "spec"})
    assert state.exit_code == 0
    env = dict(line.split("=", 1) for line in output.splitlines())
    assert "secret" not in output
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/workspace",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PWD": "/workspace",
        "FROM_SANDBOX": "1",
        "FROM_SPEC": "2",
        "OVERRIDDEN": "spec",
    }


async def test_sandbox_is_isolated(provider: LocalProvider, root: Path, sandbox: SandboxRef) -> None:
    script = """
for dir in /etc /usr /; do touch $dir/probe 2>/dev/null && echo "wrote $dir" || echo "read-only $dir"; done
for dir in /root /home /work; do test -e $dir && echo "visible $dir" || echo "hidden $dir"; done
cat /etc/shadow >/dev/null 2>&1 && echo shadow-readable || echo shadow-protected
grep CapEff /proc/self/status
id -u
echo made > /workspace/made
"""
    state, output = await sh(provider, sandbox, script)
    assert state.exit_code == 0, output
    for directory in ("/etc", "/usr", "/"):
        assert f"read-only {directory}\n" in output
    for directory in ("/root", "/home", "/work"):
        assert f"hidden {directory}\n" in output
    assert "shadow-protected" in output
    assert "CapEff:\t0000000000000000" in output
    made = workspace_of(root, sandbox) / "made"
    assert made.read_text() == "made\n"
    expected_uid = 65534 if AS_ROOT else os.getuid()
    assert f"\n{expected_uid}\n" in output
    assert made.stat().st_uid == expected_uid


async def test_network_is_off_unless_allowed(provider: LocalProvider) -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    probe = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close(); print('connected')\n"
        "except OSError as exc:\n"
        "    print('blocked', exc)\n"
    )
    try:
        offline = await provider.create("offline", SandboxConfig())
        _, output = await run(provider, offline, ["/usr/bin/python3", "-c", probe])
        assert output.startswith("blocked"), output
        online = await provider.create("online", SandboxConfig(network=True))
        _, output = await run(provider, online, ["/usr/bin/python3", "-c", probe])
        assert output.startswith("connected"), output
    finally:
        server.close()


async def test_start_is_idempotent(provider: LocalProvider, root: Path, sandbox: SandboxRef) -> None:
    spec = ProcessSpec(process_id="once", argv=["sh", "-c", "echo x >> count; sleep 1"])
    first, second = await asyncio.gather(
        provider.start_process(sandbox, spec), provider.start_process(sandbox, spec)
    )
    assert first.running and second.running
    again = await provider.start_process(sandbox, spec)
    assert again.running
    assert (await wait_until_done(provider, sandbox, "once")).exit_code == 0
    finished = await provider.start_process(sandbox, spec)
    assert not finished.running and finished.exit_code == 0
    assert (workspace_of(root, sandbox) / "count").read_text() == "x\n"


async def test_a_crashed_start_is_relaunched(
    provider: LocalProvider, root: Path, sandbox: SandboxRef
) -> None:
    # the worker died after claiming the process directory, before the supervisor ran
    procdir = root / "sb" / "procs" / "crashed"
    procdir.mkdir()
    os.utime(procdir, (time.time() - 60, time.time() - 60))
    state = await provider.process_state(sandbox, "crashed")
    assert state.lost and not state.running
    await provider.start_process(sandbox, ProcessSpec(process_id="crashed", argv=["echo", "ran"]))
    assert (await wait_until_done(provider, sandbox, "crashed")).exit_code == 0
    assert await output_of(provider, sandbox, "crashed") == "ran\n"


async def test_process_outlives_the_provider_instance(root: Path, sandbox: SandboxRef) -> None:
    first = LocalProvider(root)
    await first.start_process(
        sandbox, ProcessSpec(process_id="slow", argv=["sh", "-c", "sleep 1; echo done"])
    )
    supervisor = int((root / "sb" / "procs" / "slow" / "pid").read_text())
    parent = int(Path(f"/proc/{supervisor}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert parent != os.getpid(), "the supervisor must not be a child of the worker"
    second = LocalProvider(root)
    assert (await wait_until_done(second, sandbox, "slow")).exit_code == 0
    assert await output_of(second, sandbox, "slow") == "done\n"


async def test_process_survives_a_sigkilled_worker(root: Path, sandbox: SandboxRef) -> None:
    worker_script = f"""
import asyncio, sys, time
from pathlib import Path
from sandbox_providers.base import ProcessSpec, SandboxRef
from sandbox_providers.local import LocalProvider

async def main():
    provider = LocalProvider(Path({str(root)!r}))
    ref = SandboxRef(provider="local", sandbox_id="sb")
    spec = ProcessSpec(process_id="orphan", argv=["sh", "-c", "sleep 1; echo survived"])
    await provider.start_process(ref, spec)
    print("started", flush=True)
    time.sleep(60)

asyncio.run(main())
"""
    worker = subprocess.Popen(
        [sys.executable, "-c", worker_script],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
    )
    try:
        assert worker.stdout is not None
        while (line := await asyncio.to_thread(worker.stdout.readline)) != b"started\n":
            assert line, "the worker exited before starting the process"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    provider = LocalProvider(root)
    assert (await provider.process_state(sandbox, "orphan")).running
    assert (await wait_until_done(provider, sandbox, "orphan")).exit_code == 0
    assert await output_of(provider, sandbox, "orphan") == "survived\n"


async def test_stdin(provider: LocalProvider, sandbox: SandboxRef) -> None:
    reverse = "import sys; print(sys.stdin.readline().strip()[::-1])"
    await provider.start_process(sandbox, ProcessSpec(process_id="rev", argv=["python3", "-c", reverse]))
    await provider.write_stdin(sandbox, "rev", b"hel")
    await provider.write_stdin(sandbox, "rev", b"lo\n")
    assert (await wait_until_done(provider, sandbox, "rev")).exit_code == 0
    assert await output_of(provider, sandbox, "rev") == "olleh\n"
    with pytest.raises(SandboxError, match="has ended"):
        await provider.write_stdin(sandbox, "rev", b"more\n")


def sandboxed_sleepers(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == f"sleep\0{marker}\0".encode():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


async def all_gone(marker: str) -> None:
    deadline = time.monotonic() + 2
    while sandboxed_sleepers(marker):
        assert time.monotonic() < deadline, "the sandboxed process tree outlived its sandbox"
        await asyncio.sleep(0.02)


async def test_kill_process(provider: LocalProvider, sandbox: SandboxRef) -> None:
    marker = "107"  # a background child and the foreground one, both must go
    spec = ProcessSpec(process_id="sleeper", argv=["sh", "-c", f"sleep {marker} & sleep {marker}"])
    await provider.start_process(sandbox, spec)
    deadline = time.monotonic() + 5
    while len(sandboxed_sleepers(marker)) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    started = time.monotonic()
    await provider.kill_process(sandbox, "sleeper")
    state = await provider.process_state(sandbox, "sleeper")
    assert not state.running and not state.lost and state.exit_code == 137
    assert time.monotonic() - started < 2
    await all_gone(marker)
    await provider.kill_process(sandbox, "sleeper")  # a second kill is a no-op
    assert (await provider.process_state(sandbox, "sleeper")).exit_code == 137


async def test_kill_right_after_start_leaves_nothing(provider: LocalProvider, sandbox: SandboxRef) -> None:
    # bubblewrap may still be setting the sandbox up: the kill must reach it all the same
    for attempt in range(3):
        process_id = f"early-{attempt}"
        await provider.start_process(sandbox, ProcessSpec(process_id=process_id, argv=["sleep", "110"]))
        await provider.kill_process(sandbox, process_id)
        assert (await provider.process_state(sandbox, process_id)).exit_code == 137
    await all_gone("110")


async def test_a_dead_supervisor_is_reported_lost(
    provider: LocalProvider, root: Path, sandbox: SandboxRef
) -> None:
    spec = ProcessSpec(process_id="doomed", argv=["sh", "-c", "echo ready; exec sleep 109"])
    await provider.start_process(sandbox, spec)
    while await output_of(provider, sandbox, "doomed") != "ready\n":
        await asyncio.sleep(0.02)
    supervisor = int((root / "sb" / "procs" / "doomed" / "pid").read_text())
    os.killpg(supervisor, signal.SIGKILL)  # what a machine crash does
    deadline = time.monotonic() + 5
    while (state := await provider.process_state(sandbox, "doomed")).running:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert state.lost and state.exit_code is None
    await all_gone("109")  # the sandbox died with its supervisor


async def test_unknown_process(provider: LocalProvider, sandbox: SandboxRef) -> None:
    with pytest.raises(ProcessNotFound):
        await provider.process_state(sandbox, "never-started")
    with pytest.raises(ProcessNotFound):
        await provider.read_output(sandbox, "never-started", 0, 10)
    with pytest.raises(SandboxPathError):
        await provider.process_state(sandbox, "..")


# -- paths ---------------------------------------------------------------------------------------------


async def test_workdir_must_stay_in_the_workspace(provider: LocalProvider, sandbox: SandboxRef) -> None:
    for workdir in ("../x", "/etc", "a/../../b"):
        with pytest.raises(SandboxPathError):
            await provider.start_process(sandbox, ProcessSpec(process_id="wd", argv=["pwd"], workdir=workdir))
    await provider.write_file(sandbox, "sub/dir/keep", b"")
    state, output = await run(provider, sandbox, ["pwd"], workdir="sub/dir")
    assert state.exit_code == 0 and output == "/workspace/sub/dir\n"


async def test_file_operations_never_follow_links_out(provider: LocalProvider, sandbox: SandboxRef) -> None:
    script = (
        "ln -s /etc/hostname leak && ln -s /etc etcdir && echo inside > inside.txt && ln -s inside.txt rel"
        " && ln -s /workspace/inside.txt absolute && mkdir d && ln -s ../.. d/up && ln -s d/ dirlink"
        " && ln -s /workspace/../etc sneaky && mkfifo fifo"
    )
    state, output = await sh(provider, sandbox, script)
    assert state.exit_code == 0, output
    hostname = Path("/etc/hostname").read_bytes()
    refused = (
        "leak",
        "etcdir/hostname",
        "d/up/etc/hostname",
        "sneaky/hostname",
        "/etc/hostname",
        "../x",
        "a/../../x",
    )
    for path in refused:
        with pytest.raises(SandboxPathError):
            await provider.read_file(sandbox, path)
    with pytest.raises(SandboxPathError):
        await provider.write_file(sandbox, "leak", b"overwritten")
    with pytest.raises(SandboxPathError):
        await provider.write_file(sandbox, "etcdir/farline-evil", b"x")
    with pytest.raises(SandboxPathError):
        await provider.list_dir(sandbox, "etcdir")
    with pytest.raises(SandboxPathError):
        await provider.read_file(sandbox, "fifo")  # and it must not hang
    assert Path("/etc/hostname").read_bytes() == hostname
    assert not Path("/etc/farline-evil").exists()
    # links that stay inside the workspace resolve as the sandbox sees them
    assert await provider.read_file(sandbox, "rel") == b"inside\n"
    assert await provider.read_file(sandbox, "absolute") == b"inside\n"

    entries = {entry.path: entry for entry in await provider.list_dir(sandbox)}
    assert entries["leak"].kind == "symlink" and entries["leak"].link_target == "/etc/hostname"
    assert entries["d"].kind == "dir" and entries["inside.txt"].kind == "file"
    assert entries["inside.txt"].size == 7 and entries["fifo"].kind == "other"
    assert [entry.path for entry in await provider.list_dir(sandbox, "d")] == ["d/up"]
    assert [entry.path for entry in await provider.list_dir(sandbox, "dirlink")] == ["dirlink/up"]
    with pytest.raises(IsADirectoryError):
        await provider.write_file(sandbox, "dirlink", b"x")


async def test_write_and_read_files(provider: LocalProvider, root: Path, sandbox: SandboxRef) -> None:
    await provider.write_file(sandbox, "a/b/c.txt", b"hello", mode=0o600)
    assert await provider.read_file(sandbox, "a/b/c.txt") == b"hello"
    await provider.write_file(sandbox, "a/b/c.txt", b"replaced", mode=0o600)
    assert await provider.read_file(sandbox, "./a//b/c.txt") == b"replaced"
    [entry] = await provider.list_dir(sandbox, "a/b")
    assert entry.path == "a/b/c.txt" and entry.kind == "file" and entry.mode == 0o600 and entry.size == 8
    host_file = workspace_of(root, sandbox) / "a" / "b" / "c.txt"
    assert host_file.stat().st_uid == (65534 if AS_ROOT else os.getuid())
    # the sandbox can read (and change) what the worker wrote
    state, output = await sh(provider, sandbox, "cat a/b/c.txt && echo more >> a/b/c.txt")
    assert state.exit_code == 0 and output == "replaced"
    with pytest.raises(FileNotFoundError):
        await provider.read_file(sandbox, "missing.txt")
    with pytest.raises(IsADirectoryError):
        await provider.read_file(sandbox, "a")


# -- export and import ---------------------------------------------------------------------------------


async def test_export_and_import_keep_modes_and_links(provider: LocalProvider, sandbox: SandboxRef) -> None:
    script = (
        "mkdir -p proj/bin && echo hi > proj/file.txt"
        " && printf '#!/bin/sh\\necho tool ran\\n' > proj/bin/tool && chmod 755 proj/bin/tool"
        " && ln -s /usr/bin/python3 proj/bin/python3 && ln -s ../file.txt proj/bin/f"
        " && echo elsewhere > other.txt"
    )
    assert (await sh(provider, sandbox, script))[0].exit_code == 0
    archive = await provider.export_paths(sandbox, ["proj"])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert set(members) == {
        "proj",
        "proj/bin",
        "proj/file.txt",
        "proj/bin/tool",
        "proj/bin/python3",
        "proj/bin/f",
    }
    assert members["proj/bin/python3"].issym() and members["proj/bin/python3"].linkname == "/usr/bin/python3"

    copy = await provider.create("copy", SandboxConfig())
    await provider.import_paths(copy, archive)
    assert await provider.read_file(copy, "proj/file.txt") == b"hi\n"
    entries = {entry.path: entry for entry in await provider.list_dir(copy, "proj/bin")}
    assert entries["proj/bin/tool"].mode == 0o755
    assert entries["proj/bin/python3"].kind == "symlink"
    assert entries["proj/bin/python3"].link_target == "/usr/bin/python3"
    assert entries["proj/bin/f"].link_target == "../file.txt"
    state, output = await sh(
        provider, copy, "proj/bin/tool && proj/bin/python3 -c 'print(6*7)' && cat proj/bin/f"
    )
    assert state.exit_code == 0 and output == "tool ran\n42\nhi\n"
    assert [entry.path for entry in await provider.list_dir(copy)] == ["proj"]

    whole = await provider.export_paths(sandbox, ["."])
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        assert {"proj/bin/tool", "other.txt"} <= set(tar.getnames())


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    "evil",
    [
        [(member("../evil"), b"x")],
        [(member("/abs"), b"x")],
        [(member("ok.txt"), b"fine"), (member("a/../../evil"), b"x")],
        [(member("up", tarfile.SYMTYPE, "../.."), b""), (member("up/farline-evil"), b"x")],
        [(member("etc", tarfile.SYMTYPE, "/etc"), b""), (member("etc/farline-evil"), b"x")],
        [(member("ok.txt"), b"fine"), (member("hard", tarfile.LNKTYPE, "/etc/passwd"), b"")],
        [(member("dev", tarfile.CHRTYPE), b"")],
        [(member("pipe", tarfile.FIFOTYPE), b"")],
    ],
)
async def test_import_refuses_escapes(
    provider: LocalProvider, root: Path, sandbox: SandboxRef, evil: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    with pytest.raises(SandboxPathError):
        await provider.import_paths(sandbox, tar_of(*evil))
    # refused as a whole: nothing written, inside or outside
    assert await provider.list_dir(sandbox) == []
    assert sorted(path.name for path in (root / "sb").iterdir()) == ["procs", "sandbox.json", "workspace"]
    assert not Path("/etc/farline-evil").exists()


async def test_links_out_of_the_workspace_are_kept_but_never_followed(
    provider: LocalProvider, sandbox: SandboxRef
) -> None:
    await provider.import_paths(
        sandbox, tar_of((member("up", tarfile.SYMTYPE, "../../etc/passwd"), b""), (member("ok.txt"), b"ok"))
    )
    entries = {entry.path: entry for entry in await provider.list_dir(sandbox)}
    assert entries["up"].link_target == "../../etc/passwd"
    with pytest.raises(SandboxPathError):
        await provider.read_file(sandbox, "up")
    scanned = {stat.path: stat for stat in await provider.scan_workspace(sandbox)}
    assert scanned["up"].kind == "symlink" and scanned["up"].link_target == "../../etc/passwd"
    assert scanned["ok.txt"].kind == "file" and scanned["ok.txt"].size == 2


async def test_import_rejects_garbage(provider: LocalProvider, sandbox: SandboxRef) -> None:
    with pytest.raises(SandboxError, match="tar"):
        await provider.import_paths(sandbox, b"not a tar archive at all" * 40)


# -- lifecycle -------------------------------------------------------------------------------------------


async def test_destroy(provider: LocalProvider, root: Path, sandbox: SandboxRef) -> None:
    assert await provider.health(sandbox)
    assert await provider.create("sb", SandboxConfig()) == sandbox  # create is idempotent
    await provider.start_process(sandbox, ProcessSpec(process_id="bg", argv=["sleep", "108"]))
    await provider.destroy(sandbox)
    assert not (root / "sb").exists()
    await all_gone("108")
    with pytest.raises(SandboxGone):
        await provider.process_state(sandbox, "bg")
    with pytest.raises(SandboxGone):
        await provider.read_file(sandbox, "x")
    with pytest.raises(SandboxGone):
        await provider.start_process(sandbox, ProcessSpec(process_id="again", argv=["true"]))
    assert not await provider.health(sandbox)
    await provider.destroy(sandbox)  # destroying a gone sandbox is fine


async def test_invalid_sandbox_ids(provider: LocalProvider) -> None:
    for sandbox_id in ("../x", "..", ".", "a/b", "", "x" * 129):
        with pytest.raises(SandboxPathError):
            await provider.create(sandbox_id, SandboxConfig())


async def test_missing_bwrap(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path, bwrap_path="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        await provider.create("sb", SandboxConfig())


def test_from_config(tmp_path: Path) -> None:
    provider = LocalProvider.from_config(
        FarlineConfig(data_dir=tmp_path, bwrap_path="/bin/bwrap", sandbox_uid=4242)
    )
    assert provider.root == tmp_path / "sandboxes"
    assert provider.bwrap_path == "/bin/bwrap" and provider.sandbox_uid == 4242
