"""A run's sub-agents: child AgentRun workflows, started, watched, waited on and closed by tools.

Workflow code (deterministic). Each sub-agent is a child workflow with the id
`<parent id>.<agent id>` and parent close policy REQUEST_CANCEL, so closing or
cancelling a parent closes its whole tree (each child snapshots and releases
its sandbox as it goes). A finished sub-agent's final message and output files
are placed in the parent's workspace, under handoffs/<agent id>/, the next
time the parent looks (wait_agents, list_agents).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ChildWorkflowError, is_cancelled_exception
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.snapshot_io import HandoffRequest, HandoffResult
    from harness.approvals import UserMessage
    from harness.conversation import FunctionCallItem, FunctionCallOutputItem
    from harness.specs import ParentLink, RunRequest, RunResult, RunState, SubagentLimits, UserSandbox
    from harness.subagent_tools import (
        SUBAGENT_TOOLS,
        CloseAgentArgs,
        ListAgentsArgs,
        SendInputArgs,
        SpawnAgentArgs,
        Subagent,
        SubagentState,
        SubagentUpdate,
        WaitAgentsArgs,
    )
    from harness.tools import ToolCallError, ToolDefinition, parse_tool_call

from workflows.sandbox_keeper import SNAPSHOT_RETRY_POLICY, SNAPSHOT_TIMEOUT, SandboxKeeper

CLOSE_WAIT = timedelta(seconds=60)
DELIVERIES_AT_ONCE = 8


class Subagents:
    def __init__(
        self,
        parent_id: str,
        allowed: list[str],
        keeper: SandboxKeeper,
        limits: SubagentLimits,
        depth: int,
        known: list[Subagent] | None = None,
        next_number: int = 1,
    ) -> None:
        self.parent_id = parent_id
        self.allowed = allowed
        self.keeper = keeper
        self.limits = limits
        self.depth = depth
        self.agents: dict[str, Subagent] = {agent.agent_id: agent for agent in known or []}
        self.next_number = next_number
        self._handles: dict[str, ChildWorkflowHandle] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}

    @property
    def tools(self) -> dict[str, ToolDefinition]:
        """The sub-agent tools, for an agent that may spawn and is not at the deepest level."""
        return SUBAGENT_TOOLS if self.allowed and self.depth < self.limits.max_depth else {}

    @property
    def live(self) -> list[Subagent]:
        return [agent for agent in self.agents.values() if not agent.state.finished]

    def handles(self, call: FunctionCallItem) -> bool:
        return call.name in self.tools

    def update(self, update: SubagentUpdate) -> None:
        """A child's signal: it waits for a person's approval, or no longer does."""
        agent = self.agents.get(update.agent_id)
        if agent is not None and not agent.state.finished:
            agent.state, agent.waiting_on = update.state, update.waiting_on

    @staticmethod
    def summary(call: FunctionCallItem) -> str:
        try:
            arguments = parse_tool_call(call, SUBAGENT_TOOLS)
        except ToolCallError:
            return f"{call.name}: refused"
        if isinstance(arguments, SpawnAgentArgs):
            return f"spawn {arguments.agent} ({arguments.workspace})"
        if isinstance(arguments, WaitAgentsArgs):
            return f"wait for {', '.join(arguments.agent_ids) if arguments.agent_ids else 'sub-agents'}"
        return call.name

    async def run_together(self, calls: list[FunctionCallItem]) -> list[FunctionCallOutputItem]:
        """Several calls side by side (the spawns of one turn), their outputs in call order."""
        return list(await asyncio.gather(*(self.run(call) for call in calls)))

    async def run(self, call: FunctionCallItem) -> FunctionCallOutputItem:
        try:
            arguments = parse_tool_call(call, self.tools)
            if isinstance(arguments, SpawnAgentArgs):
                output = await self._spawn(arguments)
            elif isinstance(arguments, SendInputArgs):
                output = await self._send(arguments)
            elif isinstance(arguments, WaitAgentsArgs):
                output = await self._wait(arguments)
            elif isinstance(arguments, CloseAgentArgs):
                output = await self._close(arguments)
            else:
                assert isinstance(arguments, ListAgentsArgs)
                await self._deliver_finished()
                output = json.dumps({"agents": [agent.report() for agent in self.agents.values()]})
        except ToolCallError as error:
            output = f"error: {error}"
        return FunctionCallOutputItem(call_id=call.call_id, output=output)

    # -- the tools -----------------------------------------------------------------------------------

    async def _spawn(self, arguments: SpawnAgentArgs) -> str:
        if arguments.agent not in self.allowed:
            raise ToolCallError(
                f"you may not start agent {arguments.agent!r}; the agents you may start are: "
                + ", ".join(self.allowed)
            )
        if len(self.live) >= self.limits.max_live:
            raise ToolCallError(
                f"{len(self.live)} sub-agents are running, the most this run allows "
                f"(subagent_limits.max_live); wait for one (wait_agents) or close one first"
            )
        # registered before the first wait, so spawns of one turn run side by side within the limit
        agent_id = f"a{self.next_number}"
        self.next_number += 1
        workflow_id = f"{self.parent_id}.{agent_id}"
        entry = Subagent(
            agent_id=agent_id,
            agent=arguments.agent,
            task=arguments.task,
            workspace=arguments.workspace,
            workflow_id=workflow_id,
        )
        self.agents[agent_id] = entry
        keeper = self.keeper
        start_from, user_sandbox = None, None
        if arguments.workspace != "empty":
            # the child starts from the workspace as it is now
            await keeper.snapshot(f"before spawning {agent_id}")
            start_from = keeper.latest_snapshot or keeper.seed
        if arguments.workspace == "shared":
            ref = await keeper.ensure()
            user_sandbox = UserSandbox(
                provider=ref.provider, sandbox_id=ref.sandbox_id, task_queue=ref.task_queue
            )
        request = RunRequest(
            agent=arguments.agent,
            task=arguments.task,
            start_from=start_from,
            user_sandbox=user_sandbox,
            # the parent's snapshots are the child's start, and the child's come back to it
            snapshot_store=keeper.store,
            parent=ParentLink(
                workflow_id=self.parent_id,
                agent_id=agent_id,
                depth=self.depth + 1,
                limits=self.limits,
                shared_workspace=user_sandbox is not None,
            ),
        )
        handle = await workflow.start_child_workflow(
            "AgentRun",
            request,
            id=workflow_id,
            result_type=RunResult,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            static_summary=f"{arguments.agent} (sub-agent {agent_id}): {arguments.task[:100]}",
        )
        entry.state = SubagentState.RUNNING
        self._handles[agent_id] = handle
        if user_sandbox is not None:
            # the parent's sandbox is not torn down (idle, pause) while a child works in it
            keeper.borrowers += 1
        self._watchers[agent_id] = asyncio.create_task(self._watch(entry, handle, user_sandbox is not None))
        workflow.logger.info("sub-agent started", extra={"agent_id": agent_id, "agent": arguments.agent})
        return json.dumps({"agent_id": agent_id, "status": entry.state.value, "workflow_id": workflow_id})

    async def _watch(self, entry: Subagent, handle: ChildWorkflowHandle, borrowed: bool) -> None:
        try:
            result: RunResult = await handle
            entry.state = SubagentState.COMPLETED
            entry.final_message = (
                result.final_message or f"(it ended without a final message: {result.state})"
            )
            entry.snapshot_id = result.snapshot_id
            if result.state is RunState.MAX_TURNS_REACHED:
                entry.error = f"it reached its turn limit after {result.turns} turns"
        except ChildWorkflowError as error:
            if is_cancelled_exception(error):
                entry.state = SubagentState.CLOSED
            else:
                entry.state = SubagentState.FAILED
                cause = error.cause
                entry.error = str(cause.cause or cause) if cause is not None else str(error)
        finally:
            entry.waiting_on = None
            if borrowed:
                self.keeper.borrowers -= 1

    def _known(self, agent_id: str) -> Subagent:
        entry = self.agents.get(agent_id)
        if entry is None:
            known = ", ".join(self.agents) or "none started yet"
            raise ToolCallError(f"no sub-agent {agent_id!r} (yours: {known})")
        return entry

    async def _send(self, arguments: SendInputArgs) -> str:
        entry = self._known(arguments.agent_id)
        if entry.state.finished:
            raise ToolCallError(f"sub-agent {entry.agent_id} has {entry.state.value}; it takes no more input")
        await self._handles[entry.agent_id].signal("user_message", UserMessage(text=arguments.message))
        return json.dumps({"agent_id": entry.agent_id, "delivered": True})

    async def _wait(self, arguments: WaitAgentsArgs) -> str:
        ids = arguments.agent_ids or [agent.agent_id for agent in self.live]
        waited = [self._known(agent_id) for agent_id in ids]
        with contextlib.suppress(builtins.TimeoutError):
            await workflow.wait_condition(
                lambda: all(agent.state.finished for agent in waited),
                timeout=timedelta(seconds=arguments.timeout_s),
            )
        await self._deliver_finished()
        return json.dumps(
            {
                "agents": [agent.report() for agent in waited],
                "all_finished": all(agent.state.finished for agent in waited),
            }
        )

    async def _close(self, arguments: CloseAgentArgs) -> str:
        entry = self._known(arguments.agent_id)
        if not entry.state.finished:
            self._handles[entry.agent_id].cancel()
            try:
                await workflow.wait_condition(lambda: entry.state.finished, timeout=CLOSE_WAIT)
            except builtins.TimeoutError:
                return json.dumps({"agent_id": entry.agent_id, "status": "closing"})
        return json.dumps(entry.report())

    # -- results into the parent's workspace ---------------------------------------------------------

    async def _deliver_finished(self) -> None:
        """Every completed sub-agent's results not yet delivered, several at once (a fan-out of a
        hundred would otherwise pay one activity round trip after another)."""
        limit = asyncio.Semaphore(DELIVERIES_AT_ONCE)

        async def deliver(entry: Subagent) -> None:
            async with limit:
                await self._deliver(entry)

        waiting = [
            entry
            for entry in self.agents.values()
            if entry.state is SubagentState.COMPLETED and entry.delivered_to is None
        ]
        await asyncio.gather(*(deliver(entry) for entry in waiting))

    async def _deliver(self, entry: Subagent) -> None:
        keeper = self.keeper
        keeper.busy += 1
        try:
            ref = await keeper.ensure()
            delivered = await workflow.execute_activity(
                "deliver_handoff",
                HandoffRequest(
                    sandbox=ref,
                    agent_id=entry.agent_id,
                    final_message=entry.final_message or "",
                    child_snapshot=entry.snapshot_id,
                    mtime=int(workflow.now().timestamp()),
                    store=keeper.store,
                ),
                result_type=HandoffResult,
                start_to_close_timeout=SNAPSHOT_TIMEOUT,
                retry_policy=SNAPSHOT_RETRY_POLICY,
                summary=f"handoff: {entry.agent_id} ({entry.agent}) into handoffs/{entry.agent_id}",
                **keeper.activity_options(ref),
            )
        except ActivityError as error:
            entry.error = f"its results could not be placed in your workspace: {error.cause or error}"
            return
        finally:
            keeper.busy -= 1
        keeper.dirty = True
        entry.delivered_to = delivered.path
