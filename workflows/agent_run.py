"""AgentRun: the agent loop as a Temporal workflow.

Deterministic orchestration only. Every model call and every command is an
activity, so the run's history is its rollout and a worker crash is survived by
replay. The workflow validates the model's tool arguments itself (pure code): a
malformed call goes back to the model as a tool error without an activity.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from harness.approvals import ApprovalDecision, PendingApproval, UserMessage
    from harness.conversation import (
        CompactionItem,
        FunctionCallItem,
        FunctionCallOutputItem,
        MessageItem,
        ModelRequest,
        ModelTurn,
    )
    from harness.function_tools import FunctionToolRegistry, RunContext, registry_for
    from harness.log_context import set_run_context
    from harness.search_attributes import FARLINE_AGENT, FARLINE_STATE
    from harness.specs import (
        AgentSpec,
        CompactionSettings,
        ModelSettings,
        RunRequest,
        RunResult,
        RunState,
        RunStatus,
        SandboxMove,
        SandboxSettings,
    )
    from harness.subagent_tools import (
        HANDOFF,
        SPAWN_AGENT,
        HandoffArgs,
        Subagent,
        SubagentState,
        SubagentUpdate,
    )
    from harness.tools import BUILTIN_TOOLS, ToolCallError, ToolDefinition, offered_specs, parse_tool_call

from workflows.app_tools import AppTools
from workflows.approvals import ApprovalBook
from workflows.carried_state import CarriedState, ContinuedRun
from workflows.conversation import Conversation
from workflows.sandbox_keeper import SandboxKeeper
from workflows.starting_workspace import memory_scope, prepare_workspace, remember
from workflows.subagents import Subagents
from workflows.workspace_tools import WorkspaceTools

MODEL_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
    non_retryable_error_types=["ModelRequestRejected"],
)
MODEL_CALL_TIMEOUT = timedelta(minutes=15)
# the model activity heartbeats every 2 s while it waits for the model
MODEL_HEARTBEAT_TIMEOUT = timedelta(seconds=10)


def sandbox_id_for(workflow_id: str) -> str:
    """A provider-safe sandbox id, stable for the workflow (so creation is idempotent)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", workflow_id)[:80]
    digest = hashlib.sha256(workflow_id.encode()).hexdigest()[:12]
    return f"{readable}-{digest}"


# a request that does not validate (a manifest path leaving the workspace, from the plain temporal
# CLI) fails the run with pydantic's message, instead of retrying its first workflow task forever
@workflow.defn(name="AgentRun", failure_exception_types=[ValidationError])
class AgentRun:
    def __init__(self) -> None:
        self._status = RunStatus(agent="", state=RunState.STARTING, turn=0)
        self._approvals = ApprovalBook()
        self._search_attributes = False
        self._published: tuple[str, str] | None = None
        # people's messages, entering the context before the next model call
        self._inbox: list[str] = []
        self._keeper: SandboxKeeper | None = None
        self._subagents: Subagents | None = None
        # set on a sub-agent: its parent hears when it waits for a person
        self._parent_agent_id: str | None = None
        self._parent_signals: set[asyncio.Future[None]] = set()
        self._pause_requested = False
        # resumed on another provider (resume_on): a continue-as-new keeps the new one
        self._sandbox_moved = False
        # what the model is told about its starting workspace; any agent handed the run gets it too
        self._workspace_notes: str | None = None

    @workflow.query
    def status(self) -> RunStatus:
        keeper = self._keeper
        if keeper is None:
            return self._status
        return self._status.model_copy(
            update={
                "sandbox_id": keeper.ref.sandbox_id if keeper.ref is not None else None,
                "sandbox_provider": keeper.ref.provider if keeper.ref else keeper.settings.provider,
                "snapshot_store": keeper.store,
                "snapshot_id": keeper.latest_snapshot,
                "snapshots": keeper.snapshot_count,
                "rehydrations": keeper.rehydrations,
                "pause_requested": self._pause_requested,
            }
        )

    @workflow.signal
    def pause(self) -> None:
        """Pause after the current turn: the workspace is snapshotted and the sandbox torn down."""
        self._pause_requested = True

    @workflow.signal
    def resume(self) -> None:
        self._pause_requested = False

    @workflow.update
    async def resume_on(self, move: SandboxMove) -> str:
        """Resume a paused run on another provider: once its sandbox is released (after the pause's
        snapshot), a sandbox of `move.provider` is made and restored from that snapshot. When that
        fails, the run stays paused where it was and the update fails, saying why."""
        keeper = self._keeper
        assert keeper is not None  # the validator saw to it
        await workflow.wait_condition(lambda: keeper.ref is None or keeper.suspended)
        await keeper.discard("move")
        await workflow.wait_condition(lambda: keeper.ref is None)
        before = keeper.settings
        keeper.settings = SandboxSettings.model_validate(
            {**before.model_dump(), "provider": move.provider, "options": move.options}
        )
        try:
            await keeper.ensure()
        except (ActivityError, ApplicationError) as error:
            keeper.settings = before
            cause = error.cause if isinstance(error, ActivityError) and error.cause else error
            raise ApplicationError(
                f"cannot resume on {move.provider}: {cause}; the run stays paused on {before.provider}",
                type="MoveRefused",
            ) from None
        self._sandbox_moved = True
        self._pause_requested = False
        workflow.logger.info("run moved to another provider", extra={"provider": move.provider})
        snapshot = (keeper.latest_snapshot or keeper.seed or "none")[:12]
        return f"resumed on {move.provider}; the workspace comes from snapshot {snapshot}"

    @resume_on.validator
    def _resume_on_is_possible(self, move: SandboxMove) -> None:
        keeper = self._keeper
        if keeper is None or not self._pause_requested:
            raise ValueError(
                "the run is not paused: `farline pause <run id>` first, then resume it elsewhere"
            )
        if not keeper.snapshots:
            raise ValueError(
                "the run takes no snapshots (sandbox.snapshots is off): its workspace cannot move"
            )
        if keeper.user_ref is not None and keeper.rehydrations == 0:
            raise ValueError(
                f"the run works in your sandbox {keeper.user_ref.sandbox_id!r}, which stays where it is; "
                "resume it without --provider"
            )
        if keeper.borrowers:
            raise ValueError("sub-agents work in this run's sandbox: wait for them before moving it")

    @workflow.query
    def pending_approvals(self) -> list[PendingApproval]:
        return list(self._approvals.pending.values())

    @workflow.signal
    def approve(self, decision: ApprovalDecision) -> None:
        self._approvals.decide(decision.model_copy(update={"approved": True}))

    @workflow.signal
    def decline(self, decision: ApprovalDecision) -> None:
        self._approvals.decide(decision.model_copy(update={"approved": False}))

    @workflow.update
    def decide(self, decision: ApprovalDecision) -> str:
        self._approvals.decide(decision)
        return f"call {decision.call_id} {'approved' if decision.approved else 'declined'}"

    @decide.validator
    def _decide_is_possible(self, decision: ApprovalDecision) -> None:
        refusal = self._approvals.refusal(decision)
        if refusal is not None:
            raise ValueError(refusal)

    @workflow.signal
    def user_message(self, message: UserMessage) -> None:
        self._inbox.append(message.text)

    @workflow.query
    def agents(self) -> list[Subagent]:
        """This run's sub-agents (their workflow ids lead to theirs: `farline approvals` walks the tree)."""
        return list(self._subagents.agents.values()) if self._subagents is not None else []

    @workflow.signal
    def subagent_update(self, update: SubagentUpdate) -> None:
        if self._subagents is not None:
            self._subagents.update(update)

    def _set(self, *, state: RunState | None = None, waiting_on: str | None = None) -> None:
        if state is not None:
            self._tell_parent(self._status.state, state, waiting_on)
            self._status.state = state
        self._status.waiting_on = waiting_on
        self._publish_search_attributes()
        set_run_context(self._status.agent, self._status.turn)
        state = self._status.state.value.replace("_", " ")
        details = f"**{self._status.agent}** · turn {self._status.turn} · {state}"
        if waiting_on:
            details += f" · waiting on {waiting_on}"
        workflow.set_current_details(details)

    def _tell_parent(self, before: RunState, after: RunState, waiting_on: str | None) -> None:
        """A sub-agent tells its parent when it starts and stops waiting for a person's approval."""
        waiting = RunState.WAITING_FOR_APPROVAL
        if self._parent_agent_id is None or (before is waiting) == (after is waiting):
            return
        parent = workflow.info().parent
        assert parent is not None
        update = SubagentUpdate(
            agent_id=self._parent_agent_id,
            state=SubagentState.WAITING_FOR_APPROVAL if after is waiting else SubagentState.RUNNING,
            waiting_on=waiting_on if after is waiting else None,
        )
        signal = workflow.get_external_workflow_handle(parent.workflow_id).signal("subagent_update", update)
        self._parent_signals.add(asyncio.ensure_future(signal))

    def _publish_search_attributes(self) -> None:
        """Agent and state as search attributes, for filtering runs in the web UI."""
        published = (self._status.agent, self._status.state.value)
        if not self._status.agent or published == self._published or not self._search_attributes:
            return
        self._published = published
        workflow.upsert_search_attributes(
            [FARLINE_AGENT.value_set(self._status.agent), FARLINE_STATE.value_set(self._status.state.value)]
        )

    @workflow.run
    async def run(self, start: RunRequest | ContinuedRun) -> RunResult:
        # one argument, whichever way the run began: a request, or a request and its carried state
        request, carried = (
            (start.request, start.carried) if isinstance(start, ContinuedRun) else (start, None)
        )
        prepared = None
        if carried is None:
            # runs recorded before search attributes existed replay without them
            if workflow.patched("search-attributes"):
                self._search_attributes = await workflow.execute_local_activity(
                    "search_attributes_ready",
                    workflow.info().task_queue,
                    result_type=bool,
                    start_to_close_timeout=timedelta(seconds=10),
                )
            agent = await self._resolve_agent(request)
            prepared = await prepare_workspace(request, agent)
            if prepared is not None:
                # the model is told about its workspace, skills and memory in its instructions
                self._workspace_notes = prepared.instructions
                agent = agent.model_copy(
                    update={"instructions": f"{agent.instructions}\n\n{prepared.instructions}"}
                )
                self._status.workspace_seed = prepared.seed_snapshot_id
                self._status.pinned = [
                    f"{pin.source}: {pin.url} {pin.ref} -> {pin.commit}" for pin in prepared.pinned
                ]
                self._status.skills = [skill.name for skill in prepared.skills]
            elif request.start_from is not None:
                self._status.workspace_seed = request.start_from
        else:
            # a continued run: what ran once per run is not run again
            agent = carried.agent
            self._status = carried.status.model_copy(
                update={"continued_as_new": carried.status.continued_as_new + 1}
            )
            self._search_attributes = carried.search_attributes
            self._inbox = list(carried.inbox)
            self._pause_requested = carried.pause_requested
            self._workspace_notes = carried.workspace_notes
        self._status.agent = agent.name
        registry = registry_for(workflow.info().task_queue)
        tools = self._enabled_tools(agent, registry)
        app_tools = AppTools(
            registry, agent.tools, RunContext(flags=request.flags, agent=agent.name), self._approvals
        )

        # runs recorded before snapshots existed replay with an eager sandbox and no snapshots
        managed = workflow.patched("workspace-snapshots")
        keeper = SandboxKeeper(
            sandbox_id_for(workflow.info().workflow_id),
            agent.sandbox.merged_with(request.sandbox),
            request.user_sandbox,
            managed=managed,
            seed=prepared.seed_snapshot_id if prepared is not None else request.start_from,
            mounts=prepared.mounts if prepared is not None else None,
            fill_user_sandbox=request.parent is None or not request.parent.shared_workspace,
            store=request.snapshot_store,
        )
        self._keeper = keeper
        parent = request.parent
        self._parent_agent_id = parent.agent_id if parent is not None else None
        subagents = Subagents(
            workflow.info().workflow_id,
            agent.subagents,
            keeper,
            parent.limits if parent is not None else request.subagent_limits,
            parent.depth if parent is not None else 0,
            carried.subagents if carried is not None else None,
            carried.next_agent if carried is not None else 1,
        )
        self._subagents = subagents
        if carried is not None:
            keeper.restore(carried.keeper)
            workspace = WorkspaceTools(tools, keeper, carried.sessions, carried.next_session_id)
            conversation = Conversation(
                True, carried.context, carried.pending, carried.context_length, carried.context_tokens
            )
        else:
            workspace = WorkspaceTools(tools, keeper)
            # runs recorded before contexts went by reference replay sending the whole context
            conversation = Conversation(workflow.patched("context-by-reference"))
            conversation.add(MessageItem(role="user", content=request.task))
        if not managed:
            self._set(waiting_on="sandbox creation")
            await keeper.ensure()
        watcher = asyncio.create_task(keeper.watch(lambda: self._pause_requested)) if managed else None
        continuing = False
        try:
            final_message = await self._loop(request, agent, workspace, app_tools, subagents, conversation)
            scope = memory_scope(agent, request)
            if scope is not None:
                self._set(waiting_on="memory")
                await remember(
                    scope,
                    agent.model.merged_with(request.model),
                    agent.instructions,
                    conversation.context,
                    conversation.request_items(),
                    (request.compaction or agent.compaction).context_window,
                )
        except workflow.ContinueAsNewError:
            continuing = True
            raise
        except BaseException as error:
            self._set(state=RunState.CANCELLED if is_cancelled_exception(error) else RunState.FAILED)
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
            # the sandbox goes on with the continued run
            if not continuing:
                await keeper.release("end")
        self._set()
        return RunResult(
            agent=self._status.agent,
            state=self._status.state,
            final_message=final_message,
            turns=self._status.turn,
            usage=self._status.usage,
            snapshot_id=keeper.latest_snapshot or keeper.seed,
        )

    async def _resolve_agent(self, request: RunRequest) -> AgentSpec:
        if request.agent_spec is not None:
            return request.agent_spec
        assert request.agent is not None
        return await self._resolve(request.agent, f"agent: {request.agent}")

    @staticmethod
    async def _resolve(name: str, summary: str) -> AgentSpec:
        return await workflow.execute_activity(
            "resolve_agent",
            name,
            result_type=AgentSpec,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=["UnknownAgent"]),
            summary=summary,
        )

    async def _handoff(
        self, call: FunctionCallItem, agent: AgentSpec
    ) -> tuple[FunctionCallOutputItem, AgentSpec | None]:
        """The output of a handoff call, and the agent that takes the run over (None: refused)."""
        try:
            arguments = parse_tool_call(call, {HANDOFF.spec.name: HANDOFF})
            assert isinstance(arguments, HandoffArgs)
            if arguments.agent not in agent.handoffs:
                allowed = ", ".join(agent.handoffs)
                raise ToolCallError(
                    f"you may not hand off to {arguments.agent!r}; you may hand off to: {allowed}"
                )
            successor = await self._resolve(arguments.agent, f"handoff: {agent.name} -> {arguments.agent}")
        except ToolCallError as error:
            return FunctionCallOutputItem(call_id=call.call_id, output=f"error: {error}"), None
        except ActivityError as error:
            return FunctionCallOutputItem(call_id=call.call_id, output=f"error: {error.cause or error}"), None
        if self._workspace_notes:
            successor = successor.model_copy(
                update={"instructions": f"{successor.instructions}\n\n{self._workspace_notes}"}
            )
        note = f"[farline] {agent.name} handed this conversation to you ({successor.name})"
        self._inbox.append(f"{note}: {arguments.message}" if arguments.message else f"{note}.")
        workflow.logger.info("handoff", extra={"from": agent.name, "to": successor.name})
        return FunctionCallOutputItem(
            call_id=call.call_id, output=f"handed off to {successor.name}"
        ), successor

    @staticmethod
    def _enabled_tools(agent: AgentSpec, registry: FunctionToolRegistry) -> dict[str, ToolDefinition]:
        unknown = [name for name in agent.tools if name not in BUILTIN_TOOLS and name not in registry]
        if unknown:
            available = sorted(BUILTIN_TOOLS) + registry.names
            raise ApplicationError(
                f"agent {agent.name!r} lists tools this worker does not have: {', '.join(unknown)} "
                f"(available: {', '.join(available)})",
                type="BadAgentSpec",
                non_retryable=True,
            )
        return {name: BUILTIN_TOOLS[name] for name in agent.tools if name in BUILTIN_TOOLS}

    async def _loop(
        self,
        request: RunRequest,
        agent: AgentSpec,
        workspace: WorkspaceTools,
        app_tools: AppTools,
        subagents: Subagents,
        conversation: Conversation,
    ) -> str | None:
        model_settings = agent.model.merged_with(request.model)
        compaction = request.compaction or agent.compaction
        while True:
            if self._status.turn >= request.max_turns:
                self._set(state=RunState.MAX_TURNS_REACHED)
                workflow.logger.info("max turns reached", extra={"turns": self._status.turn})
                return None
            if self._pause_requested:
                await self._paused(workspace.keeper)
            # a run with sub-agents still running keeps its history: their handles do not carry over
            if conversation.by_reference and not subagents.live and self._history_is_long(request):
                await self._continue_as_new(request, agent, workspace, subagents, conversation)
            self._status.turn += 1
            turn = self._status.turn
            conversation.add(*(MessageItem(role="user", content=text) for text in self._inbox))
            self._inbox.clear()
            notices = workspace.keeper.notices
            conversation.add(*(MessageItem(role="user", content=f"[farline] {notice}") for notice in notices))
            notices.clear()
            if conversation.needs_compaction(compaction):
                await self._compact(conversation, model_settings, agent, compaction)
            self._set(state=RunState.CALLING_MODEL, waiting_on="model")
            model_turn = await workflow.execute_activity(
                "call_model",
                ModelRequest(
                    settings=model_settings,
                    instructions=agent.instructions,
                    items=conversation.request_items(),
                    tools=offered_specs(workspace.tools, bool(model_settings.freeform_apply_patch))
                    + app_tools.specs
                    + [tool.spec for tool in subagents.tools.values()]
                    + ([HANDOFF.spec] if agent.handoffs else []),
                    context=conversation.context,
                    by_reference=conversation.by_reference,
                    server_compaction_threshold=compaction.threshold if compaction.mode == "server" else None,
                ),
                result_type=ModelTurn,
                start_to_close_timeout=MODEL_CALL_TIMEOUT,
                heartbeat_timeout=MODEL_HEARTBEAT_TIMEOUT,
                retry_policy=MODEL_RETRY_POLICY,
                summary=f"model: turn {turn}, {conversation.length} items in",
            )
            self._status.usage = self._status.usage.plus(model_turn.usage)
            conversation.after_turn(model_turn)
            if any(isinstance(item, CompactionItem) for item in model_turn.items):
                self._status.compactions += 1
                self._status.last_compaction = f"server-side, {model_turn.usage.input_tokens:,} tokens in"
            calls = model_turn.function_calls
            if not calls:
                self._set(state=RunState.COMPLETED)
                return model_turn.text
            self._set(state=RunState.RUNNING_TOOLS, waiting_on=model_turn.summary())
            # every approval a turn needs is asked for at once; the next turn waits for all of them
            prepared = {call.call_id: app_tools.prepare(call) for call in calls if app_tools.handles(call)}
            successor: AgentSpec | None = None
            # outputs of calls already run together with an earlier one (the spawns of one turn)
            done_early: dict[str, FunctionCallOutputItem] = {}
            for index, call in enumerate(calls):
                if call.call_id in done_early:
                    conversation.add(done_early.pop(call.call_id))
                    continue
                if call.name == HANDOFF.spec.name and agent.handoffs:
                    self._set(waiting_on=f"handoff from {agent.name}")
                    output, taker = await self._handoff(call, agent)
                    conversation.add(output)
                    successor = taker or successor
                    continue
                if subagents.handles(call):
                    together = [call]
                    while call.name == SPAWN_AGENT.spec.name and index + len(together) < len(calls):
                        following = calls[index + len(together)]
                        if following.name != SPAWN_AGENT.spec.name:
                            break
                        together.append(following)
                    self._set(waiting_on=Subagents.summary(call))
                    first, *rest = await subagents.run_together(together)
                    conversation.add(first)
                    done_early.update({output.call_id: output for output in rest})
                    continue
                if call.call_id not in prepared:
                    self._set(waiting_on=WorkspaceTools.summary(call, workspace.tools))
                    conversation.add(await workspace.run(turn, call))
                    continue
                waiting = self._approvals.pending.get(call.call_id)
                if waiting is not None:
                    self._set(
                        state=RunState.WAITING_FOR_APPROVAL,
                        waiting_on=f"approval of {call.name} ({call.call_id}) since "
                        f"{waiting.since:%Y-%m-%d %H:%M:%S} UTC",
                    )
                else:
                    self._set(state=RunState.RUNNING_TOOLS, waiting_on=f"tool: {call.name}")
                conversation.add(await app_tools.run(call, prepared[call.call_id]))
                self._set(state=RunState.RUNNING_TOOLS)
            if workspace.keeper.dirty:
                self._set(waiting_on="snapshot")
                await workspace.keeper.snapshot(f"turn {turn}")
            if successor is not None:
                # the same conversation, workspace and sandbox; the successor's instructions and tools
                agent = successor
                registry = registry_for(workflow.info().task_queue)
                workspace.tools = self._enabled_tools(agent, registry)
                app_tools = AppTools(
                    registry, agent.tools, RunContext(flags=request.flags, agent=agent.name), self._approvals
                )
                subagents.allowed = agent.subagents
                model_settings = agent.model.merged_with(request.model)
                self._status.agent = agent.name
                self._set()

    async def _compact(
        self,
        conversation: Conversation,
        settings: ModelSettings,
        agent: AgentSpec,
        compaction: CompactionSettings,
    ) -> None:
        number = self._status.compactions + 1
        self._set(state=RunState.CALLING_MODEL, waiting_on=f"compaction {number}")
        result = await conversation.compact(
            settings, agent.instructions, compaction, number, self._status.turn - 1
        )
        self._status.usage = self._status.usage.plus(result.usage)
        self._status.compactions = number
        self._status.last_compaction = f"{result.tokens_before:,} -> {result.tokens_after:,} tokens"
        workflow.logger.info(
            "context compacted",
            extra={"compaction": number, "before": result.tokens_before, "after": result.tokens_after},
        )

    @staticmethod
    def _history_is_long(request: RunRequest) -> bool:
        info = workflow.info()
        limit = request.continue_as_new_after_events
        return info.is_continue_as_new_suggested() or (
            limit is not None and info.get_current_history_length() >= limit
        )

    async def _continue_as_new(
        self,
        request: RunRequest,
        agent: AgentSpec,
        workspace: WorkspaceTools,
        subagents: Subagents,
        conversation: Conversation,
    ) -> None:
        """Start this run again with a fresh history, carrying its state (never returns)."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        keeper = workspace.keeper
        carried = CarriedState(
            agent=agent,
            status=self._status,
            search_attributes=self._search_attributes,
            inbox=self._inbox,
            pause_requested=self._pause_requested,
            context=conversation.context,
            pending=conversation.items,
            context_length=conversation.stored_length,
            context_tokens=conversation.context_tokens,
            keeper=keeper.state(),
            sessions=workspace.sessions,
            next_session_id=workspace.next_session_id,
            subagents=list(subagents.agents.values()),
            next_agent=subagents.next_number,
            workspace_notes=self._workspace_notes,
        )
        workflow.logger.info(
            "continuing as new",
            extra={"turn": self._status.turn, "events": workflow.info().get_current_history_length()},
        )
        if self._sandbox_moved:  # the new run's sandboxes come from where this one moved
            request = request.model_copy(update={"sandbox": keeper.settings})
        workflow.continue_as_new(ContinuedRun(request=request, carried=carried))

    async def _paused(self, keeper: SandboxKeeper) -> None:
        """Wait for `resume`; meanwhile the keeper releases the sandbox (after a snapshot)."""
        self._set(state=RunState.PAUSED, waiting_on="resume (farline resume <run id>)")
        workflow.logger.info("run paused", extra={"turn": self._status.turn})
        await keeper.snapshot("pause")
        await workflow.wait_condition(lambda: not self._pause_requested)
        workflow.logger.info("run resumed", extra={"turn": self._status.turn})
