"""The application's function tools in the workflow: validation, approval gates, dispatch.

Validation, guardrails and the approval rule are pure (harness.function_tools) and
run here; only the tool itself runs as an activity, on the trusted side.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.function_tools_io import FunctionToolRequest, FunctionToolResult
    from harness.conversation import FunctionCallItem, FunctionCallOutputItem, ToolSpec
    from harness.function_tools import FunctionToolRegistry, RunContext

from workflows.approvals import ApprovalBook

# the activity's own timeout answers first; this margin covers scheduling
TOOL_TIMEOUT_MARGIN = timedelta(seconds=30)


class AppTools:
    """The function tools one run offers, with its approval book."""

    def __init__(
        self, registry: FunctionToolRegistry, names: list[str], context: RunContext, approvals: ApprovalBook
    ) -> None:
        self.registry = registry
        self.context = context
        self.approvals = approvals
        self.offered = {tool.name: tool for tool in registry.enabled(names, context)}

    @property
    def specs(self) -> list[ToolSpec]:
        return [tool.spec for tool in self.offered.values()]

    def handles(self, call: FunctionCallItem) -> bool:
        return call.name in self.offered

    def prepare(self, call: FunctionCallItem) -> BaseModel | str:
        """Validate a call and, if it needs a person's approval, put it in the approval book."""
        arguments = self.registry.validate_call(call.name, call.arguments)
        if isinstance(arguments, BaseModel) and self.registry.requires_approval(call.name, arguments):
            self.approvals.request(
                call.call_id, call.name, call.arguments, self.offered[call.name].approval_timeout_s
            )
        return arguments

    async def run(self, call: FunctionCallItem, prepared: BaseModel | str) -> FunctionCallOutputItem:
        if isinstance(prepared, str):
            return FunctionCallOutputItem(call_id=call.call_id, output=f"error: {prepared}")
        if call.call_id in self.approvals.pending:
            decision = await self.approvals.wait_for(call.call_id)
            if not decision.approved:
                reason = f": {decision.reason}" if decision.reason else ""
                return FunctionCallOutputItem(
                    call_id=call.call_id, output=f"declined by a person, the call was not run{reason}"
                )
        tool = self.offered[call.name]
        try:
            result = await workflow.execute_activity(
                "run_function_tool",
                FunctionToolRequest(
                    tool=call.name,
                    call_id=call.call_id,
                    arguments=call.arguments,
                    flags=self.context.flags,
                    agent=self.context.agent,
                ),
                result_type=FunctionToolResult,
                start_to_close_timeout=timedelta(seconds=tool.timeout_s) + TOOL_TIMEOUT_MARGIN,
                retry_policy=RetryPolicy(maximum_attempts=tool.max_attempts),
                summary=f"tool: {call.name}({call.arguments[:80]})",
            )
        except ActivityError as error:
            # attempts ran out (workers lost mid-call): the model hears of it, the run goes on
            return FunctionCallOutputItem(
                call_id=call.call_id, output=f"error: {call.name} could not run: {error}"
            )
        return FunctionCallOutputItem(call_id=call.call_id, output=result.output)
