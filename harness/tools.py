"""The tools the model sees, their JSON schemas and the validation of its arguments.

Validation is pure and deterministic, so the workflow does it itself: a malformed
call goes straight back to the model as a tool error without costing an activity.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.conversation import FunctionCallItem, ToolSpec

DEFAULT_EXEC_TIMEOUT_S = 120.0
MAX_EXEC_TIMEOUT_S = 3600.0
# about 10,000 tokens at 4 bytes a token
DEFAULT_MAX_OUTPUT_BYTES = 40_000


class ExecCommandArgs(BaseModel):
    """Arguments of `exec_command` as the model sends them."""

    model_config = ConfigDict(extra="forbid")

    cmd: str = Field(min_length=1, description="Shell command line, run with `bash -c`.")
    workdir: str | None = Field(
        default=None, description="Directory relative to /workspace to run in; default the workspace root."
    )
    timeout_s: float = Field(
        default=DEFAULT_EXEC_TIMEOUT_S,
        gt=0,
        le=MAX_EXEC_TIMEOUT_S,
        description=f"Kill the command after this many seconds (default {DEFAULT_EXEC_TIMEOUT_S:g}).",
    )


class ToolDefinition(BaseModel):
    """A tool the workflow knows how to dispatch."""

    spec: ToolSpec
    arguments_model: type[BaseModel]


def _spec_for(name: str, description: str, model: type[BaseModel]) -> ToolSpec:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return ToolSpec(name=name, description=description, parameters=schema)


EXEC_COMMAND = ToolDefinition(
    spec=_spec_for(
        "exec_command",
        "Run a shell command in the sandboxed workspace (/workspace) and return its exit code and "
        "output (stdout and stderr together, cut in the middle when long).",
        ExecCommandArgs,
    ),
    arguments_model=ExecCommandArgs,
)

BUILTIN_TOOLS: dict[str, ToolDefinition] = {EXEC_COMMAND.spec.name: EXEC_COMMAND}


class ToolCallError(Exception):
    """A call the model got wrong; the message goes back to the model."""


def parse_tool_call(call: FunctionCallItem, enabled: dict[str, ToolDefinition]) -> BaseModel:
    """Validated arguments of `call`, or ToolCallError with what the model should fix."""
    tool = enabled.get(call.name)
    if tool is None:
        available = ", ".join(sorted(enabled)) or "none"
        raise ToolCallError(f"unknown tool {call.name!r}; the tools available are: {available}")
    try:
        raw: Any = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as error:
        raise ToolCallError(
            f"the arguments of {call.name} are not valid JSON ({error.msg} at position {error.pos}); "
            "send a JSON object matching the tool's schema"
        ) from None
    if not isinstance(raw, dict):
        raise ToolCallError(f"the arguments of {call.name} must be a JSON object, not {type(raw).__name__}")
    try:
        return tool.arguments_model.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in error.errors()
        )
        raise ToolCallError(f"invalid arguments for {call.name}: {problems}") from None
