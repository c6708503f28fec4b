"""Workspace tool costs: exec round trip through the workflow, apply_patch on a large file.

- exec: `exec_command("true")` turns through an AgentRun workflow (real Temporal dev
  server, scripted model, bubblewrap), against the baseline of starting `true` in the
  same sandbox provider directly and waiting for it (no model, no Temporal).
- apply_patch: one hunk in the middle of a 10,000-line file, against the baseline
  of reading and rewriting that file once.

Prints one JSON line per measurement.  python bench/tools.py [--turns 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
import uuid
from pathlib import Path

from quiet_dev_server import start_quiet_dev_server

from harness.apply_patch import apply_patch_to_directory
from harness.config import FarlineConfig
from harness.logging import configure_logging
from harness.runs import start_run
from harness.scripted_model import Script, ScriptedModelServer
from harness.specs import RunRequest, RunState
from sandbox_providers.base import ProcessSpec, SandboxConfig
from sandbox_providers.local import LocalProvider
from worker import build_worker

PATCH_LINES = 10_000
PATCH_REPEATS = 50


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "tools", **fields}), flush=True)


async def exec_through_workflow(config: FarlineConfig, turns: int) -> float:
    exec_true = {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "true"}}]}
    script = Script.model_validate({"turns": [exec_true] * turns + [{"message": "done"}]})
    env = await start_quiet_dev_server()
    try:
        with ScriptedModelServer(script) as server:
            config = config.model_copy(
                update={
                    "temporal_address": env.client.service_client.config.target_host,
                    "openai_base_url": server.base_url,
                }
            )
            async with build_worker(env.client, config):
                started = time.perf_counter()
                handle = await start_run(
                    env.client, config, RunRequest(agent="demo", task="b", max_turns=turns + 1)
                )
                result = await handle.result()
                elapsed = time.perf_counter() - started
        if result.state is not RunState.COMPLETED:
            raise RuntimeError(f"the run did not complete: {result}")
        return elapsed * 1000 / turns
    finally:
        await env.shutdown()


async def exec_direct(config: FarlineConfig, turns: int) -> float:
    provider = LocalProvider.from_config(config)
    ref = await provider.create(f"bench-{uuid.uuid4().hex[:8]}", SandboxConfig())
    try:
        started = time.perf_counter()
        for turn in range(turns):
            state = await provider.start_process(
                ref, ProcessSpec(process_id=f"p{turn}", argv=["bash", "-c", "true"])
            )
            while state.running:
                await asyncio.sleep(0.005)
                state = await provider.process_state(ref, f"p{turn}")
        return (time.perf_counter() - started) * 1000 / turns
    finally:
        await provider.destroy(ref)


def apply_patch_timings(root: Path) -> tuple[float, float]:
    target = root / "big.py"
    lines = [f"value_{i} = {i}\n" for i in range(PATCH_LINES)]
    middle = PATCH_LINES // 2
    patch_time = baseline_time = 0.0
    for repeat in range(PATCH_REPEATS):
        target.write_text("".join(lines))
        old, new = lines[middle].rstrip("\n"), f"value_{middle} = {repeat + 1_000_000}"
        patch = (
            "*** Begin Patch\n*** Update File: big.py\n@@\n"
            f" {lines[middle - 1].rstrip()}\n-{old}\n+{new}\n {lines[middle + 1].rstrip()}\n*** End Patch\n"
        )
        started = time.perf_counter()
        apply_patch_to_directory(root, patch)
        patch_time += time.perf_counter() - started
        if new not in target.read_text():
            raise RuntimeError("the patch did not apply")
        started = time.perf_counter()
        target.write_bytes(target.read_bytes())
        baseline_time += time.perf_counter() - started
    return patch_time * 1000 / PATCH_REPEATS, baseline_time * 1000 / PATCH_REPEATS


async def main() -> None:
    configure_logging("console", level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    turns = parser.parse_args().turns
    with tempfile.TemporaryDirectory() as data_dir:
        config = FarlineConfig(
            data_dir=Path(data_dir), task_queue=f"bench-{uuid.uuid4().hex[:8]}", model="scripted"
        )
        direct_ms = await exec_direct(config, turns)
        workflow_ms = await exec_through_workflow(config, turns)
        emit(measure="exec_true_direct", turns=turns, ms=round(direct_ms, 2))
        emit(measure="exec_true_workflow_turn", turns=turns, ms=round(workflow_ms, 2))
        emit(measure="exec_workflow_over_direct", ratio=round(workflow_ms / direct_ms, 2))
        patch_root = Path(data_dir) / "patch"
        patch_root.mkdir()
        patch_ms, io_ms = apply_patch_timings(patch_root)
        emit(measure="apply_patch_10k_lines_one_hunk", ms=round(patch_ms, 3))
        emit(measure="rewrite_10k_lines_baseline", ms=round(io_ms, 3))
        emit(measure="apply_patch_over_rewrite", ratio=round(patch_ms / io_ms, 2))


if __name__ == "__main__":
    asyncio.run(main())
