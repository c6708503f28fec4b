"""A worker's JSON logs: each activity's lines carry the workflow id, run id, activity, agent and turn."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from temporalio.client import Client

from harness.runs import start_run
from harness.specs import RunRequest, RunState
from tests.script_helpers import exec_call, script
from tests.worker_processes import start_worker_process


async def test_activity_logs_carry_the_run_agent_and_turn(
    client: Client, scripted_model, make_config, tmp_path: Path
) -> None:
    server = scripted_model(script(exec_call("echo one"), exec_call("echo two"), {"message": "done"}))
    config = make_config(server)
    log = tmp_path / "worker.log"
    worker = start_worker_process(config, log)
    try:
        handle = await start_run(client, config, RunRequest(agent="demo", task="log"))
        result = await asyncio.wait_for(handle.result(), timeout=60)
        description = await handle.describe()
    finally:
        worker.terminate()
        worker.wait(10)
    assert result.state is RunState.COMPLETED
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    started = [line for line in lines if line.get("event") == "command started"]
    assert [line["turn"] for line in started] == ["1", "2"]
    for line in started:
        assert line["workflow_id"] == handle.id and line["run_id"] == description.run_id
        assert line["activity"] == "exec_command" and line["agent"] == "demo" and line["attempt"] == 1
    model_calls = [line for line in lines if line.get("event") == "model call"]
    assert [line["turn"] for line in model_calls] == ["1", "2", "3"]
    assert all(line["activity"] == "call_model" for line in model_calls)
