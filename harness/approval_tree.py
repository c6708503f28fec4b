"""Approvals across a run's tree of sub-agents: what waits, and where a decision goes."""

from __future__ import annotations

from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError

from harness.approvals import PendingApproval
from harness.subagent_tools import Subagent


async def pending_in_tree(client: Client, workflow_id: str) -> list[tuple[str, PendingApproval]]:
    """(workflow id, approval) for the run and every sub-agent below it that is still running."""
    handle = client.get_workflow_handle(workflow_id)
    found = [
        (workflow_id, approval)
        for approval in await handle.query("pending_approvals", result_type=list[PendingApproval])
    ]
    try:
        agents = await handle.query("agents", result_type=list[Subagent])
    except WorkflowQueryFailedError:
        agents = []  # a run from before sub-agents existed
    for agent in agents:
        if agent.state.finished:
            continue
        try:
            found += await pending_in_tree(client, agent.workflow_id)
        except RPCError:
            continue  # it ended meanwhile
    return found


async def owner_of_call(client: Client, workflow_id: str, call_id: str) -> str | None:
    """The run in the tree under `workflow_id` where `call_id` waits, when exactly one does."""
    owners = {
        owner for owner, approval in await pending_in_tree(client, workflow_id) if approval.call_id == call_id
    }
    return owners.pop() if len(owners) == 1 else None
