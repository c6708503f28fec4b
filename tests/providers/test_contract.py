"""The contract every sandbox provider passes, through the `SandboxProvider` protocol only.

Each test runs once per provider (`provider_under_test`, see conftest.py), against real sandboxes
and real processes in them.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import tarfile
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from sandbox_providers.base import (
    WORKSPACE_PATH,
    BucketMount,
    ProcessNotFound,
    ProcessSpec,
    SandboxError,
    SandboxGone,
    SandboxLimitError,
    SandboxPathError,
    SandboxRef,
    SandboxUnavailable,
    WorkspaceStat,
)
from tests.providers.support import ProviderUnderTest
from tests.s3_server import S3Server

ESCAPING_PATHS = ("../etc/passwd", "/etc/passwd", "a/../../etc/passwd")


# -- lifecycle -----------------------------------------------------------------------------------------


async def test_create_is_idempotent_and_destroy_is_final(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    sandbox_id = put.unique_id()
    ref = await put.create(sandbox_id)
    assert ref.provider == put.provider.name and ref.sandbox_id == sandbox_id
    assert await put.provider.health(ref)
    await put.provider.write_file(ref, "kept.txt", b"still here")
    # a retried create activity, even one racing the first attempt: the same sandbox, with what it holds
    assert await asyncio.gather(put.create(sandbox_id), put.create(sandbox_id)) == [ref, ref]
    assert await put.provider.read_file(ref, "kept.txt") == b"still here"

    await put.start(ref, ["sleep", "300"])
    started = time.monotonic()
    await put.provider.destroy(ref)
    assert time.monotonic() - started < 15, "destroy must not wait for running processes to end"
    assert not await put.provider.health(ref)
    await put.provider.destroy(ref)  # destroying a gone sandbox is not an error


# -- processes -----------------------------------------------------------------------------------------


async def test_exit_code_and_combined_output(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    before = time.time()
    finished = await put.sh(ref, "echo out; echo err >&2; exit 3")
    state = finished.state
    assert not state.running and state.exit_code == 3 and not state.lost
    assert b"out\n" in finished.output and b"err\n" in finished.output
    assert state.output_size == len(finished.output) == len(b"out\nerr\n")
    assert state.started_at is not None and state.ended_at is not None
    assert before - 5 <= state.started_at <= state.ended_at <= time.time() + 5
    assert (await put.sh(ref, "true")).state.exit_code == 0


async def test_exit_codes_of_signals_and_missing_programs(provider_under_test: ProviderUnderTest) -> None:
    """What the command itself did is its result, never a provider error."""
    put = provider_under_test
    ref = await put.create()
    assert (await put.sh(ref, "kill -TERM $$")).state.exit_code == 128 + 15
    assert (await put.sh(ref, "exit 255")).state.exit_code == 255
    missing = await put.run(ref, ["no-such-program-here"])
    assert missing.state.exit_code not in (None, 0) and not missing.state.lost
    assert "no-such-program-here" in missing.text


async def test_a_process_ends_with_its_main_program(provider_under_test: ProviderUnderTest) -> None:
    """A background child that keeps the output open does not keep the command running."""
    put = provider_under_test
    ref = await put.create()
    started = time.monotonic()
    finished = await put.sh(ref, "sleep 300 & echo started")
    assert finished.state.exit_code == 0 and finished.text == "started\n"
    assert time.monotonic() - started < 15


async def test_argv_is_passed_verbatim(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    words = ["a b", "$HOME", "'quoted'", '"double"', ";echo injected", "*", "ünï"]
    finished = await put.run(ref, ["printf", "%s|", *words])
    assert finished.state.exit_code == 0
    assert finished.text == "".join(f"{word}|" for word in words)


async def test_read_output_from_offsets(provider_under_test: ProviderUnderTest) -> None:
    """Offsets count every byte written; a provider may keep only the head and the tail, and says
    so with `dropped`: whatever it returns sits at its true place in the stream."""
    put = provider_under_test
    ref = await put.create()
    lines = 300_000  # 2.1 MB: more than a provider keeping a head and a tail holds
    expected = b"".join(b"%06d\n" % i for i in range(lines))
    process_id = await put.start(ref, ["seq", "-w", "0", str(lines - 1)])
    state = await put.wait_until_done(ref, process_id)
    assert state.exit_code == 0 and state.output_size == len(expected)

    offset, max_bytes = 0, 100_000
    while offset < len(expected):
        chunk = await put.provider.read_output(ref, process_id, offset, max_bytes)
        assert chunk.offset == offset and chunk.dropped >= 0 and 0 < len(chunk.data) <= max_bytes
        start = offset + chunk.dropped
        assert chunk.next_offset == start + len(chunk.data)
        assert chunk.data == expected[start : chunk.next_offset], f"wrong bytes at {start}"
        offset = chunk.next_offset
    assert offset == len(expected)

    # the head and the tail are always held
    first = await put.provider.read_output(ref, process_id, 0, 14)
    assert first.data == b"000000\n000001\n" and first.next_offset == 14 and first.dropped == 0
    last = await put.provider.read_output(ref, process_id, len(expected) - 7, 100)
    assert last.data == b"299999\n" and last.next_offset == len(expected)
    end = await put.provider.read_output(ref, process_id, len(expected), 100)
    assert end.data == b"" and end.next_offset == len(expected)


async def test_environment_from_config_and_spec(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    tricky = 'it\'s $HOME "x" ; `y`'
    ref = await put.create(env={"FROM_CONFIG": "config", "BOTH": "config", "TRICKY": tricky})
    finished = await put.run(ref, ["env"], env={"FROM_SPEC": "spec", "BOTH": "spec"})
    env = dict(line.split("=", 1) for line in finished.text.splitlines())
    assert finished.state.exit_code == 0
    assert env["FROM_CONFIG"] == "config" and env["FROM_SPEC"] == "spec" and env["TRICKY"] == tricky
    assert env["BOTH"] == "spec", "the process's own environment wins over the sandbox's"
    env = dict(line.split("=", 1) for line in (await put.run(ref, ["env"])).text.splitlines())
    assert env["BOTH"] == "config" and "FROM_SPEC" not in env, "one process's env is not another's"


async def test_workdir(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    assert (await put.run(ref, ["pwd"])).text == f"{WORKSPACE_PATH}\n"
    await put.provider.write_file(ref, "sub/dir/keep", b"")
    finished = await put.sh(ref, "pwd; echo made > made.txt", workdir="sub/dir")
    assert finished.state.exit_code == 0 and finished.text == f"{WORKSPACE_PATH}/sub/dir\n"
    assert await put.provider.read_file(ref, "sub/dir/made.txt") == b"made\n"


@pytest.mark.parametrize("workdir", ["../x", "/etc", "sub/../../x"])
async def test_a_workdir_outside_the_workspace_is_refused(
    provider_under_test: ProviderUnderTest, workdir: str
) -> None:
    put = provider_under_test
    ref = await put.create()
    with pytest.raises(SandboxPathError):
        await put.provider.start_process(ref, ProcessSpec(process_id="wd", argv=["pwd"], workdir=workdir))
    with pytest.raises(ProcessNotFound):  # refused before anything was started
        await put.provider.process_state(ref, "wd")


async def test_starting_a_process_twice_attaches(provider_under_test: ProviderUnderTest) -> None:
    """A retried exec activity attaches to the process its first attempt started."""
    put = provider_under_test
    ref = await put.create()
    spec = ProcessSpec(process_id="once", argv=["bash", "-c", "echo ran >> runs.txt; echo ran; sleep 1"])
    first, second = await asyncio.gather(*(put.provider.start_process(ref, spec) for _ in range(2)))
    assert first.process_id == second.process_id == "once"
    assert (await put.provider.start_process(ref, spec)).process_id == "once"
    assert (await put.wait_until_done(ref, "once")).exit_code == 0
    finished = await put.provider.start_process(ref, spec)
    assert not finished.running and finished.exit_code == 0
    assert await put.provider.read_file(ref, "runs.txt") == b"ran\n"
    assert await put.output_of(ref, "once") == b"ran\n"


async def test_processes_run_side_by_side(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    runs = await asyncio.gather(
        *(put.sh(ref, 'sleep 0.2; echo "I am $WHO"', env={"WHO": str(i)}) for i in range(4))
    )
    assert [finished.text for finished in runs] == [f"I am {i}\n" for i in range(4)]


async def test_a_session_with_stdin(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    loop = 'while IFS= read -r line; do echo "got:$line"; done; echo eof'
    process_id = await put.start(ref, ["bash", "-c", loop])
    await put.provider.write_stdin(ref, process_id, b"one\n")
    await put.wait_for_output(ref, process_id, b"got:one\n")
    offset = (await put.provider.read_output(ref, process_id, 0, 1 << 20)).next_offset
    assert offset == len(b"got:one\n")
    # a line in two writes
    await put.provider.write_stdin(ref, process_id, b"t")
    await put.provider.write_stdin(ref, process_id, b"wo\n")
    assert await put.wait_for_output(ref, process_id, b"got:two\n", offset=offset) == b"got:two\n"
    state = await put.provider.process_state(ref, process_id)
    assert state.running and state.exit_code is None and not state.lost
    assert state.output_size == len(b"got:one\ngot:two\n")

    await put.provider.kill_process(ref, process_id)
    state = await put.provider.process_state(ref, process_id)
    assert not state.running and (state.exit_code is not None or state.lost)
    assert await put.output_of(ref, process_id) == b"got:one\ngot:two\n"  # kept after the kill
    await put.provider.kill_process(ref, process_id)  # killing an ended process is a no-op
    with pytest.raises(SandboxError):  # not silently dropped
        await put.provider.write_stdin(ref, process_id, b"three\n")


async def test_a_session_on_a_terminal(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    check = "test -t 0 && test -t 1 && echo terminal || echo pipe"
    assert (await put.sh(ref, check)).text == "pipe\n"
    process_id = await put.start(ref, ["bash", "-c", f"{check}; read -r line; echo got:$line"], tty=True)
    await put.wait_for_output(ref, process_id, b"terminal")
    await put.provider.write_stdin(ref, process_id, b"typed\n")
    assert (await put.wait_until_done(ref, process_id)).exit_code == 0
    assert b"got:typed" in await put.output_of(ref, process_id)


async def test_an_unknown_process(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    with pytest.raises(ProcessNotFound):
        await put.provider.process_state(ref, "never-started")
    with pytest.raises(ProcessNotFound):
        await put.provider.read_output(ref, "never-started", 0, 10)
    with pytest.raises(ProcessNotFound):
        await put.provider.write_stdin(ref, "never-started", b"x\n")
    with pytest.raises(ProcessNotFound):
        await put.provider.kill_process(ref, "never-started")


async def test_the_live_process_limit(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    limit = put.setup.live_process_limit
    if limit is None:
        pytest.skip(f"{put.name} sets no limit on live processes")
    ref = await put.create()
    await asyncio.gather(*(put.start(ref, ["sleep", "300"], process_id=f"s{i}") for i in range(limit)))
    with pytest.raises(SandboxLimitError):
        await put.start(ref, ["true"], process_id="one-too-many")
    with pytest.raises(ProcessNotFound):
        await put.provider.process_state(ref, "one-too-many")
    attached = await put.provider.start_process(ref, ProcessSpec(process_id="s1", argv=["sleep", "300"]))
    assert attached.running, "attaching to a running process starts nothing new"
    await put.provider.kill_process(ref, "s0")
    assert (await put.run(ref, ["true"], process_id="one-too-many")).state.exit_code == 0


# -- files ---------------------------------------------------------------------------------------------


async def test_write_and_read_files(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    data = bytes(range(256)) * 64 + b"\0\r\n"
    await put.provider.write_file(ref, "bin/data.bin", data, mode=0o600)
    assert await put.provider.read_file(ref, "bin/data.bin") == data
    [entry] = await put.provider.list_dir(ref, "bin")
    assert (entry.path, entry.kind, entry.size, entry.mode) == ("bin/data.bin", "file", len(data), 0o600)
    # the sandbox sees the same bytes
    finished = await put.sh(ref, "sha256sum < bin/data.bin")
    assert finished.text.split()[0] == hashlib.sha256(data).hexdigest()

    await put.provider.write_file(ref, "bin/data.bin", b"#!/bin/sh\necho replaced\n", mode=0o755)
    assert (await put.run(ref, ["./bin/data.bin"])).text == "replaced\n"
    [entry] = await put.provider.list_dir(ref, "bin")
    assert entry.mode == 0o755 and entry.size == len(b"#!/bin/sh\necho replaced\n")

    await put.provider.write_file(ref, "empty", b"")
    assert await put.provider.read_file(ref, "empty") == b""
    # and the worker sees what the sandbox wrote
    assert (await put.sh(ref, r"printf 'made\0by\nsandbox' > from-sandbox")).state.exit_code == 0
    assert await put.provider.read_file(ref, "from-sandbox") == b"made\0by\nsandbox"
    with pytest.raises(FileNotFoundError):
        await put.provider.read_file(ref, "missing.txt")
    with pytest.raises(FileNotFoundError):
        await put.provider.read_file(ref, "missing/dir/file.txt")
    with pytest.raises(IsADirectoryError):
        await put.provider.read_file(ref, "bin")


async def test_list_dir_shows_kinds_sizes_and_links(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    script = "mkdir -p d/e && printf 12345 > d/five && ln -s five d/link && ln -s /etc/passwd d/out"
    assert (await put.sh(ref, script)).state.exit_code == 0
    entries = {entry.path: entry for entry in await put.provider.list_dir(ref, "d")}
    assert set(entries) == {"d/e", "d/five", "d/link", "d/out"}
    assert entries["d/e"].kind == "dir"
    assert entries["d/five"].kind == "file" and entries["d/five"].size == 5
    assert entries["d/link"].kind == "symlink" and entries["d/link"].link_target == "five"
    assert entries["d/out"].kind == "symlink" and entries["d/out"].link_target == "/etc/passwd"
    assert [entry.path for entry in await put.provider.list_dir(ref, "d/e")] == []
    assert {entry.path: entry.kind for entry in await put.provider.list_dir(ref)} == {"d": "dir"}
    with pytest.raises(FileNotFoundError):
        await put.provider.list_dir(ref, "missing")


async def test_delete_file(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    script = "mkdir d && echo target > d/target && ln -s target d/link && echo x > d/file"
    assert (await put.sh(ref, script)).state.exit_code == 0
    await put.provider.delete_file(ref, "d/file")
    await put.provider.delete_file(ref, "d/link")  # the link, never what it points to
    assert {entry.path for entry in await put.provider.list_dir(ref, "d")} == {"d/target"}
    assert await put.provider.read_file(ref, "d/target") == b"target\n"
    with pytest.raises(FileNotFoundError):
        await put.provider.read_file(ref, "d/file")
    with pytest.raises(FileNotFoundError):
        await put.provider.delete_file(ref, "d/file")
    with pytest.raises(IsADirectoryError):
        await put.provider.delete_file(ref, "d")
    assert (await put.sh(ref, "ls d")).text == "target\n"


async def test_paths_that_leave_the_workspace_are_refused(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    await put.provider.write_file(ref, "a/inside.txt", b"inside")
    for path in ESCAPING_PATHS:
        with pytest.raises(SandboxPathError):
            await put.provider.read_file(ref, path)
        with pytest.raises(SandboxPathError):
            await put.provider.write_file(ref, path, b"overwritten")
        with pytest.raises(SandboxPathError):
            await put.provider.delete_file(ref, path)
        with pytest.raises(SandboxPathError):
            await put.provider.list_dir(ref, path)
        with pytest.raises(SandboxPathError):
            await put.provider.export_paths(ref, [path])
    assert [stat.path for stat in await put.provider.scan_workspace(ref)] == ["a", "a/inside.txt"]
    assert "root:" in (await put.run(ref, ["cat", "/etc/passwd"])).text


async def test_symlinks_out_of_the_workspace_are_never_followed(
    provider_under_test: ProviderUnderTest,
) -> None:
    """The sandbox may plant links; the worker side refuses to read or write through one that
    leaves the workspace, and resolves the ones that stay inside as the sandbox would."""
    put = provider_under_test
    ref = await put.create()
    script = (
        "ln -s /etc/passwd link && ln -s .. up && ln -s /etc etc && echo inside > inside.txt"
        f" && ln -s inside.txt rel && ln -s {WORKSPACE_PATH}/inside.txt abs && cat /etc/passwd"
    )
    finished = await put.sh(ref, script)
    assert finished.state.exit_code == 0
    for path in ("link", "up/etc/passwd", "etc/passwd"):
        with pytest.raises(SandboxPathError):
            await put.provider.read_file(ref, path)
    for path in ("link", "etc/farline-evil"):
        with pytest.raises(SandboxPathError):
            await put.provider.write_file(ref, path, b"evil")
    with pytest.raises(SandboxPathError):
        await put.provider.list_dir(ref, "etc")
    assert await put.provider.read_file(ref, "rel") == b"inside\n"
    assert await put.provider.read_file(ref, "abs") == b"inside\n"
    # a FIFO the sandbox planted is no file to read, and must not hang the worker
    assert (await put.sh(ref, "mkfifo fifo")).state.exit_code == 0
    with pytest.raises(SandboxPathError):
        await asyncio.wait_for(put.provider.read_file(ref, "fifo"), timeout=10)
    # nothing was written through the links
    after = await put.sh(ref, "cat /etc/passwd; test -e /etc/farline-evil && echo EVIL; true")
    assert after.output == finished.output
    entries = {entry.path: entry for entry in await put.provider.list_dir(ref)}
    assert entries["link"].kind == "symlink" and entries["link"].link_target == "/etc/passwd"


# -- export and import ---------------------------------------------------------------------------------


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def member(
    name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644, mtime: int = 0
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, linkname, mode, mtime
    return info


def files_of(archive: bytes) -> dict[str, bytes]:
    """The regular files of a tar archive, by member name."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for info in tar.getmembers():
            source = tar.extractfile(info) if info.isreg() else None
            if source is not None:
                files[info.name] = source.read()
    return files


async def test_export_and_import_keep_content_modes_and_links(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    source = await put.create()
    script = (
        "mkdir -p proj/bin proj/empty && printf 'hi\\n' > proj/file.txt && chmod 640 proj/file.txt"
        " && printf '#!/bin/sh\\necho tool ran\\n' > proj/bin/tool && chmod 755 proj/bin/tool"
        " && ln -s ../file.txt proj/bin/f && ln -s /usr/bin/env proj/bin/env && chmod 750 proj/bin"
        " && echo elsewhere > other.txt"
    )
    assert (await put.sh(source, script)).state.exit_code == 0
    archive = await put.provider.export_paths(source, ["proj"])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {info.name: info for info in tar.getmembers()}
    assert set(members) == {
        "proj",
        "proj/empty",
        "proj/file.txt",
        "proj/bin",
        "proj/bin/tool",
        "proj/bin/f",
        "proj/bin/env",
    }
    assert members["proj/bin/f"].issym() and members["proj/bin/f"].linkname == "../file.txt"
    assert members["proj/bin/env"].issym() and members["proj/bin/env"].linkname == "/usr/bin/env"
    assert members["proj/bin/tool"].isreg() and members["proj/bin/tool"].mode & 0o777 == 0o755

    target = await put.create()
    await put.provider.write_file(target, "keep.txt", b"mine")
    await put.provider.import_paths(target, archive)
    await put.provider.import_paths(target, archive)  # a retried import changes nothing
    assert await put.provider.read_file(target, "proj/file.txt") == b"hi\n"
    entries = {entry.path: entry for entry in await put.provider.list_dir(target, "proj")}
    assert entries["proj/empty"].kind == "dir"
    assert entries["proj/file.txt"].mode == 0o640
    assert entries["proj/bin"].kind == "dir" and entries["proj/bin"].mode == 0o750
    entries = {entry.path: entry for entry in await put.provider.list_dir(target, "proj/bin")}
    assert entries["proj/bin/tool"].mode == 0o755
    assert entries["proj/bin/f"].kind == "symlink" and entries["proj/bin/f"].link_target == "../file.txt"
    assert entries["proj/bin/env"].link_target == "/usr/bin/env"
    finished = await put.sh(target, "proj/bin/tool && cat proj/bin/f && proj/bin/env echo env-ok")
    assert finished.state.exit_code == 0 and finished.text == "tool ran\nhi\nenv-ok\n"
    assert {entry.path for entry in await put.provider.list_dir(target)} == {"keep.txt", "proj"}


async def test_export_of_chosen_paths(provider_under_test: ProviderUnderTest) -> None:
    """What a snapshot asks for: these files, under their own names, nothing else."""
    put = provider_under_test
    ref = await put.create()
    await put.provider.write_file(ref, "a.txt", b"a")
    await put.provider.write_file(ref, "d/b.txt", b"bb")
    await put.provider.write_file(ref, "d/c.txt", b"ccc")
    archive = await put.provider.export_paths(ref, ["a.txt", "./d//b.txt"])
    assert files_of(archive) == {"a.txt": b"a", "d/b.txt": b"bb"}
    with pytest.raises(FileNotFoundError):
        await put.provider.export_paths(ref, ["a.txt", "deleted-since-the-scan.txt"])


async def test_import_keeps_file_times_and_sets_directory_modes_last(
    provider_under_test: ProviderUnderTest,
) -> None:
    """A snapshot restore imports directories, then files, then links, then the directories' modes."""
    put = provider_under_test
    ref = await put.create()
    mtime = 1_500_000_000
    archives = [
        tar_of((member("ro", tarfile.DIRTYPE, mode=0o700), b"")),
        tar_of((member("ro/f.txt", mode=0o444, mtime=mtime), b"restored")),
        tar_of((member("ro/l", tarfile.SYMTYPE, "f.txt"), b"")),
        tar_of((member("ro", tarfile.DIRTYPE, mode=0o555), b"")),
    ]
    for _attempt in range(2):  # a retried restore lands on the same workspace
        for archive in archives:
            await put.provider.import_paths(ref, archive)
    scanned = {stat.path: stat for stat in await put.provider.scan_workspace(ref)}
    assert set(scanned) == {"ro", "ro/f.txt", "ro/l"}
    assert scanned["ro"].kind == "dir" and scanned["ro"].mode == 0o555
    assert scanned["ro/f.txt"].mode == 0o444 and scanned["ro/f.txt"].size == len(b"restored")
    assert scanned["ro/f.txt"].mtime_ns // 10**9 == mtime
    assert scanned["ro/l"].kind == "symlink" and scanned["ro/l"].link_target == "f.txt"
    assert (await put.run(ref, ["cat", "ro/l"])).text == "restored"


@pytest.mark.parametrize(
    "evil",
    [
        pytest.param([(member("../evil"), b"x")], id="parent"),
        pytest.param([(member("/evil"), b"x")], id="absolute"),
        pytest.param([(member("ok.txt"), b"fine"), (member("a/../../evil"), b"x")], id="parent-later"),
        pytest.param(
            [(member("up", tarfile.SYMTYPE, "../.."), b""), (member("up/evil"), b"x")], id="through-own-link"
        ),
        pytest.param(
            [(member("etc", tarfile.SYMTYPE, "/etc"), b""), (member("etc/farline-evil"), b"x")],
            id="through-absolute-link",
        ),
        pytest.param(
            [(member("ok.txt"), b"fine"), (member("hard", tarfile.LNKTYPE, "/etc/passwd"), b"")],
            id="hard-link-out",
        ),
        pytest.param([(member("dev", tarfile.CHRTYPE), b"")], id="device"),
        pytest.param([(member("pipe", tarfile.FIFOTYPE), b"")], id="fifo"),
    ],
)
async def test_an_import_leaving_the_workspace_is_refused_whole(
    provider_under_test: ProviderUnderTest, evil: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    put = provider_under_test
    ref = await put.create()
    with pytest.raises(SandboxPathError):
        await put.provider.import_paths(ref, tar_of(*evil))
    assert await put.provider.scan_workspace(ref) == []  # nothing written, not even the good members


async def test_an_import_through_a_link_the_sandbox_planted_is_refused(
    provider_under_test: ProviderUnderTest,
) -> None:
    put = provider_under_test
    ref = await put.create()
    assert (await put.sh(ref, "ln -s /etc out")).state.exit_code == 0
    with pytest.raises(SandboxPathError):
        await put.provider.import_paths(ref, tar_of((member("out/farline-evil"), b"x")))
    assert [stat.path for stat in await put.provider.scan_workspace(ref)] == ["out"]
    assert (await put.sh(ref, "test -e /etc/farline-evil && echo EVIL; true")).text == ""


async def test_an_import_refused_for_a_planted_link_writes_nothing(
    provider_under_test: ProviderUnderTest,
) -> None:
    """Refused as a whole, like an archive that is bad in itself: no member before the bad one lands."""
    put = provider_under_test
    ref = await put.create()
    assert (await put.sh(ref, "ln -s /etc out")).state.exit_code == 0
    with pytest.raises(SandboxPathError):
        await put.provider.import_paths(ref, tar_of((member("ok.txt"), b"fine"), (member("out/evil"), b"x")))
    assert [stat.path for stat in await put.provider.scan_workspace(ref)] == ["out"]


async def test_an_import_of_garbage_is_refused(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    with pytest.raises(SandboxError):
        await put.provider.import_paths(ref, b"not a tar archive at all" * 40)
    assert await put.provider.scan_workspace(ref) == []


# -- scanning ------------------------------------------------------------------------------------------


async def test_scan_workspace_lists_every_path_parents_first(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    await put.provider.write_file(ref, "a.txt", b"a", mode=0o600)
    await put.provider.write_file(ref, "d/e/c.txt", b"ccc")
    script = "echo bb > d/b.txt && ln -s ../a.txt d/l && mkdir -p z/y"
    assert (await put.sh(ref, script)).state.exit_code == 0
    scan = await put.provider.scan_workspace(ref)
    paths = [stat.path for stat in scan]
    assert sorted(paths) == ["a.txt", "d", "d/b.txt", "d/e", "d/e/c.txt", "d/l", "z", "z/y"]
    for index, path in enumerate(paths):
        if "/" in path:
            assert paths.index(path.rsplit("/", 1)[0]) < index, f"{path} before its parent"
    by_path = {stat.path: stat for stat in scan}
    assert {path: stat.kind for path, stat in by_path.items()} == {
        "a.txt": "file",
        "d": "dir",
        "d/b.txt": "file",
        "d/e": "dir",
        "d/e/c.txt": "file",
        "d/l": "symlink",
        "z": "dir",
        "z/y": "dir",
    }
    assert by_path["a.txt"].size == 1 and by_path["a.txt"].mode == 0o600
    assert by_path["d/b.txt"].size == 3 and by_path["d/e/c.txt"].size == 3
    assert by_path["d/l"].link_target == "../a.txt"

    # what an incremental snapshot compares must change when the content does, even at the same size
    def signature(path: str, scan: list[WorkspaceStat]) -> tuple[int, int, int, int]:
        stat = next(stat for stat in scan if stat.path == path)
        return (stat.size, stat.mtime_ns, stat.ctime_ns, stat.inode)

    assert (await put.sh(ref, "printf b > a.txt && echo BB > d/b.txt")).state.exit_code == 0
    rescan = await put.provider.scan_workspace(ref)
    assert signature("a.txt", rescan) != signature("a.txt", scan)
    assert signature("d/b.txt", rescan) != signature("d/b.txt", scan)
    assert signature("d/e/c.txt", rescan) == signature("d/e/c.txt", scan)


# -- a sandbox that is gone ----------------------------------------------------------------------------


async def assert_gone(put: ProviderUnderTest, ref: SandboxRef, process_id: str) -> None:
    """Every operation on the sandbox raises SandboxGone, the error the workflow rehydrates from."""
    provider = put.provider
    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "start_process": lambda: provider.start_process(ref, ProcessSpec(process_id="after", argv=["true"])),
        "process_state": lambda: provider.process_state(ref, process_id),
        "read_output": lambda: provider.read_output(ref, process_id, 0, 10),
        "write_stdin": lambda: provider.write_stdin(ref, process_id, b"x\n"),
        "kill_process": lambda: provider.kill_process(ref, process_id),
        "read_file": lambda: provider.read_file(ref, "kept.txt"),
        "write_file": lambda: provider.write_file(ref, "new.txt", b"x"),
        "delete_file": lambda: provider.delete_file(ref, "kept.txt"),
        "list_dir": lambda: provider.list_dir(ref),
        "scan_workspace": lambda: provider.scan_workspace(ref),
        "export_paths": lambda: provider.export_paths(ref, ["kept.txt"]),
        "import_paths": lambda: provider.import_paths(ref, tar_of((member("x.txt"), b"x"))),
    }
    wrong = {}
    for name, operation in operations.items():
        try:
            await operation()
        except SandboxGone:
            continue
        except Exception as error:
            wrong[name] = repr(error)
        else:
            wrong[name] = "no error"
    assert not wrong, f"these did not raise SandboxGone: {wrong}"
    assert not await provider.health(ref)


async def test_a_destroyed_sandbox_is_gone(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    ref = await put.create()
    await put.provider.write_file(ref, "kept.txt", b"x")
    process_id = await put.start(ref, ["sleep", "300"])
    await put.provider.destroy(ref)
    await assert_gone(put, ref, process_id)


async def test_a_sandbox_that_vanished_is_gone(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    if put.setup.vanish is None:
        pytest.skip(f"{put.name}: no way to make a sandbox vanish from outside")
    ref = await put.create()
    await put.provider.write_file(ref, "kept.txt", b"x")
    process_id = await put.start(ref, ["sleep", "300"])
    await put.setup.vanish(ref)
    await assert_gone(put, ref, process_id)
    await put.provider.destroy(ref)
    # the workflow's next step: a fresh sandbox, which works
    fresh = await put.create()
    assert (await put.run(fresh, ["echo", "fresh"])).text == "fresh\n"


# -- isolation -----------------------------------------------------------------------------------------


async def test_no_secret_of_the_worker_is_visible_inside(
    provider_under_test: ProviderUnderTest, worker_secrets: dict[str, str]
) -> None:
    put = provider_under_test
    ref = await put.create()
    script = (
        "env; echo '-- /proc/1/environ'; tr '\\0' '\\n' < /proc/1/environ;"
        " echo '-- every process';"
        " cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n';"
        " echo '-- files'; ls -la / /root /home 2>&1; grep -rs contract-secret /workspace /tmp /root;"
        " true"
    )
    for tty in (False, True):
        finished = await put.sh(ref, script, tty=tty)
        assert finished.state.exit_code == 0
        env_part = finished.text.split("-- /proc/1/environ", 1)[0]
        assert "PATH=" in env_part, finished.text  # the probe did run
        for name, value in worker_secrets.items():
            assert value not in finished.text, f"the worker's {name} is visible in the sandbox"
            assert f"{name}=" not in finished.text, f"the worker's {name} is set in the sandbox"


def proc_net_interfaces(proc_net_dev: str) -> set[str]:
    return {line.split(":", 1)[0].strip() for line in proc_net_dev.splitlines()[2:] if ":" in line}


def worker_address() -> str | None:
    """This machine's address on its default route, or None (UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        return probe.getsockname()[0]


async def test_no_network_unless_allowed(provider_under_test: ProviderUnderTest) -> None:
    put = provider_under_test
    server = await asyncio.start_server(lambda _reader, writer: writer.close(), "0.0.0.0", 0)
    port = server.sockets[0].getsockname()[1]
    # the worker's own services (Temporal, the object store) listen on its loopback and its address
    targets = [f"127.0.0.1/{port}", "1.1.1.1/53"]
    if (address := worker_address()) is not None:
        targets.append(f"{address}/{port}")
    probe = "".join(
        f"timeout 3 bash -c 'exec 3<>/dev/tcp/{target}' 2>/dev/null && echo 'reached {target}'"
        f" || echo 'blocked {target}'; "
        for target in targets
    )
    try:
        offline = await put.create()
        interfaces = await put.run(offline, ["cat", "/proc/net/dev"])
        assert proc_net_interfaces(interfaces.text) == {"lo"}, interfaces.text
        finished = await put.sh(offline, probe)
        assert finished.text.splitlines() == [f"blocked {target}" for target in targets]

        online = await put.create(network=True)
        interfaces = await put.run(online, ["cat", "/proc/net/dev"])
        assert proc_net_interfaces(interfaces.text) - {"lo"}, interfaces.text
    finally:
        server.close()


# -- buckets (an optional capability) ------------------------------------------------------------------


async def test_mount_bucket(provider_under_test: ProviderUnderTest, s3_server: S3Server) -> None:
    """A mounted bucket is read (and written, when allowed) by the sandbox's processes, its keys
    never enter the sandbox, snapshots leave it out, and destroying the sandbox deletes nothing in it."""
    put = provider_under_test
    prefix = f"contract-{uuid.uuid4().hex[:10]}"
    client = s3_server.client()
    for key in ("lake/report.csv", "scratch/old.txt"):
        client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{key}", Body=b"a,b\n1,2\n")
    ref = await put.create()

    def mount(path: str, read_only: bool) -> BucketMount:
        return BucketMount(
            path=path,
            bucket=s3_server.bucket,
            prefix=f"{prefix}/{path}",
            endpoint_url=s3_server.endpoint_url,
            region=s3_server.region,
            access_key_id=s3_server.access_key_id,
            secret_access_key=s3_server.secret_access_key,
            read_only=read_only,
        )

    try:
        await put.provider.mount_bucket(ref, mount("lake", read_only=True))
    except SandboxUnavailable as error:
        pytest.skip(f"{put.name} cannot mount buckets here: {error}")
    await put.provider.mount_bucket(ref, mount("lake", read_only=True))  # idempotent
    await put.provider.mount_bucket(ref, mount("scratch", read_only=False))
    await put.provider.write_file(ref, "mine.txt", b"mine")
    secret = s3_server.secret_access_key
    script = (
        "cat lake/report.csv;"
        " (echo x > lake/new.txt) 2>/dev/null && echo lake-writable || echo lake-read-only;"
        " ls scratch; echo new > scratch/new.txt && cat scratch/new.txt;"
        " cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n';"
        # the key in two halves: the command line itself must not hold it
        f" a={secret[:8]}; b={secret[8:]};"
        ' grep -rsF --exclude-dir=lake --exclude-dir=scratch "$a$b" /workspace /tmp;'
        " true"
    )
    finished = await put.sh(ref, script)
    assert finished.text.startswith("a,b\n1,2\nlake-read-only\nold.txt\nnew\n"), finished.text
    assert secret not in finished.text
    assert s3_server.access_key_id not in finished.text
    scanned = [stat.path for stat in await put.provider.scan_workspace(ref)]
    assert "mine.txt" in scanned
    assert not [path for path in scanned if path.startswith(("lake/", "scratch/"))], scanned

    await put.provider.destroy(ref)
    listed = client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)
    assert {entry["Key"] for entry in listed.get("Contents", [])} >= {
        f"{prefix}/lake/report.csv",
        f"{prefix}/scratch/old.txt",
    }, "destroying the sandbox deleted objects through its mounts"
