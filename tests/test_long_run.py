"""A run of hundreds of turns: compactions keep the context small, continue-as-new keeps history small."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from harness.rollout import rollout, run_ids
from harness.runs import start_run
from harness.scripted_model import Script
from harness.specs import CompactionSettings, RunRequest, RunResult, RunState, RunStatus
from harness.temporal_client import with_farline_converter
from tests.script_helpers import call, script
from tests.test_cli import run_command
from workflows.agent_run import AgentRun

TURNS = 300
HISTORIES = Path(__file__).parent / "histories"


async def test_three_hundred_turns_with_compactions_and_continue_as_new(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    turns = [call("list_tasks") for _ in range(TURNS)]
    server = scripted_model(script(*turns, {"message": "all done: {last_tool_output}"}))
    config = make_config(server)
    request = RunRequest(
        agent="tracker",
        task="check the tracker, many times",
        max_turns=TURNS + 1,
        compaction=CompactionSettings(context_window=6_000, recent_user_tokens=500),
        continue_as_new_after_events=1_500,
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        reader = with_farline_converter(client, config).get_workflow_handle(handle.id, result_type=RunResult)
        result = await asyncio.wait_for(reader.result(), timeout=600)
        status = await reader.query("status", result_type=RunStatus)

    assert result.state is RunState.COMPLETED and result.turns == TURNS + 1
    assert result.final_message.startswith("all done:")
    assert status.compactions >= 2 and status.continued_as_new >= 1
    # every scripted turn was asked exactly once: compactions and new runs lost no turn and
    # repeated none (compaction requests are counted as turn -1)
    counts = server.count_by_turn()
    assert counts.pop(-1) == status.compactions
    assert counts == dict.fromkeys(range(TURNS + 1), 1)
    # the model never saw more than the window allows
    largest = max(len(str(r.body)) for r in server.requests if r.body) // 4
    assert largest < 6_000
    # each incarnation's history stayed bounded
    history = await handle.fetch_history()
    assert len(history.events) < 1_500 + 100

    # the rollout is whole across compactions and new runs: every call and every result once
    lines = [line async for line in rollout(with_farline_converter(client, config), handle.id)]
    calls = [
        line["item"]["call_id"] for line in lines if line["kind"] == "output" and "call_id" in line["item"]
    ]
    results = [
        line["item"]["call_id"]
        for line in lines
        if line["kind"] == "input" and line["item"]["type"] == "function_call_output"
    ]
    assert len(calls) == TURNS and calls == results
    assert sorted({line["turn"] for line in lines if line["kind"] == "usage"}) == list(range(1, TURNS + 2))
    assert sum(line["kind"] == "compaction" for line in lines) == status.compactions
    assert sum(line["kind"] == "continued_as_new" for line in lines) == status.continued_as_new
    assert lines[-2]["item"]["content"].startswith("all done:")
    # the same from the CLI
    code, output = await run_command(
        sys.executable,
        "-m",
        "harness.cli",
        "rollout",
        handle.id,
        env={"FARLINE_TEMPORAL_ADDRESS": config.temporal_address, "FARLINE_DATA_DIR": str(config.data_dir)},
    )
    assert code == 0 and [json.loads(text) for text in output.splitlines()] == lines


async def test_server_side_compaction_keeps_the_opaque_item_and_drops_what_it_replaced(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    turns = 60
    server = scripted_model(script(*[call("list_tasks") for _ in range(turns)], {"message": "done"}))
    config = make_config(server)
    window = CompactionSettings(context_window=6_000, mode="server")
    request = RunRequest(agent="tracker", task="server compaction", max_turns=turns + 1, compaction=window)
    async with running_worker(config):
        handle = await start_run(client, config, request)
        result = await asyncio.wait_for(handle.result(), timeout=300)
        status = await handle.query("status", result_type=RunStatus)

    assert result.state is RunState.COMPLETED and result.turns == turns + 1
    assert status.compactions >= 2 and status.last_compaction.startswith("server-side")
    # no Farline compaction call was made, every turn was asked once
    assert server.count_by_turn() == dict.fromkeys(range(turns + 1), 1)
    bodies = [r.body for r in server.requests if r.body]
    assert all(body["context_management"][0]["compact_threshold"] == window.threshold for body in bodies)
    # after the server compacted, each request starts from its compaction item, nothing before it
    compacted = [body for body in bodies if any(entry.get("type") == "compaction" for entry in body["input"])]
    assert compacted and all(body["input"][0]["type"] == "compaction" for body in compacted)
    assert max(len(str(body["input"])) for body in bodies) // 4 < window.context_window


async def test_a_long_history_with_compaction_and_continue_as_new_replays(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    """Every incarnation of a compacted, continued run replays; FARLINE_RECORD_HISTORIES=1 keeps the
    first two in tests/histories/ so later code must replay them too."""
    turns = 40
    server = scripted_model(script(*[call("list_tasks") for _ in range(turns)], {"message": "done"}))
    config = make_config(server)
    request = RunRequest(
        agent="tracker",
        task="a long history",
        max_turns=turns + 1,
        compaction=CompactionSettings(context_window=3_000, recent_user_tokens=200),
        continue_as_new_after_events=200,
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        result = await asyncio.wait_for(handle.result(), timeout=300)
        status = await handle.query("status", result_type=RunStatus)
    assert result.state is RunState.COMPLETED
    assert status.compactions >= 1 and status.continued_as_new >= 1

    replayer = Replayer(workflows=[AgentRun], data_converter=pydantic_data_converter)
    histories = [
        await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        for run_id in await run_ids(client, handle.id)
    ]
    assert len(histories) == status.continued_as_new + 1
    for history in histories:
        await replayer.replay_workflow(history)
    if os.environ.get("FARLINE_RECORD_HISTORIES"):
        for index, history in enumerate(histories[:2]):
            (HISTORIES / f"agent_run_v6_long_run_part{index + 1}.json").write_text(history.to_json())


async def test_a_summary_request_that_overflows_drops_the_oldest_items_and_retries(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    turns = 30
    too_long = {"status": 400, "message": "maximum context length is 3000 tokens (context_length_exceeded)"}
    server = scripted_model(
        Script.model_validate(
            {
                "turns": [call("list_tasks") for _ in range(turns)] + [{"message": "done"}],
                "compaction_fail_first": [too_long, too_long],
            }
        )
    )
    config = make_config(server)
    request = RunRequest(
        agent="tracker",
        task="overflowing summaries",
        max_turns=turns + 1,
        compaction=CompactionSettings(context_window=3_000, recent_user_tokens=200),
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        result = await asyncio.wait_for(handle.result(), timeout=300)
    assert result.state is RunState.COMPLETED

    compactions = [line async for line in rollout(client, handle.id) if line["kind"] == "compaction"]
    # the first summary request was refused twice as too long; the third, shorter, went through
    assert compactions[0]["dropped_items"] > 0
    assert all(later["dropped_items"] == 0 for later in compactions[1:])
    refused = [r for r in server.requests if r.turn == -1 and r.status == 400]
    assert len(refused) == 2
