"""run_function_tool: one call of an application function tool, on the trusted side.

The tool runs on the worker, where the application's secrets and database are;
nothing of it reaches the sandbox. Whatever the tool does wrong comes back to
the model as `ok=False` and an error line, never as a failed run: a refused call
(validated again here, in case the registry changed under a running workflow),
an exception (its type and message; the traceback goes to the log only) or a
timeout. Temporal retries the activity only when the worker itself fails (it is
lost, or the activity times out), up to the tool's `max_attempts`; a tool may
therefore run again after a crash, and should be idempotent where that matters.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from pydantic import BaseModel
from pydantic_core import to_json
from temporalio import activity

from activities.function_tools_io import FunctionToolRequest, FunctionToolResult
from harness.function_tools import FunctionToolRegistry, RunContext, ToolContext
from harness.output import truncate_middle

logger = structlog.get_logger(__name__)

# the most of a tool's output that goes back to the model (about 10k tokens)
MAX_OUTPUT_BYTES = 40_000


def render_output(value: Any) -> str:
    """A tool's return value as text for the model: a str as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return to_json(value, fallback=str).decode()


class FunctionToolActivities:
    def __init__(self, registry: FunctionToolRegistry) -> None:
        self._registry = registry

    @activity.defn(name="run_function_tool")
    async def run_function_tool(self, request: FunctionToolRequest) -> FunctionToolResult:
        info = activity.info()
        log = logger.bind(
            workflow_id=info.workflow_id, tool=request.tool, call_id=request.call_id, attempt=info.attempt
        )
        run = RunContext(flags=request.flags, agent=request.agent)
        if request.tool not in self._registry or not self._registry.get(request.tool).enabled_for(run):
            log.warning("function_tool.not_enabled")
            return FunctionToolResult(
                ok=False, output=f"error: tool {request.tool} is not enabled for this run"
            )
        args = self._registry.validate_call(request.tool, request.arguments)
        if isinstance(args, str):
            log.info("function_tool.refused", reason=args)
            return FunctionToolResult(ok=False, output=f"error: {args}")

        tool = self._registry.get(request.tool)
        context = ToolContext(
            workflow_id=info.workflow_id, call_id=request.call_id, flags=request.flags, agent=request.agent
        )
        started = time.monotonic()
        task = asyncio.create_task(tool.invoke(args, context))
        # retrieve a late exception of a task given up on, so that it is not reported as lost
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            finished, _ = await asyncio.wait({task}, timeout=tool.timeout_s)
        finally:
            if not task.done():
                task.cancel()
        if not finished:
            log.warning("function_tool.timed_out", timeout_s=tool.timeout_s)
            return FunctionToolResult(
                ok=False,
                output=f"error: {tool.name} did not finish within {tool.timeout_s:g} seconds (abandoned)",
            )
        try:
            value = task.result()
        except Exception as error:
            log.exception("function_tool.raised")
            return FunctionToolResult(ok=False, output=f"error: {type(error).__name__}: {error}")
        output = truncate_middle(render_output(value), MAX_OUTPUT_BYTES)
        log.info(
            "function_tool.done", duration_ms=round((time.monotonic() - started) * 1000), chars=len(output)
        )
        return FunctionToolResult(ok=True, output=output)
