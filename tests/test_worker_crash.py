"""SIGKILL the worker mid-command: a new worker finishes the run, nothing runs twice."""

from __future__ import annotations

from temporalio.client import Client

from harness.scripted_model import Script
from harness.specs import RunRequest, RunState, RunStatus
from tests.worker_processes import run_across_a_worker_kill


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

    async def command_started(handle) -> bool:
        status = await handle.query("status", result_type=RunStatus)
        logs = list(config.sandboxes_dir.glob("*/workspace/runs.log"))
        return status.state is RunState.RUNNING_TOOLS and bool(logs)

    _, result = await run_across_a_worker_kill(
        client, config, tmp_path, RunRequest(agent="demo", task="slow work"), command_started
    )

    assert result.state is RunState.COMPLETED
    assert "slow-done" in result.final_message
    # the command ran once: the second worker attached to the first one's process
    assert result.final_message.rstrip().endswith("1")
    assert "Process exited with code 0" in result.final_message
    # every model call was made exactly once
    assert server.count_by_turn() == {0: 1, 1: 1}
