"""Workers in their own processes, for the tests that SIGKILL one mid-run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from harness.config import FarlineConfig
from harness.runs import start_run
from harness.specs import RunRequest, RunResult

REPO = Path(__file__).resolve().parent.parent

HandleCheck = Callable[[WorkflowHandle], Awaitable[object]]


def start_worker_process(config: FarlineConfig, log: Path) -> subprocess.Popen[bytes]:
    """`python -m worker` with this config's queue, data dir, snapshot dir and model."""
    env = {
        **os.environ,
        "FARLINE_TEMPORAL_ADDRESS": config.temporal_address,
        "FARLINE_TASK_QUEUE": config.task_queue,
        "FARLINE_DATA_DIR": str(config.data_dir),
        "OPENAI_BASE_URL": config.openai_base_url or "",
        "FARLINE_MODEL": config.model,
        "FARLINE_LOG_FORMAT": "json",
        "FARLINE_SNAPSHOT_DIR": str(config.snapshots_dir),
        "FARLINE_PAYLOAD_DIR": str(config.payloads_dir),
    }
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "worker"], cwd=REPO, env=env, stdout=out, stderr=out)


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


async def run_across_a_worker_kill(
    client: Client,
    config: FarlineConfig,
    logs: Path,
    request: RunRequest,
    killed_when: Callable[[WorkflowHandle], Awaitable[bool]],
    after_restart: HandleCheck | None = None,
) -> tuple[WorkflowHandle, RunResult]:
    """Start a run on a worker process, SIGKILL it once `killed_when` holds, start a second
    worker (then `after_restart`), and return the run's result."""
    first = start_worker_process(config, logs / "worker-1.log")
    second = None
    try:
        handle = await start_run(client, config, request)
        await wait_for(lambda: killed_when(handle))
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = start_worker_process(config, logs / "worker-2.log")
        if after_restart is not None:
            await after_restart(handle)
        result = await asyncio.wait_for(handle.result(), timeout=90)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)
    return handle, result
