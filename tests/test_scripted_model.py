"""The scripted model server, driven by the real `openai` client over both wire formats."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from pydantic import ValidationError

from harness.scripted_model import (
    DEMO_SCRIPT_PATH,
    REQUEST_LOG_PATH,
    SCRIPT_ENDED,
    RequestLog,
    Script,
    ScriptedModelServer,
)

REPO = Path(__file__).resolve().parents[1]

SCRIPT = Script.model_validate(
    {
        "turns": [
            {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "echo hi"}}, {"name": "noop"}]},
            {"message": "tool said: {last_tool_output}"},
        ]
    }
)


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(SCRIPT) as running:
        yield running


def client_for(server: ScriptedModelServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="scripted", max_retries=0, timeout=5)


def test_responses_api_replays_tool_calls_then_message(server: ScriptedModelServer) -> None:
    client = client_for(server)
    first = client.responses.create(model="m", input=[{"role": "user", "content": "go"}])
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_0_0", "exec_command", {"cmd": "echo hi"}),
        ("call_0_1", "noop", {}),
    ]
    assert first.usage is not None and first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert first.usage.input_tokens_details.cached_tokens == 0

    history = [
        {"role": "user", "content": "go"},
        *(
            {"type": "function_call", "call_id": c.call_id, "name": c.name, "arguments": c.arguments}
            for c in calls
        ),
        {"type": "function_call_output", "call_id": "call_0_0", "output": "hi\n"},
        {"type": "function_call_output", "call_id": "call_0_1", "output": "done\n"},
    ]
    second = client.responses.create(model="m", input=history)
    assert second.output_text == "tool said: done"
    assert second.id != first.id

    third = client.responses.create(
        model="m", input=[*history, {"role": "assistant", "content": second.output_text}]
    )
    assert third.output_text == SCRIPT_ENDED
    assert server.count_by_turn() == {0: 1, 1: 1, 2: 1}


def test_chat_completions_replays_tool_calls_then_message(server: ScriptedModelServer) -> None:
    client = client_for(server)
    first = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "go"}])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    assert [(c.id, c.function.name) for c in message.tool_calls] == [
        ("call_0_0", "exec_command"),
        ("call_0_1", "noop"),
    ]
    second = client.chat.completions.create(
        model="m",
        messages=[
            {"role": "user", "content": "go"},
            message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": "call_0_0", "content": "hi"},
        ],
    )
    assert second.choices[0].message.content == "tool said: hi"
    assert second.usage is not None and second.usage.total_tokens > 0


def test_turn_counts_runs_of_assistant_items_not_requests(server: ScriptedModelServer) -> None:
    client = client_for(server)
    # an assistant message followed by calls is one turn; the identical request asked twice stays turn 1
    history = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "let me look"},
        {"type": "function_call", "call_id": "a", "name": "exec_command", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "x"},
    ]
    answers = {client.responses.create(model="m", input=history).output_text for _ in range(2)}
    assert answers == {"tool said: x"}
    assert server.count_by_turn() == {1: 2}


def test_models_and_request_log_endpoints(server: ScriptedModelServer) -> None:
    client = client_for(server)
    assert [m.id for m in client.models.list()] == [SCRIPT.model]
    client.responses.create(model="m", input="go")
    with urllib.request.urlopen(server.base_url.removesuffix("/v1") + REQUEST_LOG_PATH) as answer:
        logged = RequestLog.model_validate_json(answer.read())
    assert logged.count_by_turn == {0: 1}
    assert [(r.method, r.path, r.status) for r in logged.requests] == [
        ("GET", "/v1/models", 200),
        ("POST", "/v1/responses", 200),
    ]
    assert logged.requests[1].body["input"] == "go"


def test_fail_first_is_consumed_once_per_turn() -> None:
    script = Script.model_validate(
        {
            "turns": [
                {
                    "message": "ok",
                    "fail_first": [
                        {"status": 500},
                        {"status": 429, "retry_after_s": 2, "message": "slow down"},
                    ],
                }
            ]
        }
    )
    with ScriptedModelServer(script) as server:
        client = client_for(server)
        with pytest.raises(openai.InternalServerError):
            client.responses.create(model="m", input="go")
        with pytest.raises(openai.RateLimitError) as limited:
            client.responses.create(model="m", input="go")
        assert limited.value.response.headers["retry-after"] == "2"
        assert "slow down" in str(limited.value)
        assert client.responses.create(model="m", input="go").output_text == "ok"
        assert [r.status for r in server.requests] == [500, 429, 200]
        assert server.count_by_turn() == {0: 1}


def test_unknown_path_answers_404_in_openai_error_shape(server: ScriptedModelServer) -> None:
    client = openai.OpenAI(base_url=server.base_url + "/nope", api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="m", input="go")
    assert "no route for POST /v1/nope/responses" in str(missing.value)


def test_script_validation_and_demo_script() -> None:
    with pytest.raises(ValidationError):
        Script.model_validate({"turns": [{"message": "a", "tool_calls": [{"name": "x"}]}]})
    with pytest.raises(ValidationError):
        Script.model_validate(
            {"turns": [{"tool_calls": [{"name": "x", "arguments": {}, "arguments_raw": "{"}]}]}
        )
    demo = Script.from_file(DEMO_SCRIPT_PATH)
    commands = [
        json.loads(call.arguments_text)["cmd"] for turn in demo.turns for call in turn.tool_calls or []
    ]
    assert commands[1] == "printf 'print(sum(range(101)))' > sum.py && python3 sum.py"
    assert demo.turns[-1].message is not None and "{last_tool_output}" in demo.turns[-1].message


def test_cli_prints_base_url_first_and_serves(tmp_path: Path) -> None:
    script_file = tmp_path / "script.json"
    script_file.write_text(SCRIPT.model_dump_json())
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.scripted_model", str(script_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, timeout=5)
        assert client.responses.create(model="m", input="go").output[0].type == "function_call"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
