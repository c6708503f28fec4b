"""Running the model's workspace tools from the workflow: validation, dispatch, exec sessions.

Workflow code (deterministic): each tool is one activity; the table of running
exec sessions (session id -> process and read offset) lives here, in workflow
state, so a worker crash between exec_command and write_stdin loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

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

SANDBOX_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
    non_retryable_error_types=["SandboxGone", "SandboxUnavailable", "SandboxProviderUnknown"],
)
SANDBOX_CALL_TIMEOUT = timedelta(minutes=2)
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
    activity: str, request: ExecRequest | WriteStdinRequest, yield_ms: int, summary: str
) -> ExecOutput:
    """An exec_command or write_stdin activity: it heartbeats while it waits up to the yield time."""
    return await workflow.execute_activity(
        activity,
        request,
        task_queue=request.sandbox.task_queue,
        result_type=ExecOutput,
        start_to_close_timeout=timedelta(milliseconds=yield_ms) + SANDBOX_CALL_TIMEOUT,
        heartbeat_timeout=EXEC_HEARTBEAT_TIMEOUT,
        retry_policy=SANDBOX_RETRY_POLICY,
        summary=summary,
    )


@dataclass
class ExecSession:
    process_id: str
    # output before this byte has been shown to the model
    offset: int
    cmd: str


class WorkspaceTools:
    """The tools of one run, bound to its sandbox."""

    def __init__(self, tools: dict[str, ToolDefinition], sandbox: SandboxRef) -> None:
        self.tools = tools
        self.sandbox = sandbox
        self.sessions: dict[int, ExecSession] = {}
        self._next_session_id = 1

    async def run(self, turn: int, call: FunctionCallItem) -> FunctionCallOutputItem:
        """The output of one tool call; a call the model got wrong comes back as a tool error."""
        try:
            arguments = parse_tool_call(call, self.tools)
        except ToolCallError as error:
            workflow.logger.info("tool call refused", extra={"tool": call.name, "reason": str(error)})
            return FunctionCallOutputItem(
                call_id=call.call_id, output=f"error: {error}", freeform=call.freeform
            )
        if isinstance(arguments, ExecCommandArgs):
            output = await self._exec(process_id_for(turn, call.call_id), arguments)
        elif isinstance(arguments, WriteStdinArgs):
            output = await self._write_stdin(arguments)
        elif isinstance(arguments, ApplyPatchArgs):
            output = await self._apply_patch(arguments)
        elif isinstance(arguments, ViewImageArgs):
            return await self._view_image(call, arguments)
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

    async def _exec(self, process_id: str, args: ExecCommandArgs) -> str:
        yield_ms = clamp_yield_ms(args.yield_time_ms, EXEC_YIELD_DEFAULT_MS)
        request = ExecRequest(
            sandbox=self.sandbox,
            process_id=process_id,
            cmd=args.cmd,
            workdir=args.workdir,
            tty=args.tty,
            yield_time_ms=yield_ms,
            max_output_bytes=output_budget_bytes(args.max_output_tokens),
        )
        result = await _process_call("exec_command", request, yield_ms, f"exec: {short(args.cmd)}")
        session_id = None
        if result.running:
            session_id = self._next_session_id
            self._next_session_id += 1
            self.sessions[session_id] = ExecSession(
                process_id=process_id, offset=result.next_offset, cmd=args.cmd
            )
        return result.for_model(session_id)

    async def _write_stdin(self, args: WriteStdinArgs) -> str:
        session = self.sessions.get(args.session_id)
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
            sandbox=self.sandbox,
            process_id=session.process_id,
            chars=args.chars,
            offset=session.offset,
            yield_time_ms=yield_ms,
            max_output_bytes=output_budget_bytes(args.max_output_tokens),
        )
        summary = f"stdin: session {args.session_id} ({short(session.cmd, 60)}), {what}"
        result = await _process_call("write_stdin", request, yield_ms, summary)
        session.offset = max(session.offset, result.next_offset)
        if not result.running:
            del self.sessions[args.session_id]
        return result.for_model(args.session_id)

    async def _apply_patch(self, args: ApplyPatchArgs) -> str:
        result = await workflow.execute_activity(
            "apply_patch",
            ApplyPatchRequest(sandbox=self.sandbox, patch=args.input),
            task_queue=self.sandbox.task_queue,
            result_type=ApplyPatchResult,
            start_to_close_timeout=SANDBOX_CALL_TIMEOUT,
            retry_policy=SANDBOX_RETRY_POLICY,
            summary=f"apply_patch: {patch_summary(args.input)}",
        )
        return result.output

    async def _view_image(self, call: FunctionCallItem, args: ViewImageArgs) -> FunctionCallOutputItem:
        result = await workflow.execute_activity(
            "view_image",
            ViewImageRequest(sandbox=self.sandbox, path=args.path),
            task_queue=self.sandbox.task_queue,
            result_type=ViewImageResult,
            start_to_close_timeout=SANDBOX_CALL_TIMEOUT,
            retry_policy=SANDBOX_RETRY_POLICY,
            summary=f"view_image: {short(args.path)}",
        )
        if result.error is not None or result.image is None:
            return FunctionCallOutputItem(call_id=call.call_id, output=f"error: {result.error}")
        return FunctionCallOutputItem(
            call_id=call.call_id, output=f"Image {args.path} ({result.note}) attached.", images=[result.image]
        )
