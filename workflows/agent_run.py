"""AgentRun: the agent loop as a Temporal workflow.

Deterministic orchestration only. Every model call and every command is an
activity, so the run's history is its rollout and a worker crash is survived by
replay. The workflow validates the model's tool arguments itself (pure code): a
malformed call goes back to the model as a tool error without an activity.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.sandbox_io import CreateSandboxRequest, ExecRequest, ExecResult
    from harness.conversation import (
        ConversationItem,
        FunctionCallItem,
        FunctionCallOutputItem,
        MessageItem,
        ModelRequest,
        ModelTurn,
    )
    from harness.specs import AgentSpec, RunRequest, RunResult, RunState, RunStatus
    from harness.tools import BUILTIN_TOOLS, ExecCommandArgs, ToolCallError, ToolDefinition, parse_tool_call
    from sandbox_providers.base import SandboxRef

MODEL_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
    non_retryable_error_types=["ModelRequestRejected"],
)
SANDBOX_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
    non_retryable_error_types=["SandboxGone", "SandboxUnavailable", "SandboxProviderUnknown"],
)
MODEL_CALL_TIMEOUT = timedelta(minutes=15)
SANDBOX_CALL_TIMEOUT = timedelta(minutes=2)
# a command's activity heartbeats while it waits; a dead worker is noticed after this long
EXEC_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
SUMMARY_CHARS = 120


def _short(text: str, limit: int = SUMMARY_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def sandbox_id_for(workflow_id: str) -> str:
    """A provider-safe sandbox id, stable for the workflow (so creation is idempotent)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", workflow_id)[:80]
    digest = hashlib.sha256(workflow_id.encode()).hexdigest()[:12]
    return f"{readable}-{digest}"


def process_id_for(turn: int, call_id: str) -> str:
    """A process id stable across activity retries: one per tool call of the run."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", call_id)[:80]
    return f"t{turn}-{readable}"


@workflow.defn(name="AgentRun")
class AgentRun:
    def __init__(self) -> None:
        self._status = RunStatus(agent="", state=RunState.STARTING, turn=0)

    @workflow.query
    def status(self) -> RunStatus:
        return self._status

    def _set(self, *, state: RunState | None = None, waiting_on: str | None = None) -> None:
        if state is not None:
            self._status.state = state
        self._status.waiting_on = waiting_on
        details = f"**{self._status.agent}** · turn {self._status.turn} · {self._status.state.value}"
        if waiting_on:
            details += f" · waiting on {waiting_on}"
        workflow.set_current_details(details)

    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        agent = await self._resolve_agent(request)
        self._status.agent = agent.name
        tools = self._enabled_tools(agent)
        items: list[ConversationItem] = [MessageItem(role="user", content=request.task)]

        self._set(waiting_on="sandbox creation")
        sandbox_settings = agent.sandbox.merged_with(request.sandbox)
        sandbox = await workflow.execute_activity(
            "create_sandbox",
            CreateSandboxRequest(
                provider=sandbox_settings.provider,
                sandbox_id=sandbox_id_for(workflow.info().workflow_id),
                network=sandbox_settings.network,
                env=sandbox_settings.env,
            ),
            result_type=SandboxRef,
            start_to_close_timeout=SANDBOX_CALL_TIMEOUT,
            retry_policy=SANDBOX_RETRY_POLICY,
            summary=f"sandbox: create ({sandbox_settings.provider})",
        )
        try:
            final_message = await self._loop(request, agent, tools, items, sandbox)
        except BaseException as error:
            self._set(state=RunState.CANCELLED if is_cancelled_exception(error) else RunState.FAILED)
            raise
        finally:
            if sandbox.owner == "harness":
                await workflow.execute_activity(
                    "destroy_sandbox",
                    sandbox,
                    start_to_close_timeout=SANDBOX_CALL_TIMEOUT,
                    retry_policy=SANDBOX_RETRY_POLICY,
                    summary="sandbox: destroy",
                )
        self._set()
        return RunResult(
            agent=agent.name,
            state=self._status.state,
            final_message=final_message,
            turns=self._status.turn,
            usage=self._status.usage,
        )

    async def _resolve_agent(self, request: RunRequest) -> AgentSpec:
        if request.agent_spec is not None:
            return request.agent_spec
        assert request.agent is not None
        return await workflow.execute_activity(
            "resolve_agent",
            request.agent,
            result_type=AgentSpec,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=["UnknownAgent"]),
            summary=f"agent: {request.agent}",
        )

    @staticmethod
    def _enabled_tools(agent: AgentSpec) -> dict[str, ToolDefinition]:
        unknown = [name for name in agent.tools if name not in BUILTIN_TOOLS]
        if unknown:
            raise ApplicationError(
                f"agent {agent.name!r} lists tools this harness does not have: {', '.join(unknown)} "
                f"(available: {', '.join(sorted(BUILTIN_TOOLS))})",
                type="BadAgentSpec",
                non_retryable=True,
            )
        return {name: BUILTIN_TOOLS[name] for name in agent.tools}

    async def _loop(
        self,
        request: RunRequest,
        agent: AgentSpec,
        tools: dict[str, ToolDefinition],
        items: list[ConversationItem],
        sandbox: SandboxRef,
    ) -> str | None:
        model_settings = agent.model.merged_with(request.model)
        while True:
            if self._status.turn >= request.max_turns:
                self._set(state=RunState.MAX_TURNS_REACHED)
                workflow.logger.info("max turns reached", extra={"turns": self._status.turn})
                return None
            self._status.turn += 1
            turn = self._status.turn
            self._set(state=RunState.CALLING_MODEL, waiting_on="model")
            model_turn = await workflow.execute_activity(
                "call_model",
                ModelRequest(
                    settings=model_settings,
                    instructions=agent.instructions,
                    items=items,
                    tools=[tool.spec for tool in tools.values()],
                ),
                result_type=ModelTurn,
                start_to_close_timeout=MODEL_CALL_TIMEOUT,
                retry_policy=MODEL_RETRY_POLICY,
                summary=f"model: turn {turn}, {len(items)} items in",
            )
            self._status.usage = self._status.usage.plus(model_turn.usage)
            items.extend(model_turn.items)
            calls = model_turn.function_calls
            if not calls:
                self._set(state=RunState.COMPLETED)
                return model_turn.text
            self._set(state=RunState.RUNNING_TOOLS, waiting_on=model_turn.summary())
            for call in calls:
                output = await self._run_tool(turn, call, tools, sandbox)
                items.append(FunctionCallOutputItem(call_id=call.call_id, output=output))

    async def _run_tool(
        self, turn: int, call: FunctionCallItem, tools: dict[str, ToolDefinition], sandbox: SandboxRef
    ) -> str:
        try:
            arguments = parse_tool_call(call, tools)
        except ToolCallError as error:
            workflow.logger.info("tool call refused", extra={"tool": call.name, "reason": str(error)})
            return f"error: {error}"
        assert isinstance(arguments, ExecCommandArgs)
        summary = f"exec: {_short(arguments.cmd)}"
        self._set(waiting_on=summary)
        result = await workflow.execute_activity(
            "exec_command",
            ExecRequest(
                sandbox=sandbox,
                process_id=process_id_for(turn, call.call_id),
                cmd=arguments.cmd,
                workdir=arguments.workdir,
                timeout_s=arguments.timeout_s,
            ),
            result_type=ExecResult,
            start_to_close_timeout=timedelta(seconds=arguments.timeout_s) + SANDBOX_CALL_TIMEOUT,
            heartbeat_timeout=EXEC_HEARTBEAT_TIMEOUT,
            retry_policy=SANDBOX_RETRY_POLICY,
            summary=summary,
        )
        return result.for_model()
