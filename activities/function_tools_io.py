"""Input and output of the run_function_tool activity (small: a tool name, its arguments, its output)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FunctionToolRequest(BaseModel):
    tool: str
    call_id: str
    # the arguments exactly as the model sent them (JSON text)
    arguments: str
    # the run's flags, for `is_enabled` and the tool's ToolContext
    flags: dict[str, bool | str] = Field(default_factory=dict)
    agent: str = ""


class FunctionToolResult(BaseModel):
    # False when the call was refused, the tool raised or timed out; `output` then says why
    ok: bool
    # the text for the model: the tool's return value (str as is, anything else as JSON) or "error: ..."
    output: str
