"""Sandbox activities: create and destroy a sandbox, run a command in it.

A command is started under a process id the workflow derives from the turn and
the call id. If this activity runs twice (a worker died mid-command), the second
attempt attaches to the process the first one started: it never runs twice.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.sandbox_io import CreateSandboxRequest, ExecRequest, ExecResult
from harness.output import middle_truncated
from sandbox_providers.base import (
    ProcessSpec,
    SandboxConfig,
    SandboxGone,
    SandboxPathError,
    SandboxProvider,
    SandboxRef,
    SandboxUnavailable,
)

logger = structlog.get_logger(__name__)

# Poll quickly at first (most commands end within a second), then back off gently.
POLL_INITIAL_S = 0.01
POLL_GROWTH = 1.2
POLL_MAX_S = 0.25


class SandboxActivities:
    """Activities bound to the providers this worker can drive."""

    def __init__(self, providers: dict[str, SandboxProvider]) -> None:
        self._providers = providers

    def _provider(self, name: str) -> SandboxProvider:
        try:
            return self._providers[name]
        except KeyError:
            known = ", ".join(sorted(self._providers)) or "none"
            raise ApplicationError(
                f"sandbox provider {name!r} is not available on this worker (available: {known})",
                type="SandboxProviderUnknown",
                non_retryable=True,
            ) from None

    @activity.defn(name="create_sandbox")
    async def create_sandbox(self, request: CreateSandboxRequest) -> SandboxRef:
        provider = self._provider(request.provider)
        try:
            ref = await provider.create(
                request.sandbox_id, SandboxConfig(network=request.network, env=request.env)
            )
        except SandboxUnavailable as error:
            raise ApplicationError(str(error), type="SandboxUnavailable", non_retryable=True) from None
        logger.info("sandbox created", workflow_id=activity.info().workflow_id, sandbox_id=ref.sandbox_id)
        return ref

    @activity.defn(name="destroy_sandbox")
    async def destroy_sandbox(self, ref: SandboxRef) -> None:
        await self._provider(ref.provider).destroy(ref)
        logger.info("sandbox destroyed", workflow_id=activity.info().workflow_id, sandbox_id=ref.sandbox_id)

    @activity.defn(name="exec_command")
    async def exec_command(self, request: ExecRequest) -> ExecResult:
        info = activity.info()
        log = logger.bind(workflow_id=info.workflow_id, process_id=request.process_id, attempt=info.attempt)
        provider = self._provider(request.sandbox.provider)
        # the first attempt's start time survives retries through the heartbeat details
        details = info.heartbeat_details
        started_at = float(details[0]) if details else time.time()
        spec = ProcessSpec(
            process_id=request.process_id, argv=["bash", "-c", request.cmd], workdir=request.workdir or "."
        )
        try:
            state = await provider.start_process(request.sandbox, spec)
        except SandboxPathError as error:
            return ExecResult(exit_code=None, error=str(error))
        except SandboxGone as error:
            raise ApplicationError(
                f"the sandbox is gone: {error}", type="SandboxGone", non_retryable=True
            ) from None
        log.info("command started", cmd=request.cmd, attached=info.attempt > 1)

        timed_out = False
        poll = POLL_INITIAL_S
        while state.running:
            activity.heartbeat(started_at)
            if time.time() - started_at >= request.timeout_s:
                await provider.kill_process(request.sandbox, request.process_id)
                timed_out = True
            await asyncio.sleep(poll)
            poll = min(poll * POLL_GROWTH, POLL_MAX_S)
            state = await provider.process_state(request.sandbox, request.process_id)
        wall_time_s = time.time() - started_at

        if state.lost:
            return ExecResult(
                exit_code=None,
                error="the command was lost: its sandbox process ended without an exit code",
                wall_time_s=wall_time_s,
            )
        output = await self._capped_output(provider, request, state.output_size)
        log.info(
            "command ended", exit_code=state.exit_code, timed_out=timed_out, output_bytes=state.output_size
        )
        return ExecResult(
            exit_code=state.exit_code,
            timed_out=timed_out,
            output=output,
            output_bytes=state.output_size,
            wall_time_s=wall_time_s,
        )

    @staticmethod
    async def _capped_output(provider: SandboxProvider, request: ExecRequest, size: int) -> str:
        half = request.max_output_bytes // 2
        head = await provider.read_output(request.sandbox, request.process_id, 0, half)
        tail_offset = max(size - half, len(head.data))
        tail = await provider.read_output(
            request.sandbox, request.process_id, tail_offset, size - tail_offset
        )
        return middle_truncated(head.data, tail.data, size)
