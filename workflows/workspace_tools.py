"""Running the model's workspace tools from the workflow: validation, dispatch, exec sessions.

Workflow code (deterministic): each tool is one activity; the table of running
exec sessions (session id -> process and read offset) lives here, in workflow
state, so a worker crash between exec_command and write_stdin loses nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.patch_io import ApplyPatchRequest, ApplyPatchResult
    from activities.sandbox_io import (
        ExecOutput,
        ExecRequest,
        ViewImageRequest,
        ViewImageResult,
        WriteStdinRequest,
    )
    from harness.apply_patch import ApplyPatchArgs
    from harness.conversation import FunctionCallItem, FunctionCallOutputItem
    from harness.tools import (
        EMPTY_POLL_MIN_MS,
        EXEC_YIELD_DEFAULT_MS,
        WRITE_YIELD_DEFAULT_MS,
        ExecCommandArgs,
        ToolCallError,
        ToolDefinition,
        ViewImageArgs,
        WriteStdinArgs,
        clamp_yield_ms,
        output_budget_bytes,
        parse_tool_call,
    )
    from sandbox_providers.base import SandboxRef

from workflows.sandbox_keeper import SANDBOX_CALL_TIMEOUT, SANDBOX_RETRY_POLICY, SandboxKeeper, sandbox_lost

# a waiting exec activity heartbeats; a dead worker is noticed after this long
EXEC_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
SUMMARY_CHARS = 120


def short(text: str, limit: int = SUMMARY_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def patch_summary(patch: str) -> str:
    """The files a patch names, e.g. "M src/app.py, A tests/test_app.py" (for the web UI)."""
    marks = {"*** Add File: ": "A", "*** Update File: ": "M", "*** Delete File: ": "D"}
    files = [
        f"{mark} {line.strip()[len(prefix) :].strip()}"
        for line in patch.splitlines()
        for prefix, mark in marks.items()
        if line.strip().startswith(prefix.strip())
    ]
    return short(", ".join(files) or "no files", 100)


def process_id_for(turn: int, call_id: str) -> str:
    """A process id stable across activity retries: one per tool call of the run."""
    readable = "".join(c if c.isalnum() or c in "_.-" else "_" for c in call_id)[:80]
    return f"t{turn}-{readable}"


async def _process_call(
    activity: str,
    request: ExecRequest | WriteStdinRequest,
    yield_ms: int,
    summary: str,
    options: dict[str, Any],
) -> ExecOutput:
    """An exec_command or write_stdin activity: it heartbeats while it waits up to the yield time."""
    return await workflow.execute_activity(
        activity,
        request,
        result_type=ExecOutput,
        start_to_close_timeout=timedelta(milliseconds=yield_ms) + SANDBOX_CALL_TIMEOUT,
        heartbeat_timeout=EXEC_HEARTBEAT_TIMEOUT,
        retry_policy=SANDBOX_RETRY_POLICY,
        summary=summary,
        **options,
    )


class ExecSession(BaseModel):
    process_id: str
    # output before this byte has been shown to the model
    offset: int
    cmd: str
    # the keeper's generation of the sandbox it runs in (a replaced sandbox ends its sessions)
    generation: int = 0


class WorkspaceTools:
    """The tools of one run, on the sandbox its keeper provides."""

    def __init__(
        self,
        tools: dict[str, ToolDefinition],
        keeper: SandboxKeeper,
        sessions: dict[int, ExecSession] | None = None,
        next_session_id: int = 1,
    ) -> None:
        self.tools = tools
        self.keeper = keeper
        # carried over a continue-as-new, like the keeper's state
        self.sessions: dict[int, ExecSession] = dict(sessions or {})
        self.next_session_id = next_session_id

    async def run(self, turn: int, call: FunctionCallItem) -> FunctionCallOutputItem:
        """The output of one tool call; a call the model got wrong comes back as a tool error."""
        try:
            arguments = parse_tool_call(call, self.tools)
        except ToolCallError as error:
            workflow.logger.info("tool call refused", extra={"tool": call.name, "reason": str(error)})
            return FunctionCallOutputItem(
                call_id=call.call_id, output=f"error: {error}", freeform=call.freeform
            )
        keeper = self.keeper
        keeper.busy += 1
        try:
            sandbox = await keeper.ensure()
            try:
                return await self._dispatch(turn, call, arguments, sandbox)
            except ActivityError as error:
                if not (keeper.snapshots and sandbox_lost(error)):
                    raise
                output = await keeper.replace(sandbox)
                return FunctionCallOutputItem(call_id=call.call_id, output=output, freeform=call.freeform)
        finally:
            keeper.busy -= 1
            # only view_image leaves the workspace as it was
            keeper.dirty = keeper.dirty or not isinstance(arguments, ViewImageArgs)
            keeper.live_sessions = len(self.sessions)

    async def _dispatch(
        self, turn: int, call: FunctionCallItem, arguments: object, sandbox: SandboxRef
    ) -> FunctionCallOutputItem:
        if isinstance(arguments, ExecCommandArgs):
            output = await self._exec(sandbox, process_id_for(turn, call.call_id), arguments)
        elif isinstance(arguments, WriteStdinArgs):
            output = await self._write_stdin(sandbox, arguments)
        elif isinstance(arguments, ApplyPatchArgs):
            output = await self._apply_patch(sandbox, arguments)
        elif isinstance(arguments, ViewImageArgs):
            return await self._view_image(sandbox, call, arguments)
        else:
            raise TypeError(f"no dispatch for {type(arguments).__name__}")
        return FunctionCallOutputItem(call_id=call.call_id, output=output, freeform=call.freeform)

    @staticmethod
    def summary(call: FunctionCallItem, tools: dict[str, ToolDefinition]) -> str:
        """What the web UI shows while the call runs, e.g. "exec: pytest -q"."""
        try:
            arguments = parse_tool_call(call, tools)
        except ToolCallError:
            return f"{call.name}: refused"
        if isinstance(arguments, ExecCommandArgs):
            return f"exec: {short(arguments.cmd)}"
        if isinstance(arguments, WriteStdinArgs):
            what = f"write {short(repr(arguments.chars), 60)}" if arguments.chars else "poll"
            return f"stdin: session {arguments.session_id}, {what}"
        if isinstance(arguments, ApplyPatchArgs):
            return f"apply_patch: {patch_summary(arguments.input)}"
        if isinstance(arguments, ViewImageArgs):
            return f"view_image: {short(arguments.path)}"
        return call.name

    async def _exec(self, sandbox: SandboxRef, process_id: str, args: ExecCommandArgs) -> str:
        yield_ms = clamp_yield_ms(args.yield_time_ms, EXEC_YIELD_DEFAULT_MS)
        request = ExecRequest(
            sandbox=sandbox,
            process_id=process_id,
            cmd=args.cmd,
            workdir=args.workdir,
            tty=args.tty,
            yield_time_ms=yield_ms,
            max_output_bytes=output_budget_bytes(args.max_output_tokens),
        )
        result = await _process_call(
            "exec_command",
            request,
            yield_ms,
            f"exec: {short(args.cmd)}",
            self.keeper.activity_options(sandbox),
        )
        session_id = None
        if result.running:
            session_id = self.next_session_id
            self.next_session_id += 1
            self.sessions[session_id] = ExecSession(
                process_id=process_id,
                offset=result.next_offset,
                cmd=args.cmd,
                generation=self.keeper.generation,
            )
        return result.for_model(session_id)

    async def _write_stdin(self, sandbox: SandboxRef, args: WriteStdinArgs) -> str:
        session = self.sessions.get(args.session_id)
        if session is not None and session.generation != self.keeper.generation:
            del self.sessions[args.session_id]
            return (
                f"error: session {args.session_id} ({short(session.cmd, 60)}) is no longer running: the "
                "sandbox it ran in was torn down or replaced since; start the command again if needed"
            )
        if session is None:
            running = ", ".join(str(i) for i in sorted(self.sessions)) or "none"
            return (
                f"error: there is no running session {args.session_id} (it has ended, or was never "
                f"started); running sessions: {running}"
            )
        yield_ms = clamp_yield_ms(args.yield_time_ms, WRITE_YIELD_DEFAULT_MS)
        if not args.chars:
            yield_ms = max(yield_ms, EMPTY_POLL_MIN_MS)
        what = f"write {short(repr(args.chars), 60)}" if args.chars else "poll"
        request = WriteStdinRequest(
            sandbox=sandbox,
            process_id=session.process_id,
            chars=args.chars,
            offset=session.offset,
            yield_time_ms=yield_ms,
            max_output_bytes=output_budget_bytes(args.max_output_tokens),
        )
        summary = f"stdin: session {args.session_id} ({short(session.cmd, 60)}), {what}"
        result = await _process_call(
            "write_stdin", request, yield_ms, summary, self.keeper.activity_options(sandbox)
        )
        session.offset = max(session.offset, result.next_offset)
        if not result.running:
            del self.sessions[args.session_id]
        return result.for_model(args.session_id)

    async def _apply_patch(self, sandbox: SandboxRef, args: ApplyPatchArgs) -> str:
        result = await workflow.execute_activity(
            "apply_patch",
            ApplyPatchRequest(sandbox=sandbox, patch=args.input),
            result_type=ApplyPatchResult,
            start_to_close_timeout=SANDBOX_CALL_TIMEOUT,
            retry_policy=SANDBOX_RETRY_POLICY,
            summary=f"apply_patch: {patch_summary(args.input)}",
            **self.keeper.activity_options(sandbox),
        )
        return result.output

    async def _view_image(
        self, sandbox: SandboxRef, call: FunctionCallItem, args: ViewImageArgs
    ) -> FunctionCallOutputItem:
        result = await workflow.execute_activity(
            "view_image",
            ViewImageRequest(sandbox=sandbox, path=args.path),
            result_type=ViewImageResult,
            start_to_close_timeout=SANDBOX_CALL_TIMEOUT,
            retry_policy=SANDBOX_RETRY_POLICY,
            summary=f"view_image: {short(args.path)}",
            **self.keeper.activity_options(sandbox),
        )
        if result.error is not None or result.image is None:
            return FunctionCallOutputItem(call_id=call.call_id, output=f"error: {result.error}")
        return FunctionCallOutputItem(
            call_id=call.call_id, output=f"Image {args.path} ({result.note}) attached.", images=[result.image]
        )
