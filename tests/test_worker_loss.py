"""A worker SIGKILLed together with its sandbox, and a machine that never comes back."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from harness.config import FarlineConfig
from harness.runs import start_run
from harness.specs import RunRequest, RunState, RunStatus, SandboxSettings
from sandbox_providers.base import SandboxRef
from sandbox_providers.local import LocalProvider
from tests.script_helpers import exec_call, script, tool_outputs
from tests.worker_processes import run_across_a_worker_kill, start_worker_process, wait_for

SCRIPT = script(
    exec_call("mkdir -p notes && echo 'written in turn 1' > notes/one.txt"),
    exec_call("echo 'started in turn 2' > notes/two.txt; sleep 60", yield_time_ms=30000),
    exec_call("cat notes/*.txt"),
    {"message": "{last_tool_output}"},
)


def sleeping_in_turn_two(config: FarlineConfig):
    async def check(handle: WorkflowHandle) -> bool:
        status = await handle.query("status", result_type=RunStatus)
        return status.turn == 2 and bool(list(config.sandboxes_dir.glob("*/procs/t2-*")))

    return check


async def destroy_all(sandboxes: Path) -> None:
    if sandboxes.is_dir():
        provider = LocalProvider(sandboxes)
        for sandbox in sandboxes.iterdir():
            await provider.destroy(SandboxRef(provider="local", sandbox_id=sandbox.name))


async def test_worker_sigkill_and_sandbox_loss_together(
    client: Client, scripted_model, make_config, tmp_path: Path
) -> None:
    server = scripted_model(SCRIPT)
    config = make_config(server)

    async def sandbox_dies_too(handle: WorkflowHandle) -> None:
        await destroy_all(config.sandboxes_dir)

    _, result = await run_across_a_worker_kill(
        client,
        config,
        tmp_path,
        RunRequest(agent="demo", task="survive"),
        sleeping_in_turn_two(config),
        after_restart=sandbox_dies_too,
    )
    assert result.state is RunState.COMPLETED
    # turn 1's file came back from its snapshot; turn 2's never completed
    assert result.final_message.strip().endswith("Output:\nwritten in turn 1")
    assert "sandbox was lost and replaced" in tool_outputs(server)[1]
    assert server.count_by_turn() == {0: 1, 1: 1, 2: 1, 3: 1}


async def test_a_machine_that_never_comes_back_moves_the_run_to_another(
    client: Client, scripted_model, make_config, tmp_path: Path
) -> None:
    """Two machines (workers with their own data dirs) share the run's queue and a snapshot store."""
    server = scripted_model(SCRIPT)
    shared = {"snapshot_dir": tmp_path / "shared-snapshots"}
    machine_a = make_config(server, data_dir=tmp_path / "machine-a", **shared)
    machine_b = machine_a.model_copy(update={"data_dir": tmp_path / "machine-b"})
    assert machine_a.local_sandbox_task_queue != machine_b.local_sandbox_task_queue
    request = RunRequest(agent="demo", task="move", sandbox=SandboxSettings(worker_lost_after_s=2))

    first = start_worker_process(machine_a, tmp_path / "machine-a.log")
    second = None
    try:
        handle = await start_run(client, machine_a, request)
        await wait_for(lambda: sleeping_in_turn_two(machine_a)(handle))
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = start_worker_process(machine_b, tmp_path / "machine-b.log")
        result = await asyncio.wait_for(handle.result(), timeout=90)
        status = await handle.query("status", result_type=RunStatus)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)
        await destroy_all(machine_a.sandboxes_dir)

    assert result.state is RunState.COMPLETED
    assert result.final_message.strip().endswith("Output:\nwritten in turn 1")
    assert status.rehydrations == 1
    assert "sandbox was lost and replaced" in tool_outputs(server)[1]
    # the run finished on machine B, from the snapshot machine A had taken
    log_b = (tmp_path / "machine-b.log").read_text()
    assert "snapshot.restored" in log_b
