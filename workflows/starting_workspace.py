"""Workflow side of a run's starting workspace and of its memory.

Deterministic. At the start, one activity gathers the manifest, the skills and
the agent's memory into a seed snapshot (see activities/workspace_prepare.py);
the sandbox keeper restores every new sandbox from it until the run's first
snapshot. At the end, one activity asks the model for lessons and keeps them.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.memory import MemoryRequest, MemoryUpdate
    from activities.workspace_prepare import PreparedWorkspace, PrepareWorkspaceRequest
    from harness.manifest import Manifest
    from harness.memory import MemoryScope
    from harness.specs import AgentSpec, ModelSettings, RunRequest

PREPARE_TIMEOUT = timedelta(minutes=30)
PREPARE_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_attempts=3,
    non_retryable_error_types=["WorkspaceRefused"],
)
MEMORY_TIMEOUT = timedelta(minutes=10)
MEMORY_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_attempts=3,
    non_retryable_error_types=["ModelRequestRejected", "ContextMissing"],
)


def _refused(message: str) -> ApplicationError:
    return ApplicationError(message, type="BadRunRequest", non_retryable=True)


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _summary(entries: int, skills: int, memory: bool) -> str:
    return (
        f"workspace: {_counted(entries, 'entry' if entries == 1 else 'entrie')}, {_counted(skills, 'skill')}"
        + (", memory" if memory else "")
    )


def memory_scope(agent: AgentSpec, request: RunRequest) -> MemoryScope | None:
    if not agent.memory.enabled:
        if request.memory_key is not None:
            raise _refused(
                f"memory_key {request.memory_key!r} was given, but agent {agent.name!r} keeps no memory "
                "(set memory.enabled in its spec)"
            )
        return None
    return MemoryScope(agent=agent.name, key=request.memory_key or agent.memory.key)


async def prepare_workspace(request: RunRequest, agent: AgentSpec) -> PreparedWorkspace | None:
    """The run's starting workspace, or None when the agent and the run declare nothing."""
    try:
        manifest = agent.manifest.plus(request.manifest) if agent.manifest else request.manifest
    except ValueError as error:
        raise _refused(f"the agent's manifest and the run's do not combine: {error}") from None
    skills = [*agent.skills, *request.skills]
    scope = memory_scope(agent, request)
    if manifest is None and not skills and scope is None:
        return None
    return await workflow.execute_activity(
        "prepare_workspace",
        PrepareWorkspaceRequest(
            run_id=workflow.info().workflow_id,
            manifest=manifest or Manifest(),
            skills=skills,
            memory=scope,
            started_at=int(workflow.now().timestamp()),
            base_snapshot=request.start_from,
            store=request.snapshot_store,
        ),
        result_type=PreparedWorkspace,
        start_to_close_timeout=PREPARE_TIMEOUT,
        heartbeat_timeout=timedelta(seconds=60),
        retry_policy=PREPARE_RETRY_POLICY,
        summary=_summary(len(manifest.entries) if manifest else 0, len(skills), scope is not None),
    )


async def remember(
    scope: MemoryScope,
    settings: ModelSettings,
    instructions: str,
    context: str | None,
    items: list,
    context_window: int,
) -> MemoryUpdate | None:
    """Ask for the run's lessons and keep them; a failure is logged, never the run's failure."""
    try:
        return await workflow.execute_activity(
            "extract_memory",
            MemoryRequest(
                scope=scope,
                settings=settings,
                instructions=instructions,
                context=context,
                items=items,
                context_window=context_window,
            ),
            result_type=MemoryUpdate,
            start_to_close_timeout=MEMORY_TIMEOUT,
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=MEMORY_RETRY_POLICY,
            summary=f"memory: lessons for {scope.agent}" + (f" ({scope.key})" if scope.key else ""),
        )
    except ActivityError as error:
        workflow.logger.warning("memory not updated", extra={"error": str(error.cause or error)})
        return None
