"""Long runs: history bytes and ms per turn over 1,000 turns, AgentRun against a naive loop.

The `tracker` agent calls the cheap `list_tasks` function tool every turn (scripted
model, real Temporal dev server, in-process worker), as an AgentRun workflow: each
model call carries only the items new since the stored context, the context is
compacted near the model's window (`--context-window`, default 50,000 tokens so that
compactions happen: the agent's own 200,000 is not reached in 1,000 turns), and the
run continues as new when Temporal suggests it. The baseline, in the same run, is a
naive loop workflow (`NaiveLoop`, defined here, with a worker of its own running the
same `call_model` and `run_function_tool` activity code) that sends the whole context
inline every turn, so its history grows with the square of the turns; it is capped at
`--naive-turns` to stay under Temporal's limits (50 MB of history, 2 MB a payload).

Measured from the histories themselves (every incarnation): the bytes of the events
of each turn (from one `call_model` scheduling to the next, so a turn's tool call,
and any compaction or continue-as-new after it, count in it) and the time between
those schedulings. "first"/"last" are the first and last `window` turns: 100, or a
tenth of `--turns` for short runs. Prints one JSON line per measurement.

    python bench/long_run.py [--turns 1000] [--naive-turns 300] [--context-window 50000]
"""

from __future__ import annotations

from temporalio import workflow

# the sandbox re-imports this module for NaiveLoop: everything else passes through
with workflow.unsafe.imports_passed_through():
    import argparse
    import asyncio
    import json
    import logging
    import statistics
    import tempfile
    import time
    import uuid
    from collections.abc import Iterator
    from dataclasses import dataclass, field
    from datetime import timedelta
    from pathlib import Path
    from typing import Any

    from google.protobuf.message import Message
    from pydantic import BaseModel
    from quiet_dev_server import start_quiet_dev_server
    from temporalio.api.enums.v1 import EventType
    from temporalio.api.history.v1 import HistoryEvent
    from temporalio.client import Client
    from temporalio.common import RetryPolicy
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from activities.function_tools import FunctionToolActivities
    from activities.function_tools_io import FunctionToolRequest, FunctionToolResult
    from activities.model import ModelActivities
    from harness.agents import TRACKER_AGENT
    from harness.config import FarlineConfig
    from harness.conversation import (
        ConversationItem,
        FunctionCallOutputItem,
        MessageItem,
        ModelRequest,
        ModelTurn,
    )
    from harness.function_tools import FunctionToolRegistry, RunContext
    from harness.logging import configure_logging
    from harness.runs import start_run
    from harness.scripted_model import RecordedRequest, Script, ScriptedModelServer
    from harness.specs import CompactionSettings, RunRequest, RunResult, RunState, RunStatus
    from harness.tools import BUILTIN_TOOLS, offered_specs
    from worker import build_worker, default_function_tools

TASK = "check the tracker, many times"
PAYLOAD_TYPE = "temporal.api.common.v1.Payload"
# the SDK's default threshold for moving a payload to external storage, and Temporal's limits
EXTERNAL_STORAGE_THRESHOLD = 256 * 1024
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024
TEMPORAL_HISTORY_LIMIT = 50 * 1024 * 1024
# a list_tasks turn adds ~160 tokens: the tracker agent's 200,000-token window would first be
# reached after ~1,100 turns, so the bench compacts at a smaller window (about every 270 turns)
COMPACTION_WINDOW = 50_000


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "long_run", **fields}), flush=True)


def window_for(turns: int) -> int:
    """Turns in "the first/last hundred": 100, or a tenth of a short run (at least one)."""
    return min(100, max(1, turns // 10))


def tracker_script(turns: int) -> Script:
    list_tasks = {"tool_calls": [{"name": "list_tasks", "arguments": {}}]}
    return Script.model_validate({"turns": [list_tasks] * turns + [{"message": "all done"}]})


class LeanScriptedModelServer(ScriptedModelServer):
    """The scripted server, without keeping each request's body: a thousand bodies of growing
    contexts would fill memory and slow the late turns with garbage collection."""

    def _record(self, method: str, path: str, body: Any, turn: int | None, reply: Any) -> Any:
        with self._lock:
            self._requests.append(
                RecordedRequest(method=method, path=path, body=None, turn=turn, status=reply.status)
            )
        return reply


# --- the baseline: a loop sending the whole context inline every turn --------------------------


class NaiveLoopInput(BaseModel):
    # settings, instructions and tools of every call; `items` is the start of the context
    request: ModelRequest
    max_turns: int
    agent: str


@workflow.defn(name="NaiveLoop")
class NaiveLoop:
    @workflow.run
    async def run(self, start: NaiveLoopInput) -> int:
        items: list[ConversationItem] = list(start.request.items)
        for turn in range(1, start.max_turns + 1):
            model_turn = await workflow.execute_activity(
                "call_model",
                start.request.model_copy(update={"items": list(items), "by_reference": False}),
                result_type=ModelTurn,
                start_to_close_timeout=timedelta(minutes=15),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
            items.extend(model_turn.items)
            calls = model_turn.function_calls
            if not calls:
                return turn
            for call in calls:
                result = await workflow.execute_activity(
                    "run_function_tool",
                    FunctionToolRequest(
                        tool=call.name, call_id=call.call_id, arguments=call.arguments, agent=start.agent
                    ),
                    result_type=FunctionToolResult,
                    start_to_close_timeout=timedelta(seconds=90),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
                items.append(FunctionCallOutputItem(call_id=call.call_id, output=result.output))
        return start.max_turns


def naive_request(registry: FunctionToolRegistry) -> ModelRequest:
    """What AgentRun sends the tracker agent's model, with the whole context inline."""
    agent = TRACKER_AGENT
    builtin = {name: BUILTIN_TOOLS[name] for name in agent.tools if name in BUILTIN_TOOLS}
    app = [tool.spec for tool in registry.enabled(agent.tools, RunContext(agent=agent.name))]
    return ModelRequest(
        settings=agent.model,
        instructions=agent.instructions,
        items=[MessageItem(role="user", content=TASK)],
        tools=offered_specs(builtin, bool(agent.model.freeform_apply_patch)) + app,
        by_reference=False,
    )


# --- reading histories --------------------------------------------------------------------------


@dataclass
class HistoryStats:
    """One run's history (all its incarnations), per turn."""

    # per model call: the bytes of its events up to the next call, and the ms until it
    turn_bytes: list[int] = field(default_factory=list)
    turn_ms: list[float] = field(default_factory=list)
    total_bytes: int = 0
    events: int = 0
    incarnations: int = 0
    largest_payload: int = 0
    largest_event: int = 0
    payloads_over_threshold: int = 0


def payload_sizes(message: Message) -> Iterator[int]:
    """The size of every Payload in a protobuf message, however deeply nested (maps included)."""
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.is_repeated:
            values = value.values() if descriptor.message_type.GetOptions().map_entry else value
        else:
            values = [value]
        for item in values:
            if not isinstance(item, Message):
                continue
            if item.DESCRIPTOR.full_name == PAYLOAD_TYPE:
                yield item.ByteSize()
            else:
                yield from payload_sizes(item)


async def history_stats(client: Client, workflow_id: str, first_run_id: str) -> HistoryStats:
    """Follow the run from its first incarnation through every continue-as-new."""
    stats = HistoryStats()
    run_id: str | None = first_run_id
    scheduled_at: list[float] = []
    current = 0  # bytes since the last call_model scheduling (before the first: the start)
    last_time = 0.0
    while run_id is not None:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        stats.incarnations += 1
        run_id = None
        for event in history.events:
            size = event.ByteSize()
            if is_model_call(event) and scheduled_at:
                stats.turn_bytes.append(current)
                current = 0
            current += size
            stats.total_bytes += size
            stats.events += 1
            stats.largest_event = max(stats.largest_event, size)
            for payload in payload_sizes(event):
                stats.largest_payload = max(stats.largest_payload, payload)
                stats.payloads_over_threshold += payload > EXTERNAL_STORAGE_THRESHOLD
            last_time = event.event_time.ToMilliseconds()
            if is_model_call(event):
                scheduled_at.append(last_time)
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                run_id = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    stats.turn_bytes.append(current)
    ends = [*scheduled_at[1:], last_time]
    stats.turn_ms = [end - start for start, end in zip(scheduled_at, ends, strict=True)]
    return stats


def is_model_call(event: HistoryEvent) -> bool:
    return (
        event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "call_model"
    )


def emit_trend(run: str, spans: dict[str, dict[str, Any]]) -> None:
    """The first and last spans of a run, and how bytes and time per turn moved between them."""
    for name, values in spans.items():
        emit(run=run, span=name, **values)
    for measure in ("bytes_per_turn", "ms_per_turn"):
        emit(
            run=run,
            metric=f"last_over_first_{measure}",
            ratio=ratio(spans["last"][measure], spans["first"][measure]),
        )


def mean(values: list[float] | list[int]) -> float:
    return statistics.fmean(values) if values else 0.0


# --- the two runs -------------------------------------------------------------------------------


def make_config(env: WorkflowEnvironment, data_dir: Path, server: ScriptedModelServer) -> FarlineConfig:
    return FarlineConfig(
        data_dir=data_dir,
        task_queue=f"bench-{uuid.uuid4().hex[:8]}",
        temporal_address=env.client.service_client.config.target_host,
        openai_base_url=server.base_url,
        model="scripted",
    )


@dataclass
class FarlineRun:
    stats: HistoryStats
    status: RunStatus
    seconds: float
    external_payloads: int


async def farline_run(
    env: WorkflowEnvironment, data_dir: Path, turns: int, compaction: CompactionSettings
) -> FarlineRun:
    with LeanScriptedModelServer(tracker_script(turns)) as server:
        config = make_config(env, data_dir, server)
        request = RunRequest(agent="tracker", task=TASK, max_turns=turns + 1, compaction=compaction)
        async with build_worker(env.client, config):
            started = time.perf_counter()
            handle = await start_run(env.client, config, request)
            result: RunResult = await handle.result()
            seconds = time.perf_counter() - started
            # the newest incarnation's status, counted over the whole run
            status = await env.client.get_workflow_handle(handle.id).query("status", result_type=RunStatus)
    if result.state is not RunState.COMPLETED or result.turns != turns + 1:
        raise RuntimeError(f"the AgentRun did not finish as scripted: {result}")
    assert handle.first_execution_run_id is not None
    stats = await history_stats(env.client, handle.id, handle.first_execution_run_id)
    external = sum(1 for path in config.payloads_dir.rglob("*") if path.is_file())
    return FarlineRun(stats, status, seconds, external)


async def naive_run(env: WorkflowEnvironment, data_dir: Path, turns: int) -> tuple[HistoryStats, float]:
    with LeanScriptedModelServer(tracker_script(turns)) as server:
        config = make_config(env, data_dir, server)
        registry = default_function_tools(config)
        # The same activity code as AgentRun's worker, on the loop's own queue: activities on
        # another queue would be matched by the server instead of started eagerly, which
        # doubles the ms per turn of this loop for reasons unrelated to its context. Plain
        # pydantic payloads (no external storage): the whole context really travels inline.
        loop_worker = Worker(
            env.client,
            task_queue=config.task_queue,
            workflows=[NaiveLoop],
            activities=[
                ModelActivities(config).call_model,
                FunctionToolActivities(registry).run_function_tool,
            ],
        )
        async with loop_worker:
            started = time.perf_counter()
            handle = await env.client.start_workflow(
                NaiveLoop.run,
                NaiveLoopInput(
                    request=naive_request(registry), max_turns=turns + 1, agent=TRACKER_AGENT.name
                ),
                id=f"naive-{uuid.uuid4().hex[:12]}",
                task_queue=config.task_queue,
            )
            ran = await handle.result()
            seconds = time.perf_counter() - started
    if ran != turns + 1:
        raise RuntimeError(f"the naive loop ran {ran} model calls, not {turns + 1}")
    assert handle.first_execution_run_id is not None
    return await history_stats(env.client, handle.id, handle.first_execution_run_id), seconds


# --- report -------------------------------------------------------------------------------------


def windows(stats: HistoryStats, turns: int, width: int) -> dict[str, dict[str, float]]:
    """bytes and ms per turn over the first and the last `width` of the `turns` tool turns."""
    spans = {"first": (0, width), "last": (turns - width, turns)}
    return {
        name: {
            "from_turn": start + 1,
            "to_turn": end,
            "bytes_per_turn": round(mean(stats.turn_bytes[start:end])),
            "ms_per_turn": round(mean(stats.turn_ms[start:end]), 2),
        }
        for name, (start, end) in spans.items()
    }


def extremes(stats: HistoryStats, turns: int) -> dict[str, float]:
    """The slowest (after the first, which starts the run) and the largest of the tool turns."""
    ms, sizes = stats.turn_ms[:turns], stats.turn_bytes[:turns]
    slowest = max(range(min(1, len(ms) - 1), len(ms)), key=ms.__getitem__)
    largest = max(range(len(sizes)), key=sizes.__getitem__)
    return {
        "slowest_turn": slowest + 1,
        "slowest_turn_ms": round(ms[slowest], 1),
        "largest_turn": largest + 1,
        "largest_turn_bytes": sizes[largest],
    }


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


async def main() -> None:
    configure_logging("console", level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000, help="tool turns of the AgentRun")
    parser.add_argument(
        "--naive-turns", type=int, default=300, help="tool turns of the naive loop (at most --turns)"
    )
    parser.add_argument(
        "--context-window",
        type=int,
        default=COMPACTION_WINDOW,
        help=f"the model window compaction keeps under (default {COMPACTION_WINDOW:,}; the agent's own, "
        f"{TRACKER_AGENT.compaction.context_window:,}, is not reached in 1,000 turns)",
    )
    args = parser.parse_args()
    turns: int = args.turns
    naive_turns = min(args.naive_turns, turns)
    width = window_for(turns)
    compaction = CompactionSettings(context_window=args.context_window)
    with tempfile.TemporaryDirectory() as data_dir:
        env = await start_quiet_dev_server()
        try:
            farline = await farline_run(env, Path(data_dir) / "farline", turns, compaction)
            naive, naive_seconds = await naive_run(env, Path(data_dir) / "naive", naive_turns)
        finally:
            await env.shutdown()

    stats = farline.stats
    farline_windows = windows(stats, turns, width)
    emit(
        run="farline",
        turns=turns,
        window=width,
        compaction={
            "context_window": compaction.context_window,
            "compact_at": compaction.compact_at,
            "agent_default_context_window": TRACKER_AGENT.compaction.context_window,
        },
        continue_as_new="when Temporal suggests it",
        seconds=round(farline.seconds, 1),
        ms_per_turn=round(farline.seconds * 1000 / (turns + 1), 2),
        continued_as_new=farline.status.continued_as_new,
        compactions=farline.status.compactions,
        incarnations=stats.incarnations,
        history_events=stats.events,
        history_bytes_total=stats.total_bytes,
        largest_payload_bytes=stats.largest_payload,
        largest_event_bytes=stats.largest_event,
        payloads_over_256kib=stats.payloads_over_threshold,
        external_payloads=farline.external_payloads,
        **extremes(stats, turns),
    )
    emit_trend("farline", farline_windows)

    naive_width = min(width, naive_turns)
    naive_windows = windows(naive, naive_turns, naive_width)
    emit(
        run="naive",
        turns=naive_turns,
        window=naive_width,
        seconds=round(naive_seconds, 1),
        ms_per_turn=round(naive_seconds * 1000 / (naive_turns + 1), 2),
        history_events=naive.events,
        history_bytes_total=naive.total_bytes,
        history_share_of_50mb_limit=round(naive.total_bytes / TEMPORAL_HISTORY_LIMIT, 3),
        largest_payload_bytes=naive.largest_payload,
        largest_payload_share_of_2mb_limit=round(naive.largest_payload / TEMPORAL_PAYLOAD_LIMIT, 3),
        payloads_over_256kib=naive.payloads_over_threshold,
        **extremes(naive, naive_turns),
    )
    emit_trend("naive", naive_windows)

    # the same turns of both runs: the naive loop's last window, and everything it ran
    same = windows(stats, naive_turns, naive_width)["last"]
    emit(
        metric="farline_over_naive_bytes_per_turn",
        from_turn=same["from_turn"],
        to_turn=same["to_turn"],
        ratio=ratio(same["bytes_per_turn"], naive_windows["last"]["bytes_per_turn"]),
    )
    emit(
        metric="farline_over_naive_ms_per_turn",
        from_turn=same["from_turn"],
        to_turn=same["to_turn"],
        ratio=ratio(same["ms_per_turn"], naive_windows["last"]["ms_per_turn"]),
    )
    emit(
        metric="farline_over_naive_history_bytes",
        from_turn=1,
        to_turn=naive_turns,
        farline_bytes=sum(stats.turn_bytes[:naive_turns]),
        naive_bytes=sum(naive.turn_bytes[:naive_turns]),
        ratio=ratio(sum(stats.turn_bytes[:naive_turns]), sum(naive.turn_bytes[:naive_turns])),
    )
    emit(
        metric="farline_over_naive_ms_per_turn_all",
        from_turn=1,
        to_turn=naive_turns,
        ratio=ratio(mean(stats.turn_ms[:naive_turns]), mean(naive.turn_ms[:naive_turns])),
    )


if __name__ == "__main__":
    asyncio.run(main())
