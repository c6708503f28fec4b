"""Application function tools and approval gates, through the real workflow."""

from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError

from harness.approvals import ApprovalDecision, PendingApproval
from harness.function_tools import FunctionToolRegistry, RunContext, function_tool
from harness.runs import start_run
from harness.scripted_model import Script
from harness.specs import AgentSpec, RunRequest, RunState, RunStatus
from tests.worker_processes import run_across_a_worker_kill, wait_for


def script(*turns: dict) -> Script:
    return Script.model_validate({"turns": list(turns)})


def call(name: str, **arguments: object) -> dict:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def tool_outputs(server) -> list[str]:
    items = server.requests[-1].body["input"]
    return [item["output"] for item in items if item.get("type") == "function_call_output"]


def last_tool_output(server) -> str:
    return tool_outputs(server)[-1]


async def pending(handle: WorkflowHandle) -> list[PendingApproval]:
    return await handle.query("pending_approvals", result_type=list[PendingApproval])


async def wait_for_pending(handle: WorkflowHandle) -> PendingApproval:
    async def some() -> bool:
        return bool(await pending(handle))

    await wait_for(some)
    return (await pending(handle))[0]


def task_status(config, task_id: int) -> str:
    with sqlite3.connect(config.data_dir / "task_tracker.sqlite") as db:
        return db.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchone()[0]


async def test_marking_a_task_done_waits_for_approval(
    client: Client, scripted_model, make_config, running_worker
):
    server = scripted_model(
        script(call("update_status", task_id=1, status="DONE"), {"message": "{last_tool_output}"})
    )
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="tracker", task="finish task 1"))
        waiting = await wait_for_pending(handle)
        status = await handle.query("status", result_type=RunStatus)
        assert waiting.tool == "update_status" and '"DONE"' in waiting.arguments
        assert status.state is RunState.WAITING_FOR_APPROVAL and waiting.call_id in status.waiting_on
        # nothing happened yet, and no further model call was made
        assert task_status(config, 1) != "DONE" and len(server.requests) == 1
        await handle.signal("approve", ApprovalDecision(call_id=waiting.call_id))
        result = await handle.result()
    assert result.state is RunState.COMPLETED and "DONE" in result.final_message
    assert task_status(config, 1) == "DONE"
    # people find runs in the web UI by agent and state (search attributes)
    query = f'FarlineAgent = "tracker" AND FarlineState = "completed" AND WorkflowId = "{handle.id}"'
    for _ in range(50):
        found = [execution.id async for execution in client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.1)
    assert found == [handle.id]


async def test_a_declined_call_tells_the_model_why(
    client: Client, scripted_model, make_config, running_worker
):
    server = scripted_model(script(call("update_status", task_id=2, status="DONE"), {"message": "ok"}))
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="tracker", task="finish task 2"))
        waiting = await wait_for_pending(handle)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("decide", ApprovalDecision(call_id="call_nope"), result_type=str)
        assert "no call 'call_nope' is waiting for approval" in str(refused.value.cause)
        answer = await handle.execute_update(
            "decide",
            ApprovalDecision(call_id=waiting.call_id, approved=False, reason="the video is not signed off"),
            result_type=str,
        )
        assert answer == f"call {waiting.call_id} declined"
        with pytest.raises(WorkflowUpdateFailedError) as again:
            await handle.execute_update("decide", ApprovalDecision(call_id=waiting.call_id), result_type=str)
        assert "already declined" in str(again.value.cause)
        await handle.result()
    output = last_tool_output(server)
    assert output.startswith("declined by a person") and "the video is not signed off" in output
    assert task_status(config, 2) != "DONE"


async def test_an_approval_waits_through_a_worker_sigkill(
    client: Client, scripted_model, make_config, tmp_path
):
    server = scripted_model(
        script(call("update_status", task_id=3, status="DONE"), {"message": "{last_tool_output}"})
    )
    config = make_config(server)
    before_the_kill: list[PendingApproval] = []

    async def waiting_for_approval(handle: WorkflowHandle) -> bool:
        before_the_kill[:] = await pending(handle)
        return bool(before_the_kill)

    async def approve_after_restart(handle: WorkflowHandle) -> None:
        waiting = before_the_kill[0]
        assert (await wait_for_pending(handle)).call_id == waiting.call_id
        await handle.signal("approve", ApprovalDecision(call_id=waiting.call_id, reason="looks good"))

    request = RunRequest(agent="tracker", task="finish task 3")
    _, result = await run_across_a_worker_kill(
        client, config, tmp_path, request, waiting_for_approval, approve_after_restart
    )
    assert result.state is RunState.COMPLETED and task_status(config, 3) == "DONE"
    assert server.count_by_turn() == {0: 1, 1: 1}


async def test_app_tool_rules_timeouts_errors_and_secrets(
    client: Client, scripted_model, make_config, running_worker, monkeypatch
):
    monkeypatch.setenv("TRACKER_API_TOKEN", "tok-secret-123")

    @function_tool(needs_approval=True, approval_timeout_s=1)
    def delete_account(user: str) -> str:
        """Delete a user's account."""
        return f"deleted {user}"

    @function_tool(guardrails=[lambda args: "refunds over 100 need a manager" if args.amount > 100 else None])
    def refund(amount: int) -> str:
        """Refund an amount."""
        return f"refunded {amount}"

    @function_tool
    def flaky() -> str:
        """Always fails."""
        raise RuntimeError("the billing service is down")

    @function_tool
    def token_check() -> str:
        """Whether the API token is available to the tool."""
        return "token present" if os.environ.get("TRACKER_API_TOKEN") == "tok-secret-123" else "no token"

    @function_tool(is_enabled=lambda context: context.flags.get("beta") is True)
    def beta_feature() -> str:
        """Only in the beta."""
        return "beta"

    registry = FunctionToolRegistry([delete_account, refund, flaky, token_check, beta_feature])
    agent = AgentSpec(
        name="ops",
        tools=["exec_command", "delete_account", "refund", "flaky", "token_check", "beta_feature"],
    )
    server = scripted_model(
        script(
            call("delete_account", user="bob"),
            call("refund", amount=500),
            call("flaky"),
            call("token_check"),
            call("exec_command", cmd="env | grep -c TRACKER_API_TOKEN || true"),
            call("beta_feature"),
            {"message": "done"},
        )
    )
    config = make_config(server)
    async with running_worker(config, function_tools=registry):
        handle = await start_run(client, config, RunRequest(agent_spec=agent, task="ops work", max_turns=10))
        result = await handle.result()
    assert result.state is RunState.COMPLETED
    outputs = tool_outputs(server)
    timed_out, guarded, failed, secret, sandbox_env, disabled = outputs
    assert timed_out.startswith("declined by a person") and "nobody answered within 1 seconds" in timed_out
    assert guarded == "error: refund was refused: refunds over 100 need a manager"
    assert failed == "error: RuntimeError: the billing service is down"
    assert secret == "token present"
    assert sandbox_env.rstrip().endswith("0")
    assert disabled.startswith("error: unknown tool 'beta_feature'")
    offered = {tool["name"] for tool in server.requests[0].body["tools"]}
    assert "beta_feature" not in offered and {"refund", "token_check"} <= offered
    assert registry.specs_for(["beta_feature"], RunContext(flags={"beta": True}))


async def test_a_turn_asks_for_all_its_approvals_at_once_and_the_plain_temporal_cli_answers(
    client: Client, scripted_model, make_config, running_worker
):
    from harness.devserver import temporal_binary
    from tests.test_cli import run_command

    server = scripted_model(
        script(
            {
                "tool_calls": [
                    {"name": "update_status", "arguments": {"task_id": 4, "status": "DONE"}},
                    {"name": "update_status", "arguments": {"task_id": 5, "status": "DONE"}},
                ]
            },
            {"message": "ok"},
        )
    )
    config = make_config(server)
    address = ["--address", config.temporal_address]
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="tracker", task="close 4 and 5"))

        async def both() -> bool:
            return len(await pending(handle)) == 2

        await wait_for(both)
        first, second = sorted(p.call_id for p in await pending(handle))
        code, out = await run_command(
            temporal_binary(),
            "workflow",
            "signal",
            *address,
            "--workflow-id",
            handle.id,
            "--name",
            "approve",
            "--input",
            f'{{"call_id": "{first}"}}',
        )
        assert code == 0, out
        code, out = await run_command(
            temporal_binary(),
            "workflow",
            "update",
            "execute",
            *address,
            "--workflow-id",
            handle.id,
            "--name",
            "decide",
            "--input",
            f'{{"call_id": "{second}", "approved": false, "reason": "later"}}',
        )
        assert code == 0, out
        result = await handle.result()
    assert result.state is RunState.COMPLETED
    done, declined = tool_outputs(server)
    assert '"DONE"' in done and declined.startswith("declined by a person") and "later" in declined
    assert task_status(config, 4) == "DONE" and task_status(config, 5) != "DONE"
