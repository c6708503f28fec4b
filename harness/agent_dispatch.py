"""Agents coordinating through the application: assigning a task to a person who is an agent starts
that agent's run, on the assigning run's workspace.

The application (here the task tracker) calls `assign` from a function tool,
on the trusted side. The new run starts from the assigning run's newest
snapshot (the workspace as of its last finished turn), and its workflow id is
derived from the assigning call, so a retried tool call does not start a
second run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

import structlog
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from harness.config import FarlineConfig
from harness.function_tools import ToolContext
from harness.runs import start_run
from harness.snapshot_store import open_snapshot_store
from harness.snapshot_stores import SnapshotStores
from harness.specs import RunRequest, RunStatus

log = structlog.get_logger(__name__)


class AgentDispatch:
    def __init__(self, client: Client, config: FarlineConfig, agents_for_people: dict[str, str]) -> None:
        self.client = client
        self.config = config
        # a person's name in the application -> the registered agent that works as them
        self.agents_for_people = agents_for_people
        self.stores = SnapshotStores(config, open_snapshot_store(config))

    async def assign(self, person: str, task: str, task_key: str, context: ToolContext) -> str | None:
        """Start `person`'s agent on `task` (None when the person is not an agent); its workflow id."""
        agent = self.agents_for_people.get(person)
        if agent is None:
            return None
        # the new run keeps its snapshots where the assigning run keeps its own
        handle = self.client.get_workflow_handle(context.workflow_id)
        status = await handle.query("status", result_type=RunStatus)
        store = await asyncio.to_thread(self.stores.get, status.snapshot_store)
        snapshots = await asyncio.to_thread(store.snapshots, context.workflow_id)
        start_from = snapshots[-1].snapshot_id if snapshots else None
        origin = hashlib.sha256(f"{context.workflow_id}/{context.call_id}".encode()).hexdigest()[:10]
        workflow_id = f"{agent}-{task_key}-{origin}"
        request = RunRequest(
            agent=agent,
            task=f"{task}\n\n(Assigned to you, {person}, by run {context.workflow_id}; your workspace starts "
            "as theirs was after their last finished turn.)",
            start_from=start_from,
            snapshot_store=status.snapshot_store,
        )
        # the same assignment, retried, finds its run started
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await start_run(self.client, self.config, request, workflow_id)
        log.info("agent.dispatched", agent=agent, workflow_id=workflow_id, by=context.workflow_id)
        return workflow_id
