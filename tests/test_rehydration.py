"""The sandbox is disposable: killed, paused or idle, the run goes on with its workspace."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from harness.approvals import ApprovalDecision, PendingApproval
from harness.config import FarlineConfig
from harness.runs import start_run
from harness.snapshot_store import open_snapshot_store
from harness.specs import RunRequest, RunResult, RunState, RunStatus, SandboxSettings, UserSandbox
from sandbox_providers.base import SandboxConfig, SandboxRef
from sandbox_providers.local import LocalProvider
from tests.script_helpers import call, exec_call, script, tool_outputs, user_messages
from tests.worker_processes import wait_for

ADD_B = "*** Begin Patch\n*** Add File: src/b.txt\n+two\n*** End Patch\n"


def workspace_script(slow_cmd: str) -> list[dict]:
    return [
        exec_call("mkdir -p src empty && printf 'one\\n' > src/a.txt && chmod +x src/a.txt"),
        call("apply_patch", input=ADD_B),
        exec_call(slow_cmd, yield_time_ms=20000),
        exec_call("cat src/a.txt src/b.txt > c.txt && cat c.txt"),
        {"message": "{last_tool_output}"},
    ]


async def status_of(handle: WorkflowHandle) -> RunStatus:
    return await handle.query("status", result_type=RunStatus)


def final_tree(config: FarlineConfig, run_id: str) -> set[tuple]:
    """The run's newest snapshot as (path, kind, mode, content hashes, target), mtimes aside."""
    store = open_snapshot_store(config)
    newest = store.snapshots(run_id)[-1]
    tree = store.get_tree(newest.snapshot_id)
    return {(e.path, e.kind, e.mode, tuple(e.chunks), e.target) for e in tree.entries}


async def kill_sandbox(config: FarlineConfig, sandbox_id: str) -> None:
    """Its processes killed and its workspace deleted, from outside the run."""
    await LocalProvider(config.sandboxes_dir).destroy(SandboxRef(provider="local", sandbox_id=sandbox_id))


async def test_a_sandbox_killed_mid_command_is_rehydrated_and_the_workspace_kept(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    control_server = scripted_model(script(*workspace_script("sleep 1; echo slept")))
    control_config = make_config(control_server)
    async with running_worker(control_config):
        control = await start_run(client, control_config, RunRequest(agent="demo", task="build"))
        control_result = await control.result()
    assert control_result.state is RunState.COMPLETED

    server = scripted_model(script(*workspace_script("sleep 30; echo slept")))
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="build"))

        async def sleeping() -> bool:
            return (await status_of(handle)).turn == 3 and bool(
                list(config.sandboxes_dir.glob("*/procs/t3-*"))
            )

        await wait_for(sleeping)
        first_sandbox = (await status_of(handle)).sandbox_id
        assert first_sandbox is not None
        await kill_sandbox(config, first_sandbox)
        result: RunResult = await asyncio.wait_for(handle.result(), timeout=60)
        status = await status_of(handle)

    assert result.state is RunState.COMPLETED
    assert result.final_message.strip().endswith("one\ntwo")
    outputs = tool_outputs(server)
    assert "sandbox was lost and replaced" in outputs[2] and "did not complete" in outputs[2]
    assert status.rehydrations == 1
    # the final workspace equals that of the uninterrupted run
    assert final_tree(config, handle.id) == final_tree(control_config, control.id)
    assert ("src/a.txt", "file", 0o755) in {entry[:3] for entry in final_tree(config, handle.id)}
    assert not any(config.sandboxes_dir.iterdir())


async def test_a_sandbox_lost_between_turns_is_announced_to_the_model(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    # turn 2 writes a file, then waits for a person; meanwhile the sandbox dies
    server = scripted_model(
        script(
            exec_call("echo kept > kept.txt"),
            {
                "tool_calls": [
                    {"name": "exec_command", "arguments": {"cmd": "echo lost > lost.txt"}},
                    {"name": "update_status", "arguments": {"task_id": 1, "status": "DONE"}},
                ]
            },
            exec_call("cat *.txt"),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="tracker", task="keep"))
        await wait_for(lambda: _waiting_for_approval(handle))
        sandbox_id = (await status_of(handle)).sandbox_id
        assert sandbox_id is not None
        await kill_sandbox(config, sandbox_id)
        pending = await handle.query("pending_approvals", result_type=list[PendingApproval])
        await handle.signal("approve", ApprovalDecision(call_id=pending[0].call_id))
        result = await asyncio.wait_for(handle.result(), timeout=60)

    assert result.state is RunState.COMPLETED
    # the workspace is that of the snapshot after turn 1: turn 2's file is gone, and the model knows
    assert "kept" in result.final_message and "lost" not in result.final_message
    notices = [text for text in user_messages(server) if text.startswith("[farline] The sandbox was lost")]
    assert len(notices) == 1 and "as of the last snapshot (turn 1)" in notices[0]


async def _waiting_for_approval(handle: WorkflowHandle) -> bool:
    return (await status_of(handle)).state is RunState.WAITING_FOR_APPROVAL


async def test_pause_releases_the_sandbox_and_resume_restores_the_workspace(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        script(
            exec_call("echo 'made before the pause' > kept.txt; sleep 1"),
            exec_call("cat kept.txt"),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="pause me"))
        await wait_for(lambda: _has_sandbox(config))
        await handle.signal("pause")

        async def released() -> bool:
            status = await status_of(handle)
            return status.state is RunState.PAUSED and status.sandbox_id is None

        await wait_for(released)
        # a paused run holds no sandbox
        assert not any(config.sandboxes_dir.iterdir())
        paused = await status_of(handle)
        assert paused.snapshots == 1 and paused.turn == 1
        await asyncio.sleep(0.5)
        assert (await status_of(handle)).state is RunState.PAUSED
        await handle.signal("resume")
        result = await asyncio.wait_for(handle.result(), timeout=60)
        status = await status_of(handle)

    assert result.state is RunState.COMPLETED
    assert "made before the pause" in result.final_message
    # released and brought back on purpose: not a rehydration after a loss
    assert status.rehydrations == 0


async def test_an_idle_sandbox_is_torn_down_and_rehydrated_on_the_next_command(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        script(
            exec_call("echo idle > kept.txt"),
            # waits for a person, long enough for the idle timer
            call("update_status", task_id=1, status="DONE"),
            exec_call("cat kept.txt"),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server)
    request = RunRequest(
        agent="tracker",
        task="idle",
        sandbox=SandboxSettings(idle_timeout_s=0.5),
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)

        async def released() -> bool:
            return (await status_of(handle)).sandbox_id is None

        await wait_for(lambda: _waiting_for_approval(handle))
        await wait_for(released, timeout=10)
        assert not any(config.sandboxes_dir.iterdir())
        pending = await handle.query("pending_approvals", result_type=list[PendingApproval])
        await handle.signal("approve", ApprovalDecision(call_id=pending[0].call_id))
        result = await asyncio.wait_for(handle.result(), timeout=60)

    assert result.state is RunState.COMPLETED
    assert "idle" in result.final_message


async def _has_sandbox(config: FarlineConfig) -> bool:
    return config.sandboxes_dir.is_dir() and any(Path(config.sandboxes_dir).iterdir())


async def test_a_user_owned_sandbox_is_used_and_never_torn_down(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(script(exec_call("cat mine.txt && echo added > added.txt"), {"message": "ok"}))
    config = make_config(server)
    provider = LocalProvider(config.sandboxes_dir)
    mine = await provider.create("users-own", SandboxConfig())
    await provider.write_file(mine, "mine.txt", b"the user's file\n")
    request = RunRequest(
        agent="demo",
        task="use mine",
        user_sandbox=UserSandbox(sandbox_id="users-own", task_queue=config.local_sandbox_task_queue),
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        result = await asyncio.wait_for(handle.result(), timeout=60)

    assert result.state is RunState.COMPLETED
    assert "the user's file" in tool_outputs(server)[0]
    # still there, with the run's work in it; and snapshotted like any other
    assert await provider.read_file(mine, "added.txt") == b"added\n"
    assert {path for path, *_ in final_tree(config, handle.id)} == {"mine.txt", "added.txt"}
    await provider.destroy(mine)
