"""Whether this worker's namespace has Farline's search attributes (a local activity, so the
answer is recorded in the run's history and replays the same on any worker)."""

from __future__ import annotations

from temporalio import activity

from harness.search_attributes import search_attributes_ready


@activity.defn(name="search_attributes_ready")
async def search_attributes_ready_activity(task_queue: str) -> bool:
    return search_attributes_ready(task_queue)
