"""Starting and watching runs from outside: the plain Temporal CLI, the farline CLI, the worker process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path

from temporalio.client import Client

from harness.devserver import temporal_binary
from harness.runs import start_run
from harness.scripted_model import Script
from harness.specs import RunRequest, RunResult, RunState
from tests.worker_processes import start_worker_process

REPO = Path(__file__).resolve().parent.parent
CLOSE_TASK_1 = {"task_id": 1, "status": "DONE"}

ECHO_THEN_ANSWER = Script.model_validate(
    {
        "turns": [
            {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "echo from-the-sandbox"}}]},
            {"message": "{last_tool_output}"},
        ]
    }
)


async def run_command(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, output.decode()


async def test_plain_temporal_cli_starts_a_run_with_json_input(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    config = make_config(scripted_model(ECHO_THEN_ANSWER))
    workflow_id = f"cli-{uuid.uuid4().hex[:8]}"
    request = json.dumps({"agent": "demo", "task": "say hello", "max_turns": 5})
    async with running_worker(config):
        code, output = await run_command(
            temporal_binary(),
            "workflow",
            "start",
            "--address",
            config.temporal_address,
            "--type",
            "AgentRun",
            "--task-queue",
            config.task_queue,
            "--workflow-id",
            workflow_id,
            "--input",
            request,
        )
        assert code == 0, output
        result = await client.get_workflow_handle(workflow_id, result_type=RunResult).result()
    assert result.state is RunState.COMPLETED
    assert "from-the-sandbox" in result.final_message


async def test_farline_run_wait_then_status(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    config = make_config(scripted_model(ECHO_THEN_ANSWER))
    env = {"FARLINE_TEMPORAL_ADDRESS": config.temporal_address, "FARLINE_TASK_QUEUE": config.task_queue}
    workflow_id = f"farline-cli-{uuid.uuid4().hex[:8]}"
    async with running_worker(config):
        code, output = await run_command(
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "demo",
            "say hello",
            "--follow",
            "--id",
            workflow_id,
            env=env,
        )
        assert code == 0, output
        assert f"workflow id: {workflow_id}" in output
        assert f"/namespaces/default/workflows/{workflow_id}" in output
        assert "state: completed after 2 turns" in output and "from-the-sandbox" in output

        code, output = await run_command(sys.executable, "-m", "harness.cli", "status", workflow_id, env=env)
    assert code == 0, output
    status = json.loads(output)
    assert status["state"] == "completed" and status["turn"] == 2 and status["workflow"] == "COMPLETED"


async def test_farline_run_refuses_a_bad_request_with_what_to_fix(make_config, scripted_model) -> None:
    config = make_config(scripted_model(ECHO_THEN_ANSWER))
    env = {"FARLINE_TEMPORAL_ADDRESS": config.temporal_address}
    code, output = await run_command(
        sys.executable, "-m", "harness.cli", "run", "demo", "task", "--max-turns", "0", env=env
    )
    assert code != 0
    assert "max_turns" in output and "greater than or equal to 1" in output


async def test_worker_stops_gracefully_on_sigterm(scripted_model, make_config, tmp_path) -> None:
    config = make_config(scripted_model(ECHO_THEN_ANSWER))
    log = tmp_path / "worker.log"
    worker = start_worker_process(config, log)
    try:
        for _ in range(100):
            if "worker started" in log.read_text():
                break
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert code == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines if line["event"].startswith("worker")] == [
        "worker started",
        "worker stopping",
        "worker stopped",
    ]


async def test_tracker_demo_waits_for_an_approval_from_outside(client: Client, tmp_path) -> None:
    """`farline demo --tracker` (scripted model): the run waits until `farline approve` answers."""
    env = {
        **os.environ,
        "FARLINE_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "FARLINE_DATA_DIR": str(tmp_path / "data"),
    }
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(name, None)
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness.cli",
        "demo",
        "--tracker",
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    seen: list[str] = []
    try:
        approve_command = None
        while approve_command is None:
            line = (await asyncio.wait_for(demo.stdout.readline(), timeout=60)).decode()
            assert line, "the demo ended before asking for approval:\n" + "".join(seen)
            seen.append(line)
            if line.strip().startswith("farline approve "):
                approve_command = line.split()
        code, output = await run_command(
            sys.executable,
            "-m",
            "harness.cli",
            *approve_command[1:],
            "--reason",
            "ok by the test",
            env={"FARLINE_TEMPORAL_ADDRESS": env["FARLINE_TEMPORAL_ADDRESS"]},
        )
        assert code == 0 and "approved" in output, output
        rest = (await asyncio.wait_for(demo.stdout.read(), timeout=60)).decode()
        assert await demo.wait() == 0, "".join(seen) + rest
    finally:
        if demo.returncode is None:
            demo.kill()
    transcript = "".join(seen) + rest
    assert "SCRIPTED model" in transcript and "WAITING FOR APPROVAL: update_status" in transcript
    assert "state: completed" in transcript and '"status": "DONE"' in transcript


async def test_farline_approvals_say_and_decline(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    from tests.test_approvals import wait_for_pending

    server = scripted_model(
        Script.model_validate(
            {
                "turns": [
                    {
                        "tool_calls": [
                            {"name": "update_status", "arguments": {"task_id": 1, "status": "DONE"}}
                        ]
                    },
                    {"message": "ok"},
                ]
            }
        )
    )
    config = make_config(server)
    env = {"FARLINE_TEMPORAL_ADDRESS": config.temporal_address}
    cli = [sys.executable, "-m", "harness.cli"]
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="tracker", task="close task 1"))
        waiting = await wait_for_pending(handle)
        code, listed = await run_command(*cli, "approvals", handle.id, env=env)
        assert code == 0 and waiting.call_id in listed and "update_status" in listed
        assert f"farline approve {handle.id} {waiting.call_id}" in listed
        code, said = await run_command(*cli, "say", handle.id, "Hold on, the venue changed.", env=env)
        assert code == 0 and "sent" in said
        code, refused = await run_command(*cli, "decline", handle.id, "call_unknown", env=env)
        assert code != 0 and "no call 'call_unknown' is waiting for approval" in refused
        code, declined = await run_command(
            *cli, "decline", handle.id, waiting.call_id, "--reason", "venue", env=env
        )
        assert code == 0 and "declined" in declined
        result = await handle.result()
    assert result.state is RunState.COMPLETED
    second = server.requests[1].body["input"]
    assert second[-1] == {"role": "user", "content": "Hold on, the venue changed."}
    outputs = [item["output"] for item in second if item.get("type") == "function_call_output"]
    assert outputs == ["declined by a person, the call was not run: venue"]


async def test_farline_run_takes_the_workspace_from_a_yaml_file(
    client: Client, scripted_model, make_config, running_worker, tmp_path: Path
) -> None:
    config = make_config(
        scripted_model(
            Script.model_validate(
                {
                    "turns": [
                        {
                            "tool_calls": [
                                {"name": "exec_command", "arguments": {"cmd": "cat original/brief.md"}}
                            ]
                        },
                        {"message": "{last_tool_output}"},
                    ]
                }
            )
        )
    )
    env = {"FARLINE_TEMPORAL_ADDRESS": config.temporal_address, "FARLINE_TASK_QUEUE": config.task_queue}
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "manifest:\n  entries:\n    - {kind: file, path: original/brief.md, content: 'from the yaml file'}\n"
    )
    async with running_worker(config):
        code, output = await run_command(
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "demo",
            "t",
            "--workspace",
            str(workspace),
            "--wait",
            env=env,
        )
    assert code == 0, output
    assert "from the yaml file" in output

    workspace.write_text("manifest:\n  entries:\n    - {kind: dir, path: ../up}\n")
    code, output = await run_command(
        sys.executable, "-m", "harness.cli", "run", "demo", "t", "--workspace", str(workspace), env=env
    )
    assert code != 0 and "manifest entry 1 (dir '../up'): the path leaves the workspace" in output
    workspace.write_text("manifest: {}\nsecrets: 1\n")
    code, output = await run_command(
        sys.executable, "-m", "harness.cli", "run", "demo", "t", "--workspace", str(workspace), env=env
    )
    assert code != 0 and "memory_key, skills" in output
