"""Sub-agents as child workflows: forks, results handed back, failures, limits, close, approvals."""

from __future__ import annotations

import asyncio
import json
import sys

from temporalio.client import Client, WorkflowExecutionStatus

from harness.agents import AgentRegistry
from harness.runs import start_run
from harness.scripted_model import Script
from harness.snapshot_store import open_snapshot_store
from harness.specs import AgentSpec, RunRequest, RunState, RunStatus
from harness.subagent_tools import Subagent, SubagentState
from tests.script_helpers import call, exec_call
from tests.test_cli import run_command

SUPERVISOR = "You are the SUPERVISOR."
REGISTRY = AgentRegistry(
    [
        AgentSpec(
            name="supervisor",
            instructions=SUPERVISOR,
            subagents=["helper", "failing", "sleeper", "approver"],
        ),
        AgentSpec(name="helper", instructions="You are a HELPER."),
        AgentSpec(name="failing", instructions="You are FAILING.", tools=["no_such_tool"]),
        AgentSpec(name="sleeper", instructions="You are a SLEEPER.", subagents=["sleeper"]),
        AgentSpec(name="approver", instructions="You are an APPROVER.", tools=["update_status"]),
    ]
)


def routed(supervisor: list[dict], **agents: list[dict]) -> Script:
    return Script.model_validate({"turns": supervisor, "by_instructions": agents})


async def agents_of(client: Client, workflow_id: str) -> list[Subagent]:
    return await client.get_workflow_handle(workflow_id).query("agents", result_type=list[Subagent])


async def test_three_forked_children_run_and_hand_their_results_back(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    spawn = {"name": "spawn_agent", "arguments": {"agent": "helper", "task": "copy the seed"}}
    server = scripted_model(
        routed(
            [
                exec_call("echo seed-content > seed.txt"),
                {"tool_calls": [spawn, spawn, spawn]},
                call("wait_agents"),
                exec_call(
                    "cat handoffs/a1/output/copy.txt handoffs/a3/output/copy.txt handoffs/a2/RESULT.md; "
                    "ls handoffs"
                ),
                {"message": "{last_tool_output}"},
            ],
            HELPER=[
                exec_call(
                    "mkdir -p output && cat seed.txt > output/copy.txt && echo child-done >> output/copy.txt"
                ),
                {"message": "helper finished"},
            ],
        )
    )
    config = make_config(server)
    async with running_worker(config, registry=REGISTRY):
        handle = await start_run(client, config, RunRequest(agent="supervisor", task="fan out"))
        result = await handle.result()
        children = await agents_of(client, handle.id)
        parent_status = await handle.query("status", result_type=RunStatus)
        child_status = await client.get_workflow_handle(f"{handle.id}.a1").query(
            "status", result_type=RunStatus
        )
    assert result.state is RunState.COMPLETED
    output = result.final_message or ""
    assert output.count("seed-content\nchild-done") == 2 and "helper finished" in output
    assert "a1\na2\na3" in output
    assert [child.state for child in children] == [SubagentState.COMPLETED] * 3
    assert all(child.delivered_to == f"handoffs/{child.agent_id}" for child in children)
    # the fork is the parent's snapshot itself: content-addressed, nothing copied
    store = open_snapshot_store(config)
    parent_snapshots = [record.snapshot_id for record in store.snapshots(handle.id)]
    assert child_status.workspace_seed in parent_snapshots
    assert parent_status.state is RunState.COMPLETED
    # what the supervisor was told when it waited
    waited = json.loads(server.requests_for(SUPERVISOR)[3].body["input"][-1]["output"])
    assert waited["all_finished"] is True
    assert [agent["status"] for agent in waited["agents"]] == ["completed"] * 3


async def test_a_failing_child_is_reported_to_its_parent(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        routed(
            [
                call("spawn_agent", agent="failing", task="fail", workspace="empty"),
                call("spawn_agent", agent="nobody", task="x"),
                call("wait_agents", agent_ids=["a1"]),
                {"message": "{last_tool_output}"},
            ]
        )
    )
    config = make_config(server)
    async with running_worker(config, registry=REGISTRY):
        handle = await start_run(client, config, RunRequest(agent="supervisor", task="delegate"))
        result = await handle.result()
    report = json.loads(result.final_message or "{}")["agents"][0]
    assert report["status"] == "failed"
    assert "no_such_tool" in report["error"] and "does not have" in report["error"]
    refused = server.requests_for(SUPERVISOR)[2].body["input"][-1]["output"]
    assert "you may not start agent 'nobody'" in refused and "helper, failing" in refused


async def test_closing_a_child_closes_its_descendants_and_limits_hold(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    sleeper = [
        call("spawn_agent", agent="sleeper", task="go deeper"),
        exec_call("sleep 120", yield_time_ms=30000),
    ]
    server = scripted_model(
        routed(
            [
                call("spawn_agent", agent="sleeper", task="sleep"),
                call("spawn_agent", agent="helper", task="one too many"),
                call("wait_agents", timeout_s=4),
                call("close_agent", agent_id="a1"),
                {"message": "{last_tool_output}"},
            ],
            SLEEPER=sleeper,
        )
    )
    config = make_config(server)
    request = RunRequest(agent="supervisor", task="t", subagent_limits={"max_live": 1, "max_depth": 2})
    async with running_worker(config, registry=REGISTRY):
        handle = await start_run(client, config, request)
        result = await handle.result()
        child = await client.get_workflow_handle(f"{handle.id}.a1").describe()
        # the grandchild is asked to cancel when its parent closes: it snapshots and goes
        for _ in range(200):
            grandchild = await client.get_workflow_handle(f"{handle.id}.a1.a1").describe()
            if grandchild.status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.1)
        deepest_requests = [r for r in server.requests if "SLEEPER" in str(r.body.get("instructions"))]
    assert json.loads(result.final_message or "{}")["status"] == "closed"
    assert child.status == WorkflowExecutionStatus.CANCELED
    assert grandchild.status == WorkflowExecutionStatus.CANCELED
    refused = server.requests_for(SUPERVISOR)[2].body["input"][-1]["output"]
    assert "the most this run allows (subagent_limits.max_live)" in refused
    # at the deepest level the sub-agent tools are not offered: its spawn was an unknown tool
    deepest_outputs = [str(r.body["input"]) for r in deepest_requests]
    assert any("unknown tool 'spawn_agent'" in text for text in deepest_outputs)


async def test_a_child_waiting_for_approval_is_approved_through_the_parents_tree(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        routed(
            [
                call("spawn_agent", agent="approver", task="close task 1", workspace="empty"),
                call("wait_agents", timeout_s=120),
                {"message": "{last_tool_output}"},
            ],
            APPROVER=[call("update_status", task_id=1, status="DONE"), {"message": "closed it"}],
        )
    )
    config = make_config(server)
    env = {"FARLINE_TEMPORAL_ADDRESS": config.temporal_address}
    async with running_worker(config, registry=REGISTRY):
        handle = await start_run(client, config, RunRequest(agent="supervisor", task="delegate"))
        for _ in range(200):
            children = await agents_of(client, handle.id)
            if children and children[0].state is SubagentState.WAITING_FOR_APPROVAL:
                break
            await asyncio.sleep(0.1)
        assert children[0].state is SubagentState.WAITING_FOR_APPROVAL
        assert "update_status" in (children[0].waiting_on or "")
        code, listing = await run_command(
            sys.executable, "-m", "harness.cli", "approvals", handle.id, env=env
        )
        assert code == 0, listing
        assert (
            f"[sub-agent {handle.id}.a1]" in listing and f"farline approve {handle.id}.a1 call_0_0" in listing
        )
        # approved by naming the parent: the CLI finds the call in its tree
        code, answer = await run_command(
            sys.executable, "-m", "harness.cli", "approve", handle.id, "call_0_0", env=env
        )
        assert code == 0, answer
        assert f"waits in sub-agent {handle.id}.a1" in answer
        result = await handle.result()
    report = json.loads(result.final_message or "{}")["agents"][0]
    assert report["status"] == "completed" and report["final_message"] == "closed it"


HANDOFF_REGISTRY = AgentRegistry(
    [
        AgentSpec(name="editor", instructions="You are the EDITOR.", handoffs=["producer"]),
        AgentSpec(
            name="producer", instructions="You are the PRODUCER.", tools=["exec_command", "list_tasks"]
        ),
    ]
)


async def test_a_handoff_gives_the_conversation_and_the_sandbox_to_another_agent(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    unused = {"message": "not reached"}
    server = scripted_model(
        Script.model_validate(
            {
                "turns": [],
                "by_instructions": {
                    "EDITOR": [
                        exec_call("echo refined-draft > doc.md"),
                        call("handoff", agent="nobody"),
                        call("handoff", agent="producer", message="make the assets"),
                    ],
                    "PRODUCER": [
                        unused,
                        unused,
                        unused,
                        exec_call("cat doc.md && echo asset > asset.txt"),
                        {"message": "produced from {last_tool_output}"},
                    ],
                },
            }
        )
    )
    config = make_config(server)
    async with running_worker(config, registry=HANDOFF_REGISTRY):
        handle = await start_run(client, config, RunRequest(agent="editor", task="refine, then hand over"))
        result = await handle.result()
        status = await handle.query("status", result_type=RunStatus)
        code, rollout_text = await run_command(
            sys.executable,
            "-m",
            "harness.cli",
            "rollout",
            handle.id,
            env={"FARLINE_TEMPORAL_ADDRESS": config.temporal_address},
        )
    assert result.state is RunState.COMPLETED and result.agent == "producer"
    assert (result.final_message or "").startswith(
        "produced from"
    ) and "refined-draft" in result.final_message
    assert status.agent == "producer" and status.rehydrations == 0
    editor_calls = server.requests_for("EDITOR")
    assert "you may not hand off to 'nobody'; you may hand off to: producer" in str(
        editor_calls[2].body["input"]
    )
    first_producer_call = server.requests_for("PRODUCER")[0].body
    tool_names = {tool["name"] for tool in first_producer_call["tools"]}
    assert tool_names == {"exec_command", "list_tasks"}
    assert "[farline] editor handed this conversation to you (producer): make the assets" in str(
        first_producer_call["input"]
    )
    assert code == 0, rollout_text
    lines = [json.loads(line) for line in rollout_text.splitlines()]
    assert [line["to"] for line in lines if line["kind"] == "handoff"] == ["producer"]
