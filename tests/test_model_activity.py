"""The model activity against the scripted model server, over both APIs, with the real `openai` client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.chat_format import from_chat_message, to_chat_messages
from activities.model import REJECTED_ERROR_TYPE, ModelActivities
from harness.config import FarlineConfig
from harness.conversation import (
    ConversationItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    ModelRequest,
    ModelTurn,
    ToolSpec,
)
from harness.scripted_model import Script, ScriptedModelServer
from harness.specs import ModelSettings

EXEC_TOOL = ToolSpec(
    name="exec_command",
    description="Run a shell command in the sandbox.",
    parameters={
        "type": "object",
        "properties": {"cmd": {"type": "string"}, "workdir": {"type": ["string", "null"]}},
        "required": ["cmd"],
    },
)

TWO_TURNS = {
    "turns": [
        {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "echo 42"}}]},
        {"message": "The answer is {last_tool_output}."},
    ]
}

Serve = Callable[..., ScriptedModelServer]


@pytest.fixture(autouse=True)
def clean_model_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "FARLINE_MODEL", "FARLINE_MODEL_API"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FARLINE_MODEL_TIMEOUT_S", "5")
    yield


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """Start a scripted server for a script and point the activity's config at it."""
    servers: list[ScriptedModelServer] = []

    def start(script: dict[str, Any], **env: str) -> ScriptedModelServer:
        server = ScriptedModelServer(Script.model_validate(script)).start()
        servers.append(server)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return server

    yield start
    for server in servers:
        server.stop()


def request(*items: ConversationItem, api: str | None = None) -> ModelRequest:
    return ModelRequest(
        settings=ModelSettings(api=api),  # type: ignore[arg-type]
        instructions="You are a test agent.",
        items=list(items) or [MessageItem(role="user", content="What is the answer?")],
        tools=[EXEC_TOOL],
    )


async def run(model_request: ModelRequest) -> ModelTurn:
    return await ActivityEnvironment().run(
        ModelActivities(FarlineConfig.from_env()).call_model, model_request
    )


async def rejected(model_request: ModelRequest) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        await run(model_request)
    return raised.value


def follow_up(first: ModelTurn, output: str) -> list[ConversationItem]:
    call = first.function_calls[0]
    return [
        MessageItem(role="user", content="What is the answer?"),
        *first.items,
        FunctionCallOutputItem(call_id=call.call_id, output=output),
    ]


@pytest.mark.parametrize(
    ("api_setting", "env"),
    [
        (None, {}),
        ("chat", {}),
        (None, {"FARLINE_MODEL_API": "chat"}),
    ],
    ids=["responses", "chat-by-settings", "chat-by-env"],
)
async def test_tool_call_turn_then_final_turn(
    serve: Serve, api_setting: str | None, env: dict[str, str]
) -> None:
    server = serve(TWO_TURNS, FARLINE_MODEL="scripted-1", **env)
    first = await run(request(api=api_setting))
    assert first.function_calls == [
        FunctionCallItem(call_id="call_0_0", name="exec_command", arguments='{"cmd": "echo 42"}')
    ]
    assert first.model == "scripted-1"
    assert first.usage.model_calls == 1 and first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert first.usage.total_tokens == first.usage.input_tokens + first.usage.output_tokens
    assert first.summary() == "model: 1 tool call"

    final = await run(request(*follow_up(first, "42\n"), api=api_setting))
    assert final.items == [MessageItem(role="assistant", content="The answer is 42.")]
    assert final.text == "The answer is 42."
    assert final.summary() == "model: answered"
    assert server.count_by_turn() == {0: 1, 1: 1}
    expected_path = "/v1/chat/completions" if (api_setting or env) else "/v1/responses"
    assert {r.path for r in server.requests} == {expected_path}


async def test_request_carries_instructions_tools_and_settings(serve: Serve) -> None:
    server = serve(TWO_TURNS)
    model_request = request().model_copy(
        update={"settings": ModelSettings(model="m2", temperature=0.5, max_output_tokens=100)}
    )
    await run(model_request)
    body = server.requests[0].body
    assert body["model"] == "m2"
    assert body["instructions"] == "You are a test agent."
    assert body["input"] == [{"role": "user", "content": "What is the answer?"}]
    assert body["tools"] == [
        {
            "type": "function",
            "strict": False,
            **EXEC_TOOL.model_dump(exclude={"grammar", "strict_parameters"}),
        }
    ]
    assert (body["temperature"], body["max_output_tokens"]) == (0.5, 100)
    assert "top_p" not in body


async def test_retried_identical_request_gets_the_same_answer(serve: Serve) -> None:
    server = serve(TWO_TURNS)
    first = await run(request())
    again = await run(request())
    assert again.items == first.items
    assert again.response_id != first.response_id
    assert server.count_by_turn() == {0: 2}


async def test_malformed_arguments_come_through_unchanged(serve: Serve) -> None:
    raw = '{"cmd": "ls", oops'
    serve({"turns": [{"tool_calls": [{"name": "exec_command", "arguments_raw": raw}]}]})
    for api in ("responses", "chat"):
        turn = await run(request(api=api))
        assert [call.arguments for call in turn.function_calls] == [raw]


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_server_error_is_retryable(serve: Serve, api: str) -> None:
    server = serve({"turns": [{"message": "ok", "fail_first": [{"status": 500, "message": "boom"}]}]})
    error = await rejected(request(api=api))
    assert not error.non_retryable
    assert error.type == "ModelServerError"
    assert "HTTP 500" in error.message and "boom" in error.message
    # the failure was consumed: the retry (the next attempt) succeeds
    assert (await run(request(api=api))).text == "ok"
    assert server.count_by_turn() == {0: 1}


async def test_rate_limit_is_retryable_after_the_servers_delay(serve: Serve) -> None:
    serve(
        {"turns": [{"message": "ok", "fail_first": [{"status": 429, "retry_after_s": 3}, {"status": 429}]}]}
    )
    error = await rejected(request())
    assert not error.non_retryable
    assert error.type == "ModelRateLimited"
    assert error.next_retry_delay == timedelta(seconds=3)
    without_header = await rejected(request())
    assert not without_header.non_retryable and without_header.next_retry_delay is None


async def test_unauthorized_is_rejected_with_a_hint(serve: Serve) -> None:
    serve({"turns": [{"message": "ok", "fail_first": [{"status": 401, "message": "Incorrect API key"}]}]})
    error = await rejected(request())
    assert error.non_retryable
    assert error.type == REJECTED_ERROR_TYPE
    assert "HTTP 401" in error.message and "Incorrect API key" in error.message
    assert "OPENAI_API_KEY" in error.message


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_missing_endpoint_is_rejected_with_a_hint(
    serve: Serve, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    server = serve(TWO_TURNS, FARLINE_MODEL="no-such-model")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url + "/missing")
    error = await rejected(request(api=api))
    assert error.non_retryable and error.type == REJECTED_ERROR_TYPE
    assert "HTTP 404" in error.message
    assert "FARLINE_MODEL (now 'no-such-model')" in error.message and "OPENAI_BASE_URL" in error.message
    assert ("FARLINE_MODEL_API=chat" in error.message) == (api == "responses")


async def test_bad_request_and_forbidden_are_rejected(serve: Serve) -> None:
    serve({"turns": [{"message": "ok", "fail_first": [{"status": 400}, {"status": 403}, {"status": 422}]}]})
    for status in (400, 403, 422):
        error = await rejected(request())
        assert error.non_retryable and f"HTTP {status}" in error.message


async def test_hanging_server_times_out_retryably(serve: Serve) -> None:
    serve({"turns": [{"message": "ok", "fail_first": [{"hang_s": 30}]}]}, FARLINE_MODEL_TIMEOUT_S="0.3")
    started = time.monotonic()
    error = await rejected(request())
    assert time.monotonic() - started < 5
    assert not error.non_retryable and error.type == "ModelTimeout"
    assert (await run(request())).text == "ok"


async def test_unreachable_server_is_retryable(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve(TWO_TURNS)
    base_url = server.base_url
    server.stop()
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    error = await rejected(request())
    assert not error.non_retryable and error.type == "ModelUnreachable"


def test_chat_format_round_trip() -> None:
    items: list[ConversationItem] = [
        MessageItem(role="developer", content="be brief"),
        MessageItem(role="user", content="list files"),
        MessageItem(role="assistant", content="Looking."),
        FunctionCallItem(call_id="c1", name="exec_command", arguments='{"cmd": "ls"}'),
        FunctionCallItem(call_id="c2", name="exec_command", arguments="not json"),
        FunctionCallOutputItem(call_id="c1", output="a.txt"),
        FunctionCallOutputItem(call_id="c2", output="error: bad arguments"),
        FunctionCallItem(call_id="c3", name="exec_command", arguments="{}"),
        FunctionCallOutputItem(call_id="c3", output=""),
        MessageItem(role="assistant", content="Done."),
    ]
    messages = to_chat_messages("instructions", items)
    assert [m["role"] for m in messages] == [
        "system",
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert messages[6] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c3", "type": "function", "function": {"name": "exec_command", "arguments": "{}"}}
        ],
    }
    assert messages[4] == {"role": "tool", "tool_call_id": "c1", "content": "a.txt"}
    # each assistant message converts back to exactly the items it came from
    assert from_chat_message(messages[3], "x") == items[2:5]
    assert from_chat_message(messages[6], "x") == items[7:8]
    assert from_chat_message(messages[8], "x") == items[9:10]
    # servers that omit call ids get stable fallbacks
    anonymous = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
    }
    assert from_chat_message(anonymous, "call_resp_9") == [
        FunctionCallItem(call_id="call_resp_9_0", name="f", arguments="{}")
    ]


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_strict_function_tools_are_sent_with_their_strict_schema(serve: Serve, api: str) -> None:
    server = serve(TWO_TURNS)
    strict = {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}
    tool = EXEC_TOOL.model_copy(update={"strict_parameters": {**strict, "additionalProperties": False}})
    settings = ModelSettings(api=api, strict_function_tools=True)  # type: ignore[arg-type]
    await run(request().model_copy(update={"settings": settings, "tools": [tool]}))
    sent = server.requests[-1].body["tools"][0]
    sent = sent if api == "responses" else sent["function"]
    assert sent["strict"] is True and sent["parameters"]["additionalProperties"] is False


async def test_server_side_compaction_is_refused_on_chat_completions() -> None:
    chat = request(api="chat").model_copy(update={"server_compaction_threshold": 1000})
    error = await rejected(chat)
    assert error.non_retryable and "needs the Responses API" in error.message
