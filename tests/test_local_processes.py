"""Processes of the local provider: terminals, bounded output, limits, times (real bubblewrap)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest

from sandbox_providers.base import (
    ProcessNotFound,
    ProcessSpec,
    ProcessState,
    SandboxError,
    SandboxLimitError,
    SandboxRef,
)
from sandbox_providers.local import MAX_KEPT_PROCESSES, MAX_LIVE_PROCESSES, LocalProvider
from sandbox_providers.local_supervisor import (
    EXIT_CODE_FILE,
    OUTPUT_CHUNK_BYTES,
    OUTPUT_HEAD_BYTES,
    OUTPUT_RING_BYTES,
    OutputLog,
    read_output_log,
    read_output_size,
)
from tests.sandbox_support import wait_until_done

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


async def output_of(provider: LocalProvider, ref: SandboxRef, process_id: str) -> bytes:
    return (await provider.read_output(ref, process_id, 0, MiB)).data


async def wait_for_output(
    provider: LocalProvider, ref: SandboxRef, process_id: str, needle: bytes, timeout: float = 10
) -> bytes:
    deadline = time.monotonic() + timeout
    while needle not in (output := await output_of(provider, ref, process_id)):
        assert time.monotonic() < deadline, f"no {needle!r} in {output!r}"
        await asyncio.sleep(0.01)
    return output


async def run(
    provider: LocalProvider, ref: SandboxRef, process_id: str, argv: list[str], tty: bool = False
) -> tuple[ProcessState, bytes]:
    await provider.start_process(ref, ProcessSpec(process_id=process_id, argv=argv, tty=tty))
    state = await wait_until_done(provider, ref, process_id)
    return state, await output_of(provider, ref, process_id)


def disk_usage(directory: Path) -> int:
    return sum(max(path.stat().st_size, path.stat().st_blocks * 512) for path in directory.iterdir())


# A stream whose every byte says where it is: record i is i as 8 little-endian bytes.
def pattern(start: int, length: int) -> bytes:
    first = start // 8
    records = array("Q", range(first, (start + length) // 8 + 1)).tobytes()
    return records[start - first * 8 :][:length]


def pattern_writer(total_bytes: int) -> list[str]:
    script = (
        "import sys\nfrom array import array\nout = sys.stdout.buffer\n"
        f"for first in range(0, {total_bytes // 8}, 8192):\n"
        f"    out.write(array('Q', range(first, min(first + 8192, {total_bytes // 8}))).tobytes())\n"
    )
    return ["python3", "-c", script]


# -- terminals ----------------------------------------------------------------------------------------


async def test_an_interactive_python_on_a_terminal(provider: LocalProvider, sandbox: SandboxRef) -> None:
    await provider.start_process(sandbox, ProcessSpec(process_id="repl", argv=["python3", "-q"], tty=True))
    await wait_for_output(provider, sandbox, "repl", b">>> ")
    await provider.write_stdin(sandbox, "repl", b"print(6*7)\n")
    output = await wait_for_output(provider, sandbox, "repl", b"42\r\n")
    assert b"print(6*7)\r\n42\r\n" in output  # the terminal echoes the input, as terminals do
    # Ctrl-C reaches it as SIGINT: the terminal is its controlling terminal
    await provider.write_stdin(sandbox, "repl", b"import time; time.sleep(60)\n")
    await wait_for_output(provider, sandbox, "repl", b"time.sleep(60)\r\n")
    await provider.write_stdin(sandbox, "repl", b"\x03")
    await wait_for_output(provider, sandbox, "repl", b"KeyboardInterrupt")
    await provider.write_stdin(sandbox, "repl", b"exit()\n")
    state = await wait_until_done(provider, sandbox, "repl")
    assert state.exit_code == 0 and not state.lost
    with pytest.raises(SandboxError, match="has ended"):
        await provider.write_stdin(sandbox, "repl", b"print(1)\n")


async def test_tty_or_not(provider: LocalProvider, sandbox: SandboxRef) -> None:
    script = (
        "import os, sys\n"
        "print(sys.stdin.isatty(), sys.stdout.isatty(), sys.stderr.isatty(), os.environ['TERM'])\n"
        "try:\n"
        "    open('/dev/tty').close(); print('controlling terminal')\n"
        "except OSError:\n"
        "    print('no controlling terminal')\n"
    )
    state, output = await run(provider, sandbox, "tty", ["python3", "-c", script], tty=True)
    assert state.exit_code == 0
    assert output == b"True True True xterm\r\ncontrolling terminal\r\n"
    state, output = await run(provider, sandbox, "pipe", ["python3", "-c", script])
    assert state.exit_code == 0
    assert output == b"False False False dumb\nno controlling terminal\n"
    state, output = await run(provider, sandbox, "size", ["sh", "-c", "tty -s && stty size"], tty=True)
    assert state.exit_code == 0 and output == b"24 80\r\n"
    assert (await run(provider, sandbox, "size-pipe", ["tty", "-s"]))[0].exit_code == 1


async def test_commands_get_default_signal_handling(provider: LocalProvider, sandbox: SandboxRef) -> None:
    # the supervisor is Python, which ignores SIGPIPE: its commands must not inherit that
    script = 'yes | head -1; echo "${PIPESTATUS[0]}"'
    for tty in (False, True):
        state, output = await run(provider, sandbox, f"pipe-{tty}", ["bash", "-c", script], tty=tty)
        assert state.exit_code == 0 and output.split() == [b"y", b"141"]


async def test_a_terminal_loses_no_output_at_exit(provider: LocalProvider, sandbox: SandboxRef) -> None:
    state, output = await run(provider, sandbox, "seq", ["seq", "1", "100000"], tty=True)
    assert state.exit_code == 0
    assert output == b"".join(b"%d\r\n" % i for i in range(1, 100001))
    assert state.output_size == len(output)


# -- bounded output -------------------------------------------------------------------------------------


async def test_a_huge_output_keeps_its_head_and_tail(
    provider: LocalProvider, root: Path, sandbox: SandboxRef
) -> None:
    total = 50_000_000
    started = time.monotonic()
    state, _ = await run(provider, sandbox, "huge", pattern_writer(total))
    assert time.monotonic() - started < 10, "50 MB of output must not take long"
    assert state.exit_code == 0 and state.output_size == total
    assert disk_usage(root / "sb" / "procs" / "huge") <= 1.2 * MiB

    head = await provider.read_output(sandbox, "huge", 0, 4096)
    assert head.data == pattern(0, 4096) and head.dropped == 0 and head.next_offset == 4096
    # the head ends where it ends: what follows it is gone
    edge = await provider.read_output(sandbox, "huge", OUTPUT_HEAD_BYTES - 10, 100)
    assert edge.data == pattern(OUTPUT_HEAD_BYTES - 10, 10) and edge.next_offset == OUTPUT_HEAD_BYTES

    tail = await provider.read_output(sandbox, "huge", total - 1000, 4096)
    assert tail.data == pattern(total - 1000, 1000) and tail.dropped == 0 and tail.next_offset == total

    middle = await provider.read_output(sandbox, "huge", 10_000_000, 1000)
    assert middle.dropped == total - OUTPUT_RING_BYTES - 10_000_000
    assert middle.data == pattern(total - OUTPUT_RING_BYTES, 1000)
    assert middle.next_offset == total - OUTPUT_RING_BYTES + 1000

    # reading the whole tail from where the head ends, in one go
    rest = await provider.read_output(sandbox, "huge", OUTPUT_HEAD_BYTES, 2 * MiB)
    assert rest.data == pattern(total - OUTPUT_RING_BYTES, OUTPUT_RING_BYTES) and rest.next_offset == total
    end = await provider.read_output(sandbox, "huge", total, 100)
    assert end.data == b"" and end.next_offset == total and end.dropped == 0


async def test_output_read_in_bursts_loses_and_repeats_nothing(
    provider: LocalProvider, sandbox: SandboxRef
) -> None:
    script = "for i in 1 2 3 4 5 6; do seq $((i * 10000)) $((i * 10000 + 9999)); sleep 0.15; done"
    await provider.start_process(sandbox, ProcessSpec(process_id="bursts", argv=["sh", "-c", script]))
    received = bytearray()
    offset, reads_while_running = 0, 0
    while True:
        state = await provider.process_state(sandbox, "bursts")
        chunk = await provider.read_output(sandbox, "bursts", offset, 7000)
        assert chunk.dropped == 0 and chunk.offset == offset
        received += chunk.data
        offset = chunk.next_offset
        reads_while_running += state.running and bool(chunk.data)
        if not state.running and offset == state.output_size:
            break
        if not chunk.data:
            await asyncio.sleep(0.02)
    expected = b"".join(b"%d\n" % n for i in range(1, 7) for n in range(i * 10000, i * 10000 + 10000))
    assert bytes(received) == expected and len(expected) < MiB
    assert reads_while_running > 6


async def test_reads_racing_the_writer_never_return_overwritten_bytes(
    provider: LocalProvider, sandbox: SandboxRef
) -> None:
    total = 40_000_000
    await provider.start_process(sandbox, ProcessSpec(process_id="race", argv=pattern_writer(total)))
    checked = 0
    while (state := await provider.process_state(sandbox, "race")).running:
        # the oldest bytes the ring holds are the ones the writer overwrites next
        offset = max(OUTPUT_HEAD_BYTES, state.output_size - OUTPUT_RING_BYTES)
        chunk = await provider.read_output(sandbox, "race", offset, 256 * 1024)
        start = offset + chunk.dropped
        assert chunk.data == pattern(start, len(chunk.data)), f"wrong bytes at {start}"
        assert chunk.next_offset == start + len(chunk.data)
        checked += len(chunk.data)
    assert state.exit_code == 0 and state.output_size == total
    assert checked > 0


# -- the output log, without a sandbox ------------------------------------------------------------------


def test_ring_bytes_a_writer_may_be_overwriting_are_not_returned(tmp_path: Path) -> None:
    log = OutputLog(str(tmp_path))
    size = OUTPUT_HEAD_BYTES + OUTPUT_RING_BYTES + 100_000
    log.append(pattern(0, size))
    # the writer has put the next chunk into the ring but not yet published the new size
    next_chunk_at = (size - OUTPUT_HEAD_BYTES) % OUTPUT_RING_BYTES
    os.pwrite(log.ring, b"\xff" * OUTPUT_CHUNK_BYTES, next_chunk_at)
    oldest = size - OUTPUT_RING_BYTES
    dropped, data = read_output_log(tmp_path, oldest, OUTPUT_RING_BYTES)
    assert dropped == OUTPUT_CHUNK_BYTES
    assert data == pattern(oldest + OUTPUT_CHUNK_BYTES, OUTPUT_RING_BYTES - OUTPUT_CHUNK_BYTES)
    # once the writer is done (the exit code is written last), the whole ring is good
    log.append(pattern(size, OUTPUT_CHUNK_BYTES))
    log.close()
    (tmp_path / EXIT_CODE_FILE).write_text("0\n")
    size += OUTPUT_CHUNK_BYTES
    assert read_output_log(tmp_path, 0, 2 * MiB) == (0, pattern(0, OUTPUT_HEAD_BYTES))
    assert read_output_log(tmp_path, OUTPUT_HEAD_BYTES, 2 * MiB) == (
        size - OUTPUT_RING_BYTES - OUTPUT_HEAD_BYTES,
        pattern(size - OUTPUT_RING_BYTES, OUTPUT_RING_BYTES),
    )


def test_readers_racing_a_fast_writer_never_see_overwritten_bytes(tmp_path: Path) -> None:
    # as fast as the page cache takes it, for half a second: the ring is lapped ~1000 times;
    # the stream repeats every 4 MiB, which no ring slot's old and new bytes have in common
    writer_script = f"""
import time
from array import array
from sandbox_providers.local_supervisor import OutputLog
chunks = [array("Q", range(i * 8192, (i + 1) * 8192)).tobytes() for i in range(64)]
log = OutputLog({str(tmp_path)!r})
print("ready", flush=True)
deadline = time.monotonic() + 0.5
written = 0
while time.monotonic() < deadline:
    log.append(chunks[written % 64])
    written += 1
"""
    writer = subprocess.Popen(
        [sys.executable, "-c", writer_script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
    period = 4 * MiB
    stream = pattern(0, period) * 2
    reads = 0
    while writer.poll() is None:
        offset = max(OUTPUT_HEAD_BYTES, read_output_size(tmp_path) - OUTPUT_RING_BYTES)
        dropped, data = read_output_log(tmp_path, offset, OUTPUT_RING_BYTES)
        start = (offset + dropped) % period
        assert data == stream[start : start + len(data)], f"overwritten bytes at {offset + dropped}"
        reads += 1
    assert writer.returncode == 0 and reads > 10
    assert read_output_size(tmp_path) > 20 * period


# -- limits ---------------------------------------------------------------------------------------------


async def test_live_and_kept_process_limits(provider: LocalProvider, root: Path, sandbox: SandboxRef) -> None:
    assert MAX_LIVE_PROCESSES == MAX_KEPT_PROCESSES == 64
    sleeper = ["sleep", "30"]
    for i in range(MAX_LIVE_PROCESSES):
        await provider.start_process(sandbox, ProcessSpec(process_id=f"s{i}", argv=sleeper))
    too_many = r"already runs 64 processes.*wait for one to end or kill one"
    with pytest.raises(SandboxLimitError, match=too_many):
        await provider.start_process(sandbox, ProcessSpec(process_id="one-too-many", argv=sleeper))
    with pytest.raises(ProcessNotFound):
        await provider.process_state(sandbox, "one-too-many")
    # attaching to a running one is no new process
    assert (await provider.start_process(sandbox, ProcessSpec(process_id="s5", argv=sleeper))).running

    await provider.kill_process(sandbox, "s0")
    await provider.start_process(sandbox, ProcessSpec(process_id="after-kill", argv=["true"]))
    assert (await wait_until_done(provider, sandbox, "after-kill")).exit_code == 0
    # s0 ended first, so it made room for after-kill
    with pytest.raises(ProcessNotFound, match="deleted to make room"):
        await provider.process_state(sandbox, "s0")

    # end them all in turn, then start more: the ones that ended first go first
    for i in range(1, MAX_LIVE_PROCESSES):
        await provider.kill_process(sandbox, f"s{i}")
    for i in range(3):
        await provider.start_process(sandbox, ProcessSpec(process_id=f"new{i}", argv=["true"]))
    for gone in ("after-kill", "s1", "s2"):
        with pytest.raises(ProcessNotFound):
            await provider.read_output(sandbox, gone, 0, 10)
    kept = {path.name for path in (root / "sb" / "procs").iterdir()}
    assert len(kept) == MAX_KEPT_PROCESSES
    assert {"s3", "s63", "new0", "new1", "new2"} <= kept
    assert (await provider.process_state(sandbox, "s3")).exit_code == 137
    # a deleted process ran already: its id does not run it again
    with pytest.raises(ProcessNotFound, match="deleted to make room"):
        await provider.start_process(sandbox, ProcessSpec(process_id="s1", argv=sleeper))
    await provider.destroy(sandbox)


# -- times ----------------------------------------------------------------------------------------------


async def test_start_and_end_times(provider: LocalProvider, sandbox: SandboxRef) -> None:
    before = time.time()
    started = await provider.start_process(sandbox, ProcessSpec(process_id="nap", argv=["sleep", "0.3"]))
    assert started.running and started.started_at is not None and started.ended_at is None
    assert before <= started.started_at <= time.time()
    state = await wait_until_done(provider, sandbox, "nap")
    assert state.started_at == started.started_at and state.ended_at is not None
    assert 0.3 <= state.ended_at - state.started_at < 5
    assert state.ended_at <= time.time()
