"""AgentRun end to end: real Temporal dev server, real model client, real bubblewrap sandbox."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from harness.approvals import UserMessage
from harness.function_tools import FunctionToolRegistry, install_registry
from harness.runs import start_run
from harness.scripted_model import Script
from harness.specs import AgentSpec, RunRequest, RunState, RunStatus
from harness.task_tracker import TaskTracker, tracker_tools
from workflows.agent_run import AgentRun

HISTORIES = Path(__file__).parent / "histories"


def script(*turns: dict) -> Script:
    return Script.model_validate({"turns": list(turns)})


def exec_turn(*cmds: str) -> dict:
    return {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": cmd}} for cmd in cmds]}


def function_outputs(request_body: dict) -> list[str]:
    """The tool outputs a Responses API request carried to the model."""
    return [item["output"] for item in request_body["input"] if item.get("type") == "function_call_output"]


async def test_real_commands_reach_the_model_and_the_run_answers(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        script(
            exec_turn("echo hello from $(whoami) > note.txt && cat note.txt"),
            exec_turn("python3 -c 'print(6 * 7)'"),
            {"message": "The answer is: {last_tool_output}"},
        )
    )
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="compute 6*7"))
        result = await handle.result()
        status = await handle.query("status", result_type=RunStatus)
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)

    assert result.state is RunState.COMPLETED
    assert result.turns == 3
    assert "Process exited with code 0" in result.final_message
    assert "42" in result.final_message
    # the first command's real output reached the model in the second call
    second_call = server.requests[1].body
    assert any("hello from" in output for output in function_outputs(second_call))
    assert result.usage.model_calls == 3 and result.usage.total_tokens > 0
    assert status.state is RunState.COMPLETED and status.usage == result.usage
    # the harness-owned sandbox is gone once the run ends
    assert not any((config.sandboxes_dir).iterdir())

    history = await handle.fetch_history()
    # the web UI tells in words what each activity did, and what the run is doing
    summaries = [
        pydantic_data_converter.payload_converter.from_payload(event.user_metadata.summary, str)
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    # the sandbox is created when the first command needs it; a snapshot follows each turn with commands
    assert summaries == [
        "agent: demo",
        "model: turn 1, 1 items in",
        "sandbox: create (local)",
        "exec: echo hello from $(whoami) > note.txt && cat note.txt",
        "snapshot: turn 1",
        "model: turn 2, 3 items in",
        "exec: python3 -c 'print(6 * 7)'",
        "snapshot: turn 2",
        "model: turn 3, 5 items in",
        "sandbox: tear down (end)",
    ]
    # the second command wrote nothing: the workspace is that of the first snapshot
    assert status.snapshots == 1 and status.snapshot_id is not None
    # the commands went to this machine's own queue, where its local sandboxes live
    queues = {
        event.activity_task_scheduled_event_attributes.activity_type.name: (
            event.activity_task_scheduled_event_attributes.task_queue.name
        )
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    }
    assert queues["exec_command"] == queues["destroy_sandbox"] == config.local_sandbox_task_queue
    assert queues["snapshot_workspace"] == config.local_sandbox_task_queue
    assert queues["call_model"] == queues["create_sandbox"] == config.task_queue
    assert "demo" in metadata.current_details and "turn 3" in metadata.current_details
    assert "completed" in metadata.current_details

    # the recorded history replays under the current workflow code
    await Replayer(workflows=[AgentRun], data_converter=pydantic_data_converter).replay_workflow(history)
    if os.environ.get("FARLINE_RECORD_HISTORIES"):
        (HISTORIES / "agent_run_e2e.json").write_text(history.to_json())


async def test_unpinned_local_sandboxes_share_the_runs_queue(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(script(exec_turn("echo shared"), {"message": "{last_tool_output}"}))
    config = make_config(server, pin_local_sandboxes=False)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="x"))
        result = await handle.result()
    assert "shared" in result.final_message
    history = await handle.fetch_history()
    queues = {
        event.activity_task_scheduled_event_attributes.task_queue.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    }
    assert queues == {config.task_queue}


async def test_bad_tool_calls_go_back_to_the_model_and_the_run_goes_on(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        script(
            {
                "tool_calls": [
                    {"name": "delete_everything", "arguments": {}},
                    {"name": "exec_command", "arguments_raw": "{not json"},
                    {"name": "exec_command", "arguments": {"command": "ls"}},
                    {"name": "exec_command", "arguments": {"cmd": "ls", "workdir": "../../etc"}},
                ]
            },
            {"message": "recovered"},
        )
    )
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="misbehave"))
        result = await handle.result()

    assert result.state is RunState.COMPLETED and result.final_message == "recovered"
    outputs = function_outputs(server.requests[1].body)
    assert len(outputs) == 4
    assert outputs[0].startswith("error: unknown tool 'delete_everything'") and "exec_command" in outputs[0]
    assert "not valid JSON" in outputs[1]
    assert "cmd" in outputs[2] and "command" in outputs[2]
    assert outputs[3].startswith("error:") and "workspace" in outputs[3]


async def test_max_turns_ends_the_run_with_a_clear_state(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(script(*[exec_turn("true")] * 5))
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="loop", max_turns=2))
        result = await handle.result()
    assert result.state is RunState.MAX_TURNS_REACHED
    assert result.turns == 2 and result.final_message is None
    assert len(server.requests) == 2


async def test_sandbox_sees_no_worker_secret_and_no_host_network(
    client: Client, scripted_model, make_config, running_worker, monkeypatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-for-test")
    host_listener = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    host_port = host_listener.sockets[0].getsockname()[1]
    server = scripted_model(
        script(
            exec_turn(
                'env; python3 -c \'import socket; socket.create_connection(("127.0.0.1", '
                f"{host_port}), timeout=2)' && echo REACHED || echo UNREACHABLE"
            ),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server, openai_api_key="sk-worker-secret-for-test")
    inline = AgentSpec(name="inline", instructions="inline agent", tools=["exec_command"])
    inline.sandbox.env = {"GREETING": "hi"}
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent_spec=inline, task="look around"))
        result = await handle.result()
    host_listener.close()
    output = result.final_message
    assert "GREETING=hi" in output
    assert "sk-worker-secret-for-test" not in output and "aws-secret-for-test" not in output
    assert "OPENAI" not in output and "AWS_" not in output
    # the model server listens on the host's loopback; the sandbox has its own network namespace
    assert "UNREACHABLE" in output and "REACHED\n" not in output.replace("UNREACHABLE", "")


async def test_unknown_agent_fails_the_run_with_a_readable_error(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(script({"message": "never"}))
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="nobody", task="x"))
        try:
            await handle.result()
        except WorkflowFailureError as error:
            message = str(error.cause.cause) if error.cause.cause else str(error.cause)
        else:
            raise AssertionError("the run should have failed")
    assert "no agent named 'nobody'" in message and "demo" in message
    assert server.requests == []


async def test_committed_histories_replay_without_nondeterminism(tmp_path: Path) -> None:
    """Histories recorded by earlier versions (FARLINE_RECORD_HISTORIES=1) still replay."""
    # the workflow reads the application's tools (the tracker's, in some histories) from the registry
    install_registry("replay", FunctionToolRegistry(tracker_tools(TaskTracker(tmp_path / "tracker.sqlite"))))
    histories = sorted(HISTORIES.glob("*.json"))
    assert histories, "no recorded history to replay"
    replayer = Replayer(workflows=[AgentRun], data_converter=pydantic_data_converter)
    for path in histories:
        history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
        await replayer.replay_workflow(history)


async def test_cancelling_a_run_kills_its_command_and_destroys_the_sandbox(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        script(exec_turn("touch started; sleep 60; touch finished"), {"message": "never"})
    )
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="slow"))
        for _ in range(200):
            if list(config.sandboxes_dir.glob("*/workspace/started")):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the command never started")
        await handle.cancel()
        try:
            await handle.result()
        except WorkflowFailureError as error:
            assert "cancel" in str(error.cause).lower()
        else:
            raise AssertionError("a cancelled run should not complete")
        status = await handle.query("status", result_type=RunStatus)
    assert status.state is RunState.CANCELLED
    assert not any(config.sandboxes_dir.iterdir())
    assert len(server.requests) == 1


def test_a_bad_sandbox_environment_is_refused_with_what_to_fix() -> None:
    try:
        RunRequest.model_validate({"agent": "demo", "task": "x", "sandbox": {"env": {"BAD=NAME": "1"}}})
    except ValueError as error:
        assert "BAD=NAME" in str(error) and "must match" in str(error)
    else:
        raise AssertionError("the request should be refused")


async def test_a_user_message_reaches_the_next_model_call(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(script(exec_turn("sleep 1.5; echo slept"), {"message": "ok"}))
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="work"))
        for _ in range(200):
            if list(config.sandboxes_dir.glob("*/procs/*")):
                break
            await asyncio.sleep(0.05)
        await handle.signal("user_message", UserMessage(text="Please also say hello."))
        result = await handle.result()
    assert result.state is RunState.COMPLETED
    second = server.requests[1].body["input"]
    assert second[-1] == {"role": "user", "content": "Please also say hello."}
    assert "Please also say hello." not in json.dumps(server.requests[0].body)
