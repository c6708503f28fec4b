"""Two worker processes on one machine share the load; killing one moves its runs to the other."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from temporalio.client import Client

from harness.runs import start_run
from harness.specs import RunRequest, RunState, RunStatus, SandboxSettings
from tests.script_helpers import exec_call, script
from tests.test_worker_loss import destroy_all
from tests.worker_processes import start_worker_process, wait_for

RUNS = 12
SCRIPT = script(
    exec_call("mkdir -p notes && echo 'from turn 1' > notes/one.txt"),
    exec_call("echo 'from turn 2' > notes/two.txt; sleep 6", yield_time_ms=30000),
    exec_call("cat notes/*.txt"),
    {"message": "{last_tool_output}"},
)


def holders(sandboxes: Path) -> set[str]:
    """The sandboxes of this worker that are running turn 2's command."""
    return {procs.parent.parent.name for procs in sandboxes.glob("*/procs/t2-*")}


async def test_two_workers_share_runs_and_one_killed_hands_its_runs_to_the_other(
    client: Client, scripted_model, make_config, tmp_path: Path
) -> None:
    server = scripted_model(SCRIPT)
    shared = {"snapshot_dir": tmp_path / "shared-snapshots", "payload_dir": tmp_path / "shared-payloads"}
    worker_a = make_config(server, data_dir=tmp_path / "worker-a", **shared)
    worker_b = worker_a.model_copy(update={"data_dir": tmp_path / "worker-b"})
    request = RunRequest(agent="demo", task="share", sandbox=SandboxSettings(worker_lost_after_s=3))
    first = start_worker_process(worker_a, tmp_path / "worker-a.log")
    second = start_worker_process(worker_b, tmp_path / "worker-b.log")
    try:

        async def both_polling() -> bool:
            logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
            return all(log.exists() and "worker started" in log.read_text() for log in logs)

        await wait_for(both_polling, timeout=60)
        handles = [await start_run(client, worker_a, request) for _ in range(RUNS)]

        async def all_in_turn_two() -> bool:
            return len(holders(worker_a.sandboxes_dir)) + len(holders(worker_b.sandboxes_dir)) == RUNS

        await wait_for(all_in_turn_two, timeout=90)
        on_a, on_b = holders(worker_a.sandboxes_dir), holders(worker_b.sandboxes_dir)
        # the runs spread across both workers, and each sandbox stays with the worker that made it
        assert on_a and on_b and not on_a & on_b
        first.send_signal(signal.SIGKILL)
        first.wait()
        results = await asyncio.wait_for(
            asyncio.gather(*(handle.result() for handle in handles)), timeout=180
        )
        statuses = [await handle.query("status", result_type=RunStatus) for handle in handles]
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.terminate()
                process.wait(10)
        await destroy_all(worker_a.sandboxes_dir)
        await destroy_all(worker_b.sandboxes_dir)

    assert all(result.state is RunState.COMPLETED for result in results)
    for result, status in zip(results, statuses, strict=True):
        moved = status.rehydrations == 1
        if moved:
            # worker A's runs went on on worker B from their snapshot: turn 2 never completed there
            assert result.final_message.strip().endswith("Output:\nfrom turn 1")
        else:
            assert result.final_message.strip().endswith("from turn 1\nfrom turn 2")
    assert sum(status.rehydrations for status in statuses) == len(on_a)
    assert "snapshot.restored" in (tmp_path / "worker-b.log").read_text()
