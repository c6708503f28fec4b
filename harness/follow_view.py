"""A run's story for people, told from its Temporal history: each model turn, tool call and
result, approvals, snapshots and rehydrations, sub-agents, continue-as-new and how it ended.

`RunStory` reads history events one at a time (a finished run's, or a live run's as they
arrive) and answers the lines each adds; `tell` walks every history of a workflow id in
order, waiting for new events when asked to. `farline follow` prints the lines.

Payloads are decoded as plain JSON (dicts), not as the workflow's models, so a history
recorded by an older or newer worker still reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from harness.approvals import PendingApproval
from harness.patch_parse import AddFile, DeleteFile, PatchError, parse_patch
from harness.rollout import CHILD_ENDINGS, run_ids

LineKind = Literal[
    "start",
    "turn",
    "call",
    "result",
    "say",
    "sandbox",
    "snapshot",
    "approval",
    "agent",
    "note",
    "end",
    "failure",
]

# the activities that run a model's tool call, by the name of the activity
_TOOL_ACTIVITIES = frozenset(
    {"exec_command", "write_stdin", "apply_patch", "view_image", "run_function_tool"}
)
_SUMMARY_CHARS = 100
_ARGUMENT_CHARS = 200


@dataclass(frozen=True)
class StoryLine:
    text: str
    kind: LineKind


@dataclass(frozen=True)
class Ending:
    """How the run (its last history) ended: `ok` for a completed workflow."""

    state: str
    ok: bool
    message: str


def short(text: str, limit: int = _SUMMARY_CHARS) -> str:
    """`text` on one line, cut to `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def tokens(usage: dict[str, Any]) -> str:
    return f"{usage.get('input_tokens', 0):,} in / {usage.get('output_tokens', 0):,} out tokens"


def approval_line(owner: str, approval: PendingApproval) -> str:
    """The line for a call that waits for a person, with the command that approves it."""
    call = f"{approval.tool}({short(approval.arguments, _ARGUMENT_CHARS)})"
    return f"  WAITING FOR APPROVAL: {call} — farline approve {owner} {approval.call_id}"


def decline_hint(owner: str, call_id: str) -> str:
    return f"    (or: farline decline {owner} {call_id} --reason '...')"


def _patch_files(patch: str) -> str:
    """The files a patch touches, e.g. "A notes.md, M src/app.py -> src/main.py, D old.txt"."""
    try:
        operations = parse_patch(patch).operations
    except PatchError:
        return "a malformed patch"
    names = []
    for op in operations:
        if isinstance(op, AddFile):
            names.append(f"A {op.path}")
        elif isinstance(op, DeleteFile):
            names.append(f"D {op.path}")
        else:
            names.append(f"M {op.path}" + (f" -> {op.move_to}" if op.move_to else ""))
    return short(", ".join(names) or "no files")


def _arguments(call: dict[str, Any]) -> dict[str, Any] | None:
    try:
        arguments = json.loads(call.get("arguments") or "{}")
    except json.JSONDecodeError:
        return None
    return arguments if isinstance(arguments, dict) else None


def call_summary(call: dict[str, Any]) -> str:
    """A model's tool call on one line, e.g. "exec_command: pytest -q"."""
    name = call.get("name", "?")
    raw = call.get("arguments") or ""
    if call.get("freeform"):
        return f"{name}: {_patch_files(raw) if name == 'apply_patch' else short(raw)}"
    arguments = _arguments(call)
    if arguments is None:
        return f"{name}: malformed arguments {short(raw, 60)}"
    if name == "exec_command" and isinstance(arguments.get("cmd"), str):
        where = f" (in {arguments['workdir']})" if arguments.get("workdir") else ""
        return f"exec_command: {short(arguments['cmd'])}{where}"
    if name == "write_stdin":
        chars = arguments.get("chars") or ""
        what = f"write {short(repr(chars), 60)}" if chars else "poll"
        return f"write_stdin: session {arguments.get('session_id')}, {what}"
    if name == "apply_patch" and isinstance(arguments.get("input"), str):
        return f"apply_patch: {_patch_files(arguments['input'])}"
    if name == "view_image":
        return f"view_image: {short(str(arguments.get('path')))}"
    return f"{name}({short(raw, _ARGUMENT_CHARS)})"


def _exec_result(output: dict[str, Any]) -> str:
    if output.get("error"):
        return f"error: {short(output['error'])}"
    text: str = output.get("output") or ""
    lines = text.splitlines()
    count = plural(len(lines), "line") if lines else "no output"
    if output.get("running"):
        head = f"still running, {count} so far"
    else:
        head = f"exit {output.get('exit_code')}, {count}"
    last = next((line for line in reversed(lines) if line.strip()), None)
    return f"{head}: {short(last, 80)}" if last is not None else head


def result_summary(activity: str, result: dict[str, Any]) -> str:
    """What a tool's activity answered, on one line, e.g. "exit 0, 12 lines: 3 passed"."""
    if activity in ("exec_command", "write_stdin"):
        return _exec_result(result)
    if activity == "view_image":
        if result.get("error"):
            return f"error: {short(result['error'])}"
        return f"image attached ({result.get('note') or 'as it is'})"
    output = short(str(result.get("output", "")))
    return output if result.get("ok", True) else f"refused: {output}"


def _failure_message(failure: Failure) -> str:
    """The failure's message and those of its causes, innermost last."""
    messages = []
    current: Failure | None = failure
    while current is not None and len(messages) < 4:
        if current.message and current.message not in messages:
            messages.append(current.message)
        current = current.cause if current.HasField("cause") else None
    return ": ".join(messages) or "no message"


def _sandbox_gone(failure: Failure) -> bool:
    """Whether an activity failed because its sandbox, or the machine holding it, is gone."""
    current: Failure | None = failure
    while current is not None:
        if current.application_failure_info.type == "SandboxGone":
            return True
        if current.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START:
            return True
        current = current.cause if current.HasField("cause") else None
    return False


@dataclass
class _Call:
    """A tool call of the current turn: whether its line and its result have been told."""

    item: dict[str, Any]
    shown: bool = False
    started: bool = False
    resolved: bool = False

    @property
    def call_id(self) -> str:
        return str(self.item.get("call_id"))

    @property
    def name(self) -> str:
        return str(self.item.get("name"))


@dataclass
class _Activity:
    name: str
    input: dict[str, Any]
    summary: str | None
    call: _Call | None = None


@dataclass
class _Waiting:
    owner: str
    approval: PendingApproval


@dataclass
class RunStory:
    """The story of one workflow id, over all its histories (feed them in order)."""

    converter: DataConverter
    workflow_id: str
    turn: int = 0
    ending: Ending | None = None
    # set when the history read last continued as new (or was retried): the run to read next
    next_run_id: str | None = None
    # tokens of the model calls and compactions read so far
    tokens_used: int = 0
    _calls: list[_Call] = field(default_factory=list)
    _activities: dict[int, _Activity] = field(default_factory=dict)
    _sandbox_up: bool = False
    _rehydrating: bool = False
    _agent: str | None = None
    _waits_told: set[str] = field(default_factory=set)
    _waits_deferred: dict[str, _Waiting] = field(default_factory=dict)
    _unreadable: bool = False
    _lines: list[StoryLine] = field(default_factory=list)
    # the call whose line was told last, if nothing was told since (its result goes right below)
    _last_call: str | None = None

    # -- telling --------------------------------------------------------------------------------

    def _tell(self, text: str, kind: LineKind) -> None:
        self._lines.append(StoryLine(text, kind))
        self._last_call = None

    def _told(self) -> list[StoryLine]:
        lines, self._lines = self._lines, []
        return lines

    def _tell_calls_through(self, call: _Call | None) -> None:
        """Tell the lines of this turn's calls up to `call` (all of them when None)."""
        for pending in self._calls:
            if not pending.shown:
                self._tell(f"  {call_summary(pending.item)}", "call")
                pending.shown = True
                self._last_call = pending.call_id
            if pending is call:
                return

    def _tell_result(self, call: _Call, text: str, kind: LineKind = "result") -> None:
        self._tell_calls_through(call)
        prefix = "  -> " if self._last_call == call.call_id else f"  -> {call.name}: "
        self._tell(prefix + text, kind)
        call.resolved = True

    def _tell_waiting(self, waiting: _Waiting) -> None:
        call = next((c for c in self._calls if c.call_id == waiting.approval.call_id), None)
        if call is not None:
            self._tell_calls_through(call)
        self._tell(approval_line(waiting.owner, waiting.approval), "approval")
        self._tell(decline_hint(waiting.owner, waiting.approval.call_id), "approval")
        self._waits_told.add(waiting.approval.call_id)

    def waiting(self, owner: str, approval: PendingApproval) -> list[StoryLine]:
        """The lines for a call found waiting for approval (the `pending_approvals` query), once.

        A call of this run the history has not shown yet is told after its model turn.
        """
        if approval.call_id in self._waits_told or approval.call_id in self._waits_deferred:
            return []
        waiting = _Waiting(owner, approval)
        known = any(call.call_id == approval.call_id for call in self._calls)
        if owner == self.workflow_id and not known:
            self._waits_deferred[approval.call_id] = waiting
            return []
        self._tell_waiting(waiting)
        return self._told()

    # -- decoding -------------------------------------------------------------------------------

    async def _decode(self, payloads: Payloads) -> dict[str, Any]:
        """The first value of `payloads`, a JSON object; empty when there is none or it cannot be read."""
        if not payloads.payloads:
            return {}
        try:
            [value] = await self.converter.decode_wrapper(payloads)
        except Exception as error:
            # e.g. an external-storage payload this machine cannot reach: the story goes on without it
            if not self._unreadable:
                self._unreadable = True
                self._tell(f"  (some payloads could not be read here: {short(str(error), 120)})", "note")
            return {}
        return value if isinstance(value, dict) else {}

    async def _summary(self, event: HistoryEvent) -> str | None:
        if not event.HasField("user_metadata") or not event.user_metadata.HasField("summary"):
            return None
        try:
            [summary] = await self.converter.decode([event.user_metadata.summary], [str])
        except Exception:
            return None
        return summary if isinstance(summary, str) else None

    # -- reading --------------------------------------------------------------------------------

    async def read(self, event: HistoryEvent) -> list[StoryLine]:
        """The lines this history event adds to the story (often none)."""
        kind = event.event_type
        handler = _HANDLERS.get(kind)
        if handler is not None:
            await handler(self, event)
        elif kind in CHILD_ENDINGS:
            await self._child_ended(event)
        return self._told()

    async def _started(self, event: HistoryEvent) -> None:
        attributes = event.workflow_execution_started_event_attributes
        start = await self._decode(attributes.input)
        if "carried" in start:
            return  # a continued run: its predecessor said so
        request = start.get("request", start)
        agent_spec = request.get("agent_spec") or {}
        self._agent = request.get("agent") or agent_spec.get("name")
        parent = request.get("parent")
        of = f" (sub-agent of {parent['workflow_id']})" if parent else ""
        self._tell(
            f"{self.workflow_id} · agent {self._agent}{of} · task: {short(request.get('task', ''))}", "start"
        )

    async def _scheduled(self, event: HistoryEvent) -> None:
        attributes = event.activity_task_scheduled_event_attributes
        name = attributes.activity_type.name
        activity = _Activity(name, await self._decode(attributes.input), await self._summary(event))
        self._activities[event.event_id] = activity
        if name in ("call_model", "compact_context"):
            # the previous turn's tool results are in this request
            self._close_turn(activity.input.get("items") or [])
            if name == "call_model":
                self.turn += 1
        elif name in _TOOL_ACTIVITIES:
            activity.call = self._match(activity)
            if activity.call is not None:
                activity.call.started = True
                self._tell_calls_through(activity.call)
        elif name == "create_sandbox" and self._sandbox_up:
            # a sandbox that was never torn down is being replaced: it was lost
            self._rehydrating = True
            self._sandbox_up = False

    def _match(self, activity: _Activity) -> _Call | None:
        """The call of this turn that a tool activity runs (calls run one after another)."""
        waiting = [call for call in self._calls if not call.started and not call.resolved]
        request = activity.input
        if activity.name == "run_function_tool":
            return next((c for c in waiting if c.call_id == request.get("call_id")), None)
        same_tool = [call for call in waiting if call.name == activity.name]
        for call in same_tool:
            arguments = _arguments(call.item) or {}
            if activity.name == "exec_command":
                if request.get("cmd") == arguments.get("cmd"):
                    return call
            elif activity.name == "apply_patch":
                if request.get("patch") in (arguments.get("input"), call.item.get("arguments")):
                    return call
            elif activity.name == "view_image":
                if request.get("path") == arguments.get("path"):
                    return call
            elif (request.get("chars") or "") == (arguments.get("chars") or ""):
                return call
        return same_tool[0] if same_tool else None

    def _close_turn(self, items: list[dict[str, Any]]) -> None:
        """Tell what the last turn's calls came to, from the items the model is sent next."""
        outputs = {item.get("call_id"): item for item in items if item.get("type") == "function_call_output"}
        for call in self._calls:
            if not call.resolved and call.call_id in outputs:
                self._tell_result(call, short(str(outputs[call.call_id].get("output", ""))))
        self._tell_calls_through(None)
        self._calls = [call for call in self._calls if not call.resolved and call.call_id not in outputs]
        for item in items:
            content = item.get("content")
            if item.get("type") == "message" and isinstance(content, str) and content.startswith("[farline]"):
                self._tell(f"  note to the model: {short(content.removeprefix('[farline]'), 160)}", "note")

    async def _completed(self, event: HistoryEvent) -> None:
        attributes = event.activity_task_completed_event_attributes
        activity = self._activities.pop(attributes.scheduled_event_id, None)
        if activity is None:
            return
        result = await self._decode(attributes.result)
        if activity.name == "call_model":
            self._model_turn(result)
        elif activity.call is not None:
            self._tell_result(activity.call, result_summary(activity.name, result))
        else:
            self._completed_other(activity, result)

    def _model_turn(self, turn: dict[str, Any]) -> None:
        items = turn.get("items") or []
        usage = turn.get("usage") or {}
        self.tokens_used += usage.get("total_tokens", 0)
        calls = [item for item in items if item.get("type") == "function_call"]
        what = plural(len(calls), "tool call") if calls else "answered"
        self._tell(f"turn {self.turn} · model: {what} ({tokens(usage)})", "turn")
        if any(item.get("type") == "compaction" for item in items):
            self._tell("  context compacted on the server", "note")
        if calls:
            for item in items:
                if item.get("type") == "message" and item.get("role") == "assistant" and item.get("content"):
                    self._tell(f"  says: {short(item['content'], 160)}", "say")
        self._calls += [_Call(item) for item in calls]
        for call in list(self._calls):
            deferred = self._waits_deferred.pop(call.call_id, None)
            if deferred is not None:
                self._tell_waiting(deferred)

    def _completed_other(self, activity: _Activity, result: dict[str, Any]) -> None:
        name, request = activity.name, activity.input
        if name == "snapshot_workspace":
            self._snapshot_taken(str(request.get("reason", "")), result)
        elif name == "restore_workspace":
            what = f"{plural(result.get('files', 0), 'file')}, {size(result.get('total_bytes', 0))}"
            snapshot = str(request.get("snapshot_id", ""))[:12]
            if self._rehydrating:
                self._tell(f"  rehydrated from snapshot {snapshot} ({what})", "sandbox")
            else:
                self._tell(f"  workspace restored from snapshot {snapshot} ({what})", "sandbox")
        elif name == "create_sandbox":
            sandbox = result.get("sandbox_id") or request.get("sandbox_id")
            if self._rehydrating:
                self._tell(f"  sandbox lost: replaced by a new sandbox, {sandbox}", "sandbox")
            else:
                self._tell(f"  sandbox {sandbox} created", "sandbox")
            self._sandbox_up = True
        elif name == "destroy_sandbox":
            self._sandbox_up = False
            self._rehydrating = False
            self._tell(f"  {activity.summary or 'sandbox: torn down'}", "sandbox")
        elif name == "compact_context":
            self.tokens_used += (result.get("usage") or {}).get("total_tokens", 0)
            dropped = (
                f", {result['dropped_items']} oldest items left out" if result.get("dropped_items") else ""
            )
            before, after = result.get("tokens_before", 0), result.get("tokens_after", 0)
            self._tell(f"  context compacted: {before:,} -> {after:,} tokens{dropped}", "note")
        elif name == "resolve_agent":
            agent = result.get("name")
            if self.turn > 0 and agent != self._agent:
                self._tell(f"  handoff: {self._agent} -> {agent}", "agent")
            self._agent = agent
        elif name != "search_attributes_ready":
            self._tell(f"  {activity.summary or name}", "note")
        if name == "restore_workspace":
            self._rehydrating = False

    def _snapshot_taken(self, why: str, result: dict[str, Any]) -> None:
        if not result.get("new", True):
            self._tell(f"  snapshot ({why}): nothing changed", "snapshot")
            return
        changed = f"{plural(result.get('changed_files', 0), 'file')} changed"
        uploaded = f"{size(result.get('uploaded_bytes', 0))} uploaded"
        whole = f"{plural(result.get('files', 0), 'file')}, {size(result.get('total_bytes', 0))} in all"
        snapshot = str(result.get("snapshot_id", ""))[:12]
        self._tell(f"  snapshot ({why}): {changed}, {uploaded}; {whole} ({snapshot})", "snapshot")
        for skipped in result.get("skipped") or []:
            self._tell(f"    skipped: {skipped}", "note")

    async def _activity_failed(self, event: HistoryEvent) -> None:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            attributes = event.activity_task_failed_event_attributes
            failure = attributes.failure
        else:
            timed_out = event.activity_task_timed_out_event_attributes
            attributes, failure = timed_out, timed_out.failure
        activity = self._activities.pop(attributes.scheduled_event_id, None)
        if activity is None:
            return
        message = "its sandbox is gone" if _sandbox_gone(failure) else short(_failure_message(failure), 200)
        if activity.call is not None:
            self._tell_result(activity.call, f"failed: {message}", "failure")
        else:
            self._tell(f"  {activity.summary or activity.name} failed: {message}", "failure")

    async def _child_started(self, event: HistoryEvent) -> None:
        attributes = event.start_child_workflow_execution_initiated_event_attributes
        request = await self._decode(attributes.input)
        agent = request.get("agent") or (request.get("agent_spec") or {}).get("name")
        self._tell(
            f"  sub-agent started: {attributes.workflow_id} ({agent}): {short(request.get('task', ''))}",
            "agent",
        )

    async def _child_ended(self, event: HistoryEvent) -> None:
        field_name, outcome = CHILD_ENDINGS[event.event_type]
        attributes = getattr(event, field_name)
        child = attributes.workflow_execution.workflow_id
        detail = ""
        if event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
            result = await self._decode(attributes.result)
            if result.get("final_message"):
                detail = f": {short(result['final_message'])}"
        elif event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED:
            detail = f": {short(_failure_message(attributes.failure), 200)}"
        self._tell(f"  sub-agent {outcome}: {child}{detail}", "agent")

    async def _signaled(self, event: HistoryEvent) -> None:
        attributes = event.workflow_execution_signaled_event_attributes
        await self._message(attributes.signal_name, attributes.input, "signal")

    async def _update_accepted(self, event: HistoryEvent) -> None:
        request = event.workflow_execution_update_accepted_event_attributes.accepted_request
        await self._message(request.input.name, request.input.args, "update")

    async def _message(self, name: str, payloads: Payloads, how: str) -> None:
        """A signal or an accepted update: approvals, people's messages, pause and resume."""
        value = await self._decode(payloads)
        if name in ("approve", "decline", "decide"):
            approved = name == "approve" or (name == "decide" and value.get("approved", True))
            reason = f" ({value['reason']})" if value.get("reason") else ""
            verb = "approved" if approved else "declined"
            self._tell(f"  {verb} by a person: call {value.get('call_id')}{reason}", "approval")
        elif name == "user_message":
            self._tell(f"  message from a person: {short(str(value.get('text', '')), 160)}", "say")
        elif name == "pause":
            self._tell("  pause asked: the run pauses after this turn (farline resume to go on)", "note")
        elif name == "resume":
            self._tell("  resumed", "note")
        elif name == "subagent_update":
            if value.get("state") == "waiting_for_approval":
                self._tell(f"  sub-agent {value.get('agent_id')} waits: {value.get('waiting_on')}", "agent")
        else:
            self._tell(f"  {how}: {name}", "note")

    async def _continued(self, event: HistoryEvent) -> None:
        attributes = event.workflow_execution_continued_as_new_event_attributes
        self.next_run_id = attributes.new_execution_run_id
        self._tell(
            f"continued as new after turn {self.turn}: a fresh history (run {self.next_run_id})", "note"
        )

    async def _workflow_completed(self, event: HistoryEvent) -> None:
        self._tell_calls_through(None)
        result = await self._decode(event.workflow_execution_completed_event_attributes.result)
        state = result.get("state", "completed")
        usage = result.get("usage") or {}
        final = result.get("final_message")
        if state == "completed":
            lines = (final or "(no final message)").splitlines() or [""]
            self._tell(f"completed: {lines[0]}", "end")
            for line in lines[1:]:
                self._tell(f"  {line}", "end")
        else:
            self._tell(f"{state.replace('_', ' ')}: {short(final or 'no final message', 200)}", "end")
        self._tell(
            f"  {result.get('turns', self.turn)} turns · {usage.get('total_tokens', 0):,} tokens "
            f"({tokens(usage)}) in {usage.get('model_calls', 0)} model calls",
            "end",
        )
        self.ending = Ending(state, True, final or "")

    async def _workflow_ended_badly(self, event: HistoryEvent) -> None:
        self._tell_calls_through(None)
        kind = event.event_type
        retry_run = ""
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            attributes = event.workflow_execution_failed_event_attributes
            state, message = "failed", _failure_message(attributes.failure)
            retry_run = attributes.new_execution_run_id
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
            state, message = "timed out", "the workflow's timeout passed"
            retry_run = event.workflow_execution_timed_out_event_attributes.new_execution_run_id
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
            state, message = "cancelled", "the run was cancelled"
        else:
            attributes = event.workflow_execution_terminated_event_attributes
            state, message = "terminated", attributes.reason or "no reason given"
        if retry_run:
            self.next_run_id = retry_run
            self._tell(f"{state}: {message}; Temporal retries it as run {retry_run}", "failure")
            return
        self._tell(f"{state}: {message}", "failure")
        self._tell(
            f"  after {self.turn} turns · {self.tokens_used:,} tokens",
            "failure",
        )
        self.ending = Ending(state, False, message)

    async def _workflow_task_failed(self, event: HistoryEvent) -> None:
        failure = event.workflow_task_failed_event_attributes.failure
        self._tell(f"  workflow task failed (retried): {short(_failure_message(failure), 200)}", "failure")


_HANDLERS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: RunStory._started,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: RunStory._scheduled,
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: RunStory._completed,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: RunStory._activity_failed,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: RunStory._activity_failed,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: RunStory._child_started,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: RunStory._signaled,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: RunStory._update_accepted,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: RunStory._continued,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: RunStory._workflow_completed,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: RunStory._workflow_ended_badly,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: RunStory._workflow_ended_badly,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: RunStory._workflow_ended_badly,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: RunStory._workflow_ended_badly,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: RunStory._workflow_task_failed,
}


# -- walking the histories ---------------------------------------------------------------------------

_UNREACHABLE = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNKNOWN)


async def first_run_id(client: Client, workflow_id: str) -> str:
    """The first run of the workflow id's newest chain of runs (LookupError: there is none)."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise LookupError(f"no run with workflow id {workflow_id!r}") from None
        raise
    first = description.raw_description.workflow_execution_info.first_run_id
    return first or (await run_ids(client, workflow_id))[0]


async def tell(
    client: Client, story: RunStory, wait: bool = True, retry_s: float = 1.0
) -> AsyncIterator[StoryLine]:
    """The story of `story.workflow_id` from its first history on, line by line; with `wait`,
    new events are waited for (a long poll, which needs no worker) until the run ends.

    A server that cannot be reached is told once and retried while waiting.
    """
    run_id: str | None = await first_run_id(client, story.workflow_id)
    while run_id is not None:
        story.next_run_id = None
        handle = client.get_workflow_handle(story.workflow_id, run_id=run_id)
        seen = 0
        unreachable = False
        while True:
            try:
                async for event in handle.fetch_history_events(wait_new_event=wait):
                    if event.event_id <= seen:
                        continue  # read before the connection dropped
                    seen = event.event_id
                    if unreachable:
                        unreachable = False
                        yield StoryLine("(Temporal is reachable again)", "note")
                    for line in await story.read(event):
                        yield line
                break
            except RPCError as error:
                if not wait or error.status not in _UNREACHABLE:
                    raise
                if not unreachable:
                    unreachable = True
                    yield StoryLine(f"(cannot reach Temporal: {error.message}; retrying)", "failure")
                await asyncio.sleep(retry_s)
        run_id = story.next_run_id
