"""exec_command and write_stdin: commands that outlive a call, as Codex-trained models expect.

A command is started under a process id the workflow derives from the turn and
the call id; if an activity runs twice (a worker died mid-call), the second
attempt attaches to the process the first one started, so nothing runs twice.
Each call waits at most its yield time, then returns the output so far; the
workflow keeps the read offset, so the next call returns only what is new and
a worker crash between calls loses no output.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from temporalio import activity

from activities.providers import ProviderActivities, sandbox_gone
from activities.sandbox_io import ExecOutput, ExecRequest, WriteStdinRequest
from harness.output import middle_truncated
from sandbox_providers.base import (
    ProcessNotFound,
    ProcessSpec,
    ProcessState,
    SandboxError,
    SandboxGone,
    SandboxLimitError,
    SandboxPathError,
    SandboxProvider,
    SandboxRef,
)

logger = structlog.get_logger(__name__)

# Poll quickly at first (most commands end within a second), then back off gently.
POLL_INITIAL_S = 0.01
POLL_GROWTH = 1.2
POLL_MAX_S = 0.25


class ExecActivities(ProviderActivities):
    @activity.defn(name="exec_command")
    async def exec_command(self, request: ExecRequest) -> ExecOutput:
        info = activity.info()
        log = logger.bind(workflow_id=info.workflow_id, process_id=request.process_id, attempt=info.attempt)
        provider = self._provider(request.sandbox.provider)
        started_at = _call_started_at()
        spec = ProcessSpec(
            process_id=request.process_id,
            argv=["bash", "-c", request.cmd],
            workdir=request.workdir or ".",
            tty=request.tty,
        )
        try:
            await provider.start_process(request.sandbox, spec)
        except (SandboxPathError, SandboxLimitError, ProcessNotFound) as error:
            return ExecOutput(error=str(error))
        except SandboxGone as error:
            raise sandbox_gone(error) from None
        log.info("command started", cmd=request.cmd, tty=request.tty, attached=info.attempt > 1)
        output = await _wait_and_collect(
            provider,
            request.sandbox,
            request.process_id,
            0,
            started_at,
            request.yield_time_ms,
            request.max_output_bytes,
        )
        log.info(
            "exec call ended", running=output.running, exit_code=output.exit_code, bytes=output.original_bytes
        )
        return output

    @activity.defn(name="write_stdin")
    async def write_stdin(self, request: WriteStdinRequest) -> ExecOutput:
        info = activity.info()
        log = logger.bind(workflow_id=info.workflow_id, process_id=request.process_id, attempt=info.attempt)
        provider = self._provider(request.sandbox.provider)
        started_at = _call_started_at()
        # An attempt that already wrote says so in its heartbeat, so a retry does not write twice.
        already_written = len(info.heartbeat_details) > 1 and bool(info.heartbeat_details[1])
        if request.chars and not already_written:
            try:
                await provider.write_stdin(request.sandbox, request.process_id, request.chars.encode())
            except SandboxGone as error:
                raise sandbox_gone(error) from None
            except ProcessNotFound:
                return ExecOutput(error="this session's process is gone from the sandbox")
            except SandboxError as error:
                # the process ended before it could read: report its end and final output
                log.info("stdin not written", reason=str(error))
            activity.heartbeat(started_at, True)
        output = await _wait_and_collect(
            provider,
            request.sandbox,
            request.process_id,
            request.offset,
            started_at,
            request.yield_time_ms,
            request.max_output_bytes,
        )
        log.info("write_stdin call ended", running=output.running, chars=len(request.chars))
        return output


def _call_started_at() -> float:
    """When this call began: the first attempt's start survives retries through heartbeat details."""
    details = activity.info().heartbeat_details
    return float(details[0]) if details else time.time()


async def _wait_and_collect(
    provider: SandboxProvider,
    sandbox: SandboxRef,
    process_id: str,
    offset: int,
    started_at: float,
    yield_time_ms: int,
    max_output_bytes: int,
) -> ExecOutput:
    """Wait until the process ends or the yield time is up, then return its output since `offset`."""
    deadline = started_at + yield_time_ms / 1000
    poll = POLL_INITIAL_S
    try:
        state = await provider.process_state(sandbox, process_id)
        while state.running and time.time() < deadline:
            activity.heartbeat(started_at)
            await asyncio.sleep(max(0.0, min(poll, deadline - time.time())))
            poll = min(poll * POLL_GROWTH, POLL_MAX_S)
            state = await provider.process_state(sandbox, process_id)
        if state.lost:
            return ExecOutput(error="the command was lost: its sandbox process ended without an exit code")
        text, original = await _read_since(provider, sandbox, state, offset, max_output_bytes)
    except SandboxGone as error:
        raise sandbox_gone(error) from None
    except ProcessNotFound:
        return ExecOutput(error="this session's process is gone from the sandbox")
    return ExecOutput(
        running=state.running,
        exit_code=state.exit_code,
        output=text,
        original_bytes=original,
        next_offset=max(offset, state.output_size),
        wall_time_s=time.time() - started_at,
    )


async def _read_since(
    provider: SandboxProvider, sandbox: SandboxRef, state: ProcessState, offset: int, max_bytes: int
) -> tuple[str, int]:
    """The output from `offset` to the end as text, cut in the middle past `max_bytes`.

    The sandbox keeps only the head and the tail of a long output; when `offset` falls in
    the part it dropped, the text starts with a marker that says how much is gone.
    """
    end = state.output_size
    total = max(0, end - offset)
    if total == 0:
        return "", 0
    probe = await provider.read_output(sandbox, state.process_id, offset, 1)
    start = offset + probe.dropped
    available = end - start
    half = max_bytes // 2
    if available <= max_bytes:
        head, tail = await _read_range(provider, sandbox, state.process_id, start, end), b""
    else:
        head = await _read_range(provider, sandbox, state.process_id, start, start + half)
        tail = await _read_range(provider, sandbox, state.process_id, end - half, end)
    text = middle_truncated(head, tail, available)
    if probe.dropped:
        text = f"…[{probe.dropped} bytes of output dropped from the sandbox's buffer]…\n{text}"
    return text, total


async def _read_range(
    provider: SandboxProvider, sandbox: SandboxRef, process_id: str, start: int, end: int
) -> bytes:
    """Bytes [start, end) of a process's output (all held: `start` is past any dropped part)."""
    data = bytearray()
    position = start
    while position < end:
        chunk = await provider.read_output(sandbox, process_id, position, end - position)
        if chunk.dropped or chunk.next_offset <= position:
            break
        data += chunk.data
        position = chunk.next_offset
    return bytes(data)
