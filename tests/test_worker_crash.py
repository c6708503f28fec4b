"""SIGKILL the worker mid-command: a new worker finishes the run, nothing runs twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client

from harness.config import FarlineConfig
from harness.runs import start_run
from harness.scripted_model import Script
from harness.specs import RunRequest, RunState, RunStatus

REPO = Path(__file__).resolve().parent.parent


def start_worker_process(config: FarlineConfig, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FARLINE_TEMPORAL_ADDRESS": config.temporal_address,
        "FARLINE_TASK_QUEUE": config.task_queue,
        "FARLINE_DATA_DIR": str(config.data_dir),
        "OPENAI_BASE_URL": config.openai_base_url or "",
        "FARLINE_MODEL": config.model,
        "FARLINE_LOG_FORMAT": "json",
    }
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "worker"], cwd=REPO, env=env, stdout=out, stderr=out)


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


async def test_sigkill_worker_during_a_slow_command(
    client: Client, scripted_model, make_config, tmp_path
) -> None:
    server = scripted_model(
        Script.model_validate(
            {
                "turns": [
                    {
                        "tool_calls": [
                            {
                                "name": "exec_command",
                                "arguments": {
                                    "cmd": "echo run >> runs.log; sleep 5; echo slow-done; wc -l < runs.log"
                                },
                            }
                        ]
                    },
                    {"message": "{last_tool_output}"},
                ]
            }
        )
    )
    config = make_config(server)
    first = start_worker_process(config, tmp_path / "worker-1.log")
    second = None
    try:
        handle = await start_run(client, config, RunRequest(agent="demo", task="slow work"))

        async def command_started() -> bool:
            status = await handle.query("status", result_type=RunStatus)
            logs = list(config.sandboxes_dir.glob("*/workspace/runs.log"))
            return status.state is RunState.RUNNING_TOOLS and bool(logs)

        await wait_for(command_started)
        first.send_signal(signal.SIGKILL)
        first.wait()

        second = start_worker_process(config, tmp_path / "worker-2.log")
        result = await asyncio.wait_for(handle.result(), timeout=90)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)

    assert result.state is RunState.COMPLETED
    assert "slow-done" in result.final_message
    # the command ran once: the second worker attached to the first one's process
    assert result.final_message.rstrip().endswith("1")
    assert "Process exited with code 0" in result.final_message
    # every model call was made exactly once
    assert server.count_by_turn() == {0: 1, 1: 1}
