"""A run's rollout, rebuilt from Temporal's history (and external storage): every model input
item, every model output item, compactions and continue-as-new, in order, as JSON lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from harness.conversation import ModelRequest, ModelTurn


async def run_ids(client: Client, workflow_id: str) -> list[str]:
    """The runs of a workflow id, oldest first (one per continue-as-new)."""
    runs = [run async for run in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    if not runs:
        raise LookupError(f"no run with workflow id {workflow_id!r}")
    return [run.run_id for run in sorted(runs, key=lambda run: run.start_time)]


async def rollout(client: Client, workflow_id: str) -> AsyncIterator[dict[str, Any]]:
    turn = 0
    converter = client.data_converter
    for run_id in await run_ids(client, workflow_id):
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        scheduled: dict[int, str] = {}
        for event in history.events:
            line = {"run_id": run_id, "event_id": event.event_id}
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attributes = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = attributes.activity_type.name
                if attributes.activity_type.name == "call_model":
                    turn += 1
                    [request] = await converter.decode_wrapper(attributes.input, [ModelRequest])
                    for item in request.items:
                        yield {**line, "turn": turn, "kind": "input", "item": item.model_dump(mode="json")}
                elif attributes.activity_type.name == "compact_context":
                    # what was new since the last model call went to the compaction, not to a model call
                    [compaction] = await converter.decode_wrapper(attributes.input, [dict])
                    for item in compaction.get("items", []):
                        yield {**line, "turn": turn + 1, "kind": "input", "item": item}
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                attributes = event.activity_task_completed_event_attributes
                name = scheduled.get(attributes.scheduled_event_id)
                if name == "call_model":
                    [model_turn] = await converter.decode_wrapper(attributes.result, [ModelTurn])
                    for item in model_turn.items:
                        yield {**line, "turn": turn, "kind": "output", "item": item.model_dump(mode="json")}
                    yield {**line, "turn": turn, "kind": "usage", "usage": model_turn.usage.model_dump()}
                elif name == "compact_context":
                    [result] = await converter.decode_wrapper(attributes.result, [dict])
                    yield {**line, "turn": turn, "kind": "compaction", **_compaction_fields(result)}
                elif name == "resolve_agent" and turn > 0:
                    # an agent resolved mid-run takes the conversation over
                    [spec] = await converter.decode_wrapper(attributes.result, [dict])
                    yield {**line, "turn": turn, "kind": "handoff", "to": spec.get("name")}
            elif event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
                child = event.start_child_workflow_execution_initiated_event_attributes.workflow_id
                yield {**line, "turn": turn, "kind": "subagent_started", "workflow_id": child}
            elif event.event_type in CHILD_ENDINGS:
                ending = CHILD_ENDINGS[event.event_type]
                child = getattr(event, ending[0]).workflow_execution.workflow_id
                yield {
                    **line,
                    "turn": turn,
                    "kind": "subagent_ended",
                    "workflow_id": child,
                    "outcome": ending[1],
                }
            elif _continued(event):
                new_run = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                yield {**line, "turn": turn, "kind": "continued_as_new", "new_run_id": new_run}


# how a sub-agent's child workflow ended: the event's attributes field, and the outcome shown
CHILD_ENDINGS = {
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED: (
        "child_workflow_execution_completed_event_attributes",
        "completed",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED: (
        "child_workflow_execution_failed_event_attributes",
        "failed",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED: (
        "child_workflow_execution_canceled_event_attributes",
        "closed",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED: (
        "child_workflow_execution_terminated_event_attributes",
        "terminated",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT: (
        "child_workflow_execution_timed_out_event_attributes",
        "timed out",
    ),
}


def _continued(event: HistoryEvent) -> bool:
    return event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW


def _compaction_fields(result: dict[str, Any]) -> dict[str, Any]:
    names = ("tokens_before", "tokens_after", "items", "dropped_items", "summary")
    return {name: result.get(name) for name in names}
