"""Every activity's logs carry its run: workflow id, run id, activity, attempt, agent and turn.

The workflow keeps its agent and turn in a context variable; a workflow
interceptor puts them in a header of each activity it starts (headers take no
part in replay's determinism checks), and an activity interceptor binds them,
with the activity's own info, to structlog's context for the activity's life.
"""

from __future__ import annotations

import contextvars
from typing import Any

import structlog
from temporalio import activity, workflow
from temporalio.converter import default as default_converter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

HEADER = "farline-log-context"
# set by the workflow (AgentRun) as the run goes: {"agent": ..., "turn": ...}
RUN_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "farline_run_context", default=None
)


def set_run_context(agent: str, turn: int) -> None:
    """Called from workflow code: what the activities started from here on log with."""
    RUN_CONTEXT.set({"agent": agent, "turn": str(turn)})


class _Outbound(WorkflowOutboundInterceptor):
    def _with_context(self, headers: Any) -> dict[str, Any]:
        context = RUN_CONTEXT.get()
        if not context:
            return dict(headers)
        return {**headers, HEADER: default_converter().payload_converter.to_payload(context)}

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = self._with_context(input.headers)
        return super().start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = self._with_context(input.headers)
        return super().start_local_activity(input)


class _WorkflowInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        fields: dict[str, Any] = {
            "workflow_id": info.workflow_id,
            "run_id": info.workflow_run_id,
            "activity": info.activity_type,
            "attempt": info.attempt,
        }
        payload = input.headers.get(HEADER)
        if payload is not None:
            fields.update(default_converter().payload_converter.from_payload(payload, dict))
        with structlog.contextvars.bound_contextvars(**fields):
            return await super().execute_activity(input)


class LogContextInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _WorkflowInbound
