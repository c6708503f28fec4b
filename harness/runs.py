"""Client-side helpers: start an AgentRun, watch it, link to it in the web UI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from harness.config import FarlineConfig
from harness.specs import RunRequest, RunResult, RunStatus

WORKFLOW_TYPE = "AgentRun"


def web_ui_link(config: FarlineConfig, workflow_id: str) -> str:
    return f"{config.ui_url.rstrip('/')}/namespaces/{config.temporal_namespace}/workflows/{workflow_id}"


def new_workflow_id(agent: str) -> str:
    return f"{agent}-{uuid.uuid4().hex[:12]}"


async def start_run(
    client: Client, config: FarlineConfig, request: RunRequest, workflow_id: str | None = None
) -> WorkflowHandle[object, RunResult]:
    agent = request.agent or (request.agent_spec.name if request.agent_spec else "agent")
    return await client.start_workflow(
        WORKFLOW_TYPE,
        request,
        id=workflow_id or new_workflow_id(agent),
        task_queue=config.task_queue,
        result_type=RunResult,
        static_summary=f"{agent}: {request.task[:100]}",
    )


def describe(status: RunStatus) -> str:
    line = f"turn {status.turn} · {status.state.value}"
    if status.waiting_on:
        line += f" · {status.waiting_on}"
    line += f" · {status.usage.total_tokens} tokens"
    if status.snapshot_id is not None:
        line += f" · {status.snapshots} snapshots (newest {status.snapshot_id[:12]})"
    if status.rehydrations:
        line += f" · sandbox rehydrated {status.rehydrations}x"
    return line


async def follow_run(
    handle: WorkflowHandle[object, RunResult], on_status: Callable[[RunStatus], None], interval_s: float = 0.5
) -> RunResult:
    """Report each change of the run's status until it ends, then return its result.

    Queries fail while no worker is up (a restart); following just keeps trying.
    """
    result_task = asyncio.ensure_future(handle.result())
    last: RunStatus | None = None
    try:
        while not result_task.done():
            try:
                status = await handle.query("status", result_type=RunStatus)
            except (RPCError, WorkflowFailureError):
                status = None
            if status is not None and status != last:
                on_status(status)
                last = status
            await asyncio.wait([result_task], timeout=interval_s)
        return result_task.result()
    finally:
        result_task.cancel()
