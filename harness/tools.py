"""The tools the model sees, their JSON schemas and the validation of its arguments.

Validation is pure and deterministic, so the workflow does it itself: a malformed
call goes straight back to the model as a tool error without costing an activity.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.apply_patch import (
    APPLY_PATCH_DESCRIPTION,
    APPLY_PATCH_FREEFORM_DESCRIPTION,
    APPLY_PATCH_LARK_GRAMMAR,
    ApplyPatchArgs,
)
from harness.conversation import FunctionCallItem, ToolSpec

# Codex's defaults, as the models know them
EXEC_YIELD_DEFAULT_MS = 10_000
WRITE_YIELD_DEFAULT_MS = 250
YIELD_MIN_MS = 250
YIELD_MAX_MS = 30_000
# an empty write_stdin (a poll) waits at least this long unless the process ends
EMPTY_POLL_MIN_MS = 5_000
DEFAULT_MAX_OUTPUT_TOKENS = 10_000
MAX_OUTPUT_TOKENS_CAP = 100_000
BYTES_PER_TOKEN = 4


def clamp_yield_ms(value: int | None, default: int) -> int:
    return min(max(value if value is not None else default, YIELD_MIN_MS), YIELD_MAX_MS)


def output_budget_bytes(max_output_tokens: int | None) -> int:
    return (max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS) * BYTES_PER_TOKEN


class ExecCommandArgs(BaseModel):
    """Arguments of `exec_command` as the model sends them."""

    model_config = ConfigDict(extra="forbid")

    cmd: str = Field(min_length=1, description="Shell command line, run with `bash -c`.")
    workdir: str | None = Field(
        default=None, description="Directory relative to /workspace to run in; default the workspace root."
    )
    yield_time_ms: int | None = Field(
        default=None,
        ge=0,
        description=f"How long to wait for output before returning (default {EXEC_YIELD_DEFAULT_MS}, "
        f"{YIELD_MIN_MS} to {YIELD_MAX_MS}); a command still running then keeps running.",
    )
    max_output_tokens: int | None = Field(
        default=None,
        gt=0,
        le=MAX_OUTPUT_TOKENS_CAP,
        description=f"Output budget in tokens (default {DEFAULT_MAX_OUTPUT_TOKENS}).",
    )
    tty: bool = Field(default=False, description="Run on a pseudo-terminal (for interactive programs).")


class WriteStdinArgs(BaseModel):
    """Arguments of `write_stdin` as the model sends them."""

    model_config = ConfigDict(extra="forbid")

    session_id: int = Field(description="The session ID a running exec_command returned.")
    chars: str = Field(default="", description="Bytes to write to stdin; empty to just poll for output.")
    yield_time_ms: int | None = Field(
        default=None,
        ge=0,
        description=f"How long to wait for output (default {WRITE_YIELD_DEFAULT_MS}; an empty poll waits "
        f"at least {EMPTY_POLL_MIN_MS} unless the process ends).",
    )
    max_output_tokens: int | None = Field(default=None, gt=0, le=MAX_OUTPUT_TOKENS_CAP)


class ViewImageArgs(BaseModel):
    """Arguments of `view_image`."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        min_length=1, description="Path of a PNG, JPEG, GIF or WebP image, relative to /workspace."
    )


class ToolDefinition(BaseModel):
    """A tool the workflow knows how to dispatch."""

    spec: ToolSpec
    arguments_model: type[BaseModel]


def spec_for(name: str, description: str, model: type[BaseModel]) -> ToolSpec:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return ToolSpec(name=name, description=description, parameters=schema)


EXEC_COMMAND = ToolDefinition(
    spec=spec_for(
        "exec_command",
        "Run a shell command in the sandboxed workspace (/workspace). Returns the output so far "
        "(stdout and stderr together, cut in the middle when long) and the exit code, or a session ID "
        "when the command is still running after the yield time: use write_stdin with that ID to send "
        "input or to poll for more output.",
        ExecCommandArgs,
    ),
    arguments_model=ExecCommandArgs,
)
WRITE_STDIN = ToolDefinition(
    spec=spec_for(
        "write_stdin",
        "Write characters to the stdin of a running exec_command session (empty chars: just wait for "
        "and return new output). Returns the new output and the exit code once the process has ended.",
        WriteStdinArgs,
    ),
    arguments_model=WriteStdinArgs,
)
VIEW_IMAGE = ToolDefinition(
    spec=spec_for(
        "view_image",
        "Look at an image file from the workspace (PNG, JPEG, GIF or WebP): it is attached to the "
        "conversation for you to see.",
        ViewImageArgs,
    ),
    arguments_model=ViewImageArgs,
)

APPLY_PATCH = ToolDefinition(
    spec=spec_for("apply_patch", APPLY_PATCH_DESCRIPTION, ApplyPatchArgs),
    arguments_model=ApplyPatchArgs,
)

APPLY_PATCH_FREEFORM = ToolSpec(
    name="apply_patch",
    description=APPLY_PATCH_FREEFORM_DESCRIPTION,
    parameters=spec_for("apply_patch", "", ApplyPatchArgs).parameters,
    grammar=APPLY_PATCH_LARK_GRAMMAR,
)

BUILTIN_TOOLS: dict[str, ToolDefinition] = {
    tool.spec.name: tool for tool in (EXEC_COMMAND, WRITE_STDIN, APPLY_PATCH, VIEW_IMAGE)
}


def offered_specs(tools: dict[str, ToolDefinition], freeform_apply_patch: bool) -> list[ToolSpec]:
    """The tool specs sent to the model; apply_patch as a freeform grammar tool when asked."""
    specs = []
    for name, tool in tools.items():
        if name == APPLY_PATCH.spec.name and freeform_apply_patch:
            specs.append(APPLY_PATCH_FREEFORM)
        else:
            specs.append(tool.spec)
    return specs


class ToolCallError(Exception):
    """A call the model got wrong; the message goes back to the model."""


def parse_tool_call(call: FunctionCallItem, enabled: dict[str, ToolDefinition]) -> BaseModel:
    """Validated arguments of `call`, or ToolCallError with what the model should fix."""
    tool = enabled.get(call.name)
    if tool is None:
        available = ", ".join(sorted(enabled)) or "none"
        raise ToolCallError(f"unknown tool {call.name!r}; the tools available are: {available}")
    if call.freeform:
        return _validated(call, tool, {"input": call.arguments})
    try:
        raw: Any = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as error:
        raise ToolCallError(
            f"the arguments of {call.name} are not valid JSON ({error.msg} at position {error.pos}); "
            "send a JSON object matching the tool's schema"
        ) from None
    if not isinstance(raw, dict):
        raise ToolCallError(f"the arguments of {call.name} must be a JSON object, not {type(raw).__name__}")
    return _validated(call, tool, raw)


def _validated(call: FunctionCallItem, tool: ToolDefinition, raw: dict[str, Any]) -> BaseModel:
    try:
        return tool.arguments_model.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in error.errors()
        )
        raise ToolCallError(f"invalid arguments for {call.name}: {problems}") from None
