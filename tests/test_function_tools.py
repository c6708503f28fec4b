"""Application function tools: schemas, validation, policy, the activity, and the task tracker demo."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel
from temporalio.testing import ActivityEnvironment

from activities.function_tools import FunctionToolActivities
from activities.function_tools_io import FunctionToolRequest, FunctionToolResult
from harness.function_tools import (
    FunctionTool,
    FunctionToolRegistry,
    RunContext,
    ToolContext,
    function_tool,
    parse_docstring,
    strict_schema,
)
from harness.task_tracker import TaskTracker, tracker_tools


class Ticket(BaseModel):
    id: int
    priority: Literal["low", "high"]


@function_tool
def file_ticket(
    title: str, priority: Literal["low", "high"] = "low", context: ToolContext | None = None
) -> Ticket:
    """File a ticket in the queue.

    Args:
        title: What the ticket is about,
            in one line.
        priority (str): How urgent it is.
    """
    assert context is not None
    return Ticket(id=len(title), priority=priority)


@function_tool(name="lookup", description="Look something up.", timeout_s=5)
async def look_up(key: str, limit: int | None = None) -> dict[str, object]:
    """Not what the model sees."""
    await asyncio.sleep(0)
    return {"key": key, "limit": limit}


@function_tool
def echo(text: str, context: ToolContext) -> str:
    """Say `text` back, with the call's id."""
    return f"{text} ({context.call_id} in {context.workflow_id}, beta={context.flags.get('beta')})"


@function_tool
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"the warp core {reason}")


@function_tool(timeout_s=0.2)
async def dawdle() -> str:
    """Takes too long."""
    await asyncio.sleep(30)
    return "finally"


@function_tool(timeout_s=0.2)
def dawdle_in_thread() -> str:
    """Takes too long, in a thread."""
    time.sleep(1)
    return "finally"


@function_tool
def token_present() -> bool:
    """Whether the tracker's API token is configured on this worker."""
    return bool(os.environ.get("TRACKER_API_TOKEN"))


@function_tool(
    is_enabled=lambda run: run.flags.get("beta") is True,
    guardrails=[lambda args: "transfers above 1000 need a manager" if args.amount > 1000 else None],
    needs_approval=lambda args: args.amount > 100,
)
def transfer(amount: int, to: str) -> str:
    """Move money."""
    return f"sent {amount} to {to}"


@function_tool(needs_approval=True, approval_timeout_s=600)
def delete_everything() -> str:
    """Delete everything."""
    return "gone"


def registry(*tools: FunctionTool) -> FunctionToolRegistry:
    return FunctionToolRegistry(
        tools
        or [
            file_ticket,
            look_up,
            echo,
            explode,
            dawdle,
            dawdle_in_thread,
            token_present,
            transfer,
            delete_everything,
        ]
    )


async def run_tool(
    tools: FunctionToolRegistry, name: str, arguments: object, flags: dict[str, bool | str] | None = None
) -> FunctionToolResult:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    request = FunctionToolRequest(tool=name, call_id="call_1", arguments=text, flags=flags or {})
    return await ActivityEnvironment().run(FunctionToolActivities(tools).run_function_tool, request)


# schemas


def test_schema_from_hints_and_docstring() -> None:
    spec = file_ticket.spec
    assert spec.name == "file_ticket"
    assert spec.description == "File a ticket in the queue."
    assert spec.parameters == {
        "type": "object",
        "properties": {
            "title": {"type": "string", "description": "What the ticket is about, in one line."},
            "priority": {
                "type": "string",
                "enum": ["low", "high"],
                "default": "low",
                "description": "How urgent it is.",
            },
        },
        "required": ["title"],
        "additionalProperties": False,
    }


def test_name_and_description_override() -> None:
    assert look_up.name == look_up.spec.name == "lookup"
    assert look_up.spec.description == "Look something up."
    assert look_up.timeout_s == 5
    assert look_up.spec.parameters["required"] == ["key"]
    assert "title" not in json.dumps(look_up.spec.parameters)


def test_docstring_sections() -> None:
    description, parameters = parse_docstring(
        "Summary line.\n\nMore detail.\n\nArgs:\n    a: First.\n    b (int): Second,\n        longer.\n\n"
        "Returns:\n    c: not a parameter.\n"
    )
    assert description == "Summary line.\n\nMore detail."
    assert parameters == {"a": "First.", "b": "Second, longer."}


def test_type_hints_are_required() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(TypeError, match="'x' needs a type hint"):
        function_tool(untyped)
    with pytest.raises(ValueError, match="tool name"):
        function_tool(name="no spaces please")(untyped)


def test_strict_schema_shape() -> None:
    strict = strict_schema(look_up)
    assert strict == {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
        "required": ["key", "limit"],
        "additionalProperties": False,
    }
    priority = strict_schema(file_ticket)["properties"]["priority"]  # type: ignore[index]
    assert priority == {
        "anyOf": [{"type": "string", "enum": ["low", "high"]}, {"type": "null"}],
        "description": "How urgent it is.",
    }
    # strict mode makes every property required: null then means the default
    args = registry().validate_call("file_ticket", '{"title": "t", "priority": null}')
    assert isinstance(args, BaseModel)
    assert args.priority == "low"  # type: ignore[attr-defined]


def test_strict_schema_impossible_for_free_form_dicts() -> None:
    @function_tool
    def tag(labels: dict[str, str]) -> str:
        """Tag it."""
        return ",".join(labels)

    assert strict_schema(tag) is None


# validation, guardrails, enabled, approval (pure)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"title": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"title": 5}', "title: Input should be a valid string"),
        ('{"title": "t", "priority": "urgent"}', "priority: Input should be 'low' or 'high'"),
        ('{"title": "t", "colour": "red"}', "colour: Extra inputs are not permitted"),
        ("{}", "title: Field required"),
    ],
)
def test_validation_errors_name_the_field(arguments: str, expected: str) -> None:
    result = registry().validate_call("file_ticket", arguments)
    assert isinstance(result, str)
    assert expected in result


def test_unknown_tool_is_a_message() -> None:
    result = registry().validate_call("warp", "{}")
    assert isinstance(result, str)
    assert "unknown function tool 'warp'" in result


def test_guardrail_rejects_with_a_message() -> None:
    tools = registry()
    rejected = tools.validate_call("transfer", '{"amount": 5000, "to": "Ana"}')
    assert rejected == "transfer was refused: transfers above 1000 need a manager"
    assert isinstance(tools.validate_call("transfer", '{"amount": 50, "to": "Ana"}'), BaseModel)


def test_is_enabled_by_flag() -> None:
    tools = registry()
    names = ["file_ticket", "transfer", "exec_command"]
    assert [s.name for s in tools.specs_for(names, RunContext(flags={}))] == ["file_ticket"]
    assert [s.name for s in tools.specs_for(names, RunContext(flags={"beta": True}))] == [
        "file_ticket",
        "transfer",
    ]


def test_requires_approval_bool_and_function() -> None:
    tools = registry()
    small = tools.validate_call("transfer", '{"amount": 50, "to": "Ana"}')
    large = tools.validate_call("transfer", '{"amount": 500, "to": "Ana"}')
    assert isinstance(small, BaseModel)
    assert isinstance(large, BaseModel)
    assert not tools.requires_approval("transfer", small)
    assert tools.requires_approval("transfer", large)
    everything = tools.validate_call("delete_everything", "")
    assert isinstance(everything, BaseModel)
    assert tools.requires_approval("delete_everything", everything)
    assert delete_everything.approval_timeout_s == 600
    ticket = tools.validate_call("file_ticket", '{"title": "t"}')
    assert isinstance(ticket, BaseModel)
    assert not tools.requires_approval("file_ticket", ticket)


def test_builtin_names_are_reserved() -> None:
    @function_tool
    def exec_command(cmd: str) -> str:
        """Clash."""
        return cmd

    with pytest.raises(ValueError, match="built-in"):
        FunctionToolRegistry([exec_command])


# the activity


async def test_sync_tool_returns_a_pydantic_model_as_json() -> None:
    result = await run_tool(registry(), "file_ticket", {"title": "abc", "priority": "high"})
    assert result.ok
    assert json.loads(result.output) == {"id": 3, "priority": "high"}


async def test_async_tool_returns_a_dict_as_json() -> None:
    result = await run_tool(registry(), "lookup", {"key": "k"})
    assert result == FunctionToolResult(ok=True, output='{"key":"k","limit":null}')


async def test_tool_context_is_injected() -> None:
    result = await run_tool(registry(), "echo", {"text": "hi"}, flags={"beta": True})
    assert result.ok
    assert result.output == "hi (call_1 in test, beta=True)"
    assert "context" not in echo.spec.parameters["properties"]


async def test_activity_validates_again() -> None:
    result = await run_tool(registry(), "file_ticket", {"title": 7})
    assert not result.ok
    assert result.output.startswith("error: invalid arguments for file_ticket: title:")
    disabled = await run_tool(registry(), "transfer", {"amount": 1, "to": "Ana"})
    assert disabled == FunctionToolResult(ok=False, output="error: tool transfer is not enabled for this run")
    refused = await run_tool(registry(), "transfer", {"amount": 5000, "to": "Ana"}, flags={"beta": True})
    assert refused.output == "error: transfer was refused: transfers above 1000 need a manager"


async def test_a_tool_that_raises_is_an_error_for_the_model() -> None:
    result = await run_tool(registry(), "explode", {"reason": "breached"})
    assert result == FunctionToolResult(ok=False, output="error: RuntimeError: the warp core breached")


@pytest.mark.parametrize("name", ["dawdle", "dawdle_in_thread"])
async def test_a_tool_past_its_timeout_is_an_error(name: str) -> None:
    started = time.monotonic()
    result = await run_tool(registry(), name, {})
    assert time.monotonic() - started < 0.9
    assert not result.ok
    assert f"{name} did not finish within 0.2 seconds" in result.output


async def test_a_tool_reads_a_secret_on_the_trusted_side(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACKER_API_TOKEN", raising=False)
    assert (await run_tool(registry(), "token_present", {})).output == "false"
    monkeypatch.setenv("TRACKER_API_TOKEN", "s3cret")
    assert (await run_tool(registry(), "token_present", {})).output == "true"


# the task tracker demo


@pytest.fixture
def tracker(tmp_path: Path) -> TaskTracker:
    return TaskTracker(tmp_path / "tracker" / "tasks.db")


async def test_tracker_update_status(tracker: TaskTracker) -> None:
    tools = FunctionToolRegistry(tracker_tools(tracker))
    keynote = next(t for t in tracker.tasks() if t.title == "Draft the keynote abstract")
    result = await run_tool(tools, "update_status", {"task_id": keynote.id, "status": "IN_PROGRESS"})
    assert result.ok
    assert json.loads(result.output)["status"] == "IN_PROGRESS"
    assert tracker.task(keynote.id).status == "IN_PROGRESS"
    missing = await run_tool(tools, "update_status", {"task_id": 999, "status": "TODO"})
    assert missing == FunctionToolResult(
        ok=False, output="error: UnknownTask: there is no task 999; list_tasks shows the tasks"
    )


async def test_tracker_update_assignee(tracker: TaskTracker) -> None:
    tools = FunctionToolRegistry(tracker_tools(tracker))
    result = await run_tool(tools, "update_assignee", {"task_id": 3, "assignee": "Logistics Lead"})
    assert result.ok
    assert tracker.task(3).assignee == "Logistics Lead"
    unknown = await run_tool(tools, "update_assignee", {"task_id": 3, "assignee": "Nobody"})
    assert not unknown.ok
    assert unknown.output.startswith("error: UnknownPerson: there is no person named 'Nobody'")
    assert tracker.task(3).assignee == "Logistics Lead"


async def test_tracker_search_assignees_and_list_tasks(tracker: TaskTracker) -> None:
    tools = FunctionToolRegistry(tracker_tools(tracker))
    writers = await run_tool(tools, "search_assignees", {"skill": "Writing"})
    assert json.loads(writers.output) == ["Press Officer", "Program Editor"]
    assert json.loads((await run_tool(tools, "search_assignees", {"skill": "juggling"})).output) == []
    listed = json.loads((await run_tool(tools, "list_tasks", {})).output)
    assert {"Draft the keynote abstract", "Produce the launch video"} <= {task["title"] for task in listed}


def test_tracker_done_needs_approval(tracker: TaskTracker) -> None:
    tools = FunctionToolRegistry(tracker_tools(tracker))
    done = tools.validate_call("update_status", '{"task_id": 2, "status": "DONE"}')
    started = tools.validate_call("update_status", '{"task_id": 2, "status": "IN_PROGRESS"}')
    assert isinstance(done, BaseModel)
    assert isinstance(started, BaseModel)
    assert tools.requires_approval("update_status", done)
    assert not tools.requires_approval("update_status", started)
    assert tools.specs_for(["update_status", "list_tasks"], RunContext())[0].parameters["properties"][
        "status"
    ]["enum"] == ["TODO", "IN_PROGRESS", "DONE"]


async def test_tracker_state_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    first = TaskTracker(path)
    await run_tool(
        FunctionToolRegistry(tracker_tools(first)), "update_status", {"task_id": 1, "status": "DONE"}
    )
    second = TaskTracker(path)
    assert second.task(1).status == "DONE"
    assert len(second.tasks()) == len(first.tasks())


def test_policy_functions_that_raise_fail_closed() -> None:
    def broken(_: object) -> bool:
        raise KeyError("flag")

    @function_tool(is_enabled=broken, guardrails=[broken], needs_approval=broken)
    def risky(n: int) -> int:
        """Risky."""
        return n

    tools = FunctionToolRegistry([risky])
    assert tools.specs_for(["risky"], RunContext()) == []
    assert tools.validate_call("risky", '{"n": 1}') == "risky was refused: guardrail raised KeyError: 'flag'"
    assert tools.requires_approval("risky", risky.arguments_model(n=1))
