"""Loop overhead: ms per tool turn through Temporal versus the same loop in-process.

200 turns of `exec_command("true")` with the scripted model, once as an AgentRun
workflow on a real Temporal dev server with an in-process worker, once as a plain
loop calling the same activity code directly (no Temporal). Both use the real
openai client, the real scripted server and real bubblewrap processes, so the
ratio is the price of durability. Prints one JSON line per measurement.

    python bench/loop_overhead.py [--turns 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.exec_session import ExecActivities
from activities.model import ModelActivities
from activities.sandbox import SandboxActivities
from activities.sandbox_io import CreateSandboxRequest, ExecRequest
from harness.agents import DEMO_AGENT
from harness.config import FarlineConfig
from harness.conversation import ConversationItem, FunctionCallOutputItem, MessageItem, ModelRequest
from harness.devserver import temporal_binary
from harness.logging import configure_logging
from harness.runs import start_run
from harness.scripted_model import Script, ScriptedModelServer
from harness.specs import RunRequest, RunState
from harness.tools import (
    BUILTIN_TOOLS,
    EXEC_YIELD_DEFAULT_MS,
    ExecCommandArgs,
    clamp_yield_ms,
    output_budget_bytes,
    parse_tool_call,
)
from sandbox_providers.local import LocalProvider
from worker import build_worker
from workflows.workspace_tools import process_id_for


def loop_script(turns: int) -> Script:
    exec_true = {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "true"}}]}
    return Script.model_validate({"turns": [exec_true] * turns + [{"message": "done"}]})


async def through_temporal(config: FarlineConfig, turns: int) -> float:
    # the dev server prints a banner on its stdout; keep ours for the JSON lines
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(), data_converter=pydantic_data_converter
        )
    finally:
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    try:
        config = config.model_copy(update={"temporal_address": env.client.service_client.config.target_host})
        async with build_worker(env.client, config):
            started = time.perf_counter()
            handle = await start_run(
                env.client, config, RunRequest(agent="demo", task="bench", max_turns=turns + 1)
            )
            result = await handle.result()
            elapsed = time.perf_counter() - started
        if result.state is not RunState.COMPLETED or result.turns != turns + 1:
            raise RuntimeError(f"the Temporal run did not finish as scripted: {result}")
        return elapsed
    finally:
        await env.shutdown()


async def in_process(config: FarlineConfig, turns: int) -> float:
    """The workflow's loop, written plainly: same model and exec activity code, no Temporal."""
    model = ModelActivities(config)
    providers = {"local": LocalProvider.from_config(config)}
    sandbox = SandboxActivities(providers)
    execs = ExecActivities(providers)
    activity_env = ActivityEnvironment()
    tools = {name: BUILTIN_TOOLS[name] for name in DEMO_AGENT.tools}
    started = time.perf_counter()
    ref = await activity_env.run(
        sandbox.create_sandbox,
        CreateSandboxRequest(provider="local", sandbox_id=f"bench-{uuid.uuid4().hex[:8]}"),
    )
    items: list[ConversationItem] = [MessageItem(role="user", content="bench")]
    for turn in range(1, turns + 2):
        model_turn = await activity_env.run(
            model.call_model,
            ModelRequest(
                settings=DEMO_AGENT.model,
                instructions=DEMO_AGENT.instructions,
                items=items,
                tools=[tool.spec for tool in tools.values()],
            ),
        )
        items.extend(model_turn.items)
        if not model_turn.function_calls:
            break
        for call in model_turn.function_calls:
            args = parse_tool_call(call, tools)
            assert isinstance(args, ExecCommandArgs)
            result = await activity_env.run(
                execs.exec_command,
                ExecRequest(
                    sandbox=ref,
                    process_id=process_id_for(turn, call.call_id),
                    cmd=args.cmd,
                    yield_time_ms=clamp_yield_ms(args.yield_time_ms, EXEC_YIELD_DEFAULT_MS),
                    max_output_bytes=output_budget_bytes(args.max_output_tokens),
                ),
            )
            items.append(FunctionCallOutputItem(call_id=call.call_id, output=result.for_model(None)))
    await activity_env.run(sandbox.destroy_sandbox, ref)
    return time.perf_counter() - started


async def main() -> None:
    configure_logging("console", level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    turns = parser.parse_args().turns
    with tempfile.TemporaryDirectory() as data_dir, ScriptedModelServer(loop_script(turns)) as server:
        config = FarlineConfig(
            data_dir=Path(data_dir),
            task_queue=f"bench-{uuid.uuid4().hex[:8]}",
            openai_base_url=server.base_url,
            model="scripted",
        )
        baseline_s = await in_process(config, turns)
        temporal_s = await through_temporal(config, turns)
        unpinned_s = await through_temporal(config.model_copy(update={"pin_local_sandboxes": False}), turns)
    baseline_ms = baseline_s * 1000 / turns
    temporal_ms = temporal_s * 1000 / turns
    lines = [
        {
            "bench": "loop_overhead",
            "mode": "in_process",
            "turns": turns,
            "ms_per_turn": round(baseline_ms, 2),
        },
        {"bench": "loop_overhead", "mode": "temporal", "turns": turns, "ms_per_turn": round(temporal_ms, 2)},
        {
            "bench": "loop_overhead",
            "mode": "temporal_unpinned_sandbox",
            "turns": turns,
            "ms_per_turn": round(unpinned_s * 1000 / turns, 2),
        },
        {
            "bench": "loop_overhead",
            "metric": "temporal_over_in_process",
            "ratio": round(temporal_ms / baseline_ms, 2),
            "overhead_ms_per_turn": round(temporal_ms - baseline_ms, 2),
        },
    ]
    for line in lines:
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
