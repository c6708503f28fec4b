"""`farline follow`: a run's story from its history, live, through approvals, worker restarts and
continue-as-new (the command runs as its own process, as people run it)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from harness.approvals import ApprovalDecision, PendingApproval
from harness.config import FarlineConfig
from harness.follow_view import RunStory
from harness.runs import start_run
from harness.specs import AgentSpec, RunRequest, RunResult, RunState, RunStatus
from sandbox_providers.base import SandboxRef
from sandbox_providers.local import LocalProvider
from tests.script_helpers import call, exec_call, script
from tests.worker_processes import start_worker_process, wait_for

REPO = Path(__file__).resolve().parent.parent
HISTORIES = Path(__file__).parent / "histories"
NOTES_PATCH = "*** Begin Patch\n*** Add File: notes.md\n+first note\n+second note\n*** End Patch\n"


class Follower:
    """`farline follow ID` in a child process, its output read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    @classmethod
    async def start(cls, config: FarlineConfig, workflow_id: str) -> Follower:
        env = {
            **os.environ,
            "FARLINE_TEMPORAL_ADDRESS": config.temporal_address,
            "FARLINE_DATA_DIR": str(config.data_dir),
            "FARLINE_LOG_FORMAT": "json",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "harness.cli",
            "follow",
            workflow_id,
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(process)

    async def until(self, text: str, timeout: float = 30) -> str:
        """Read lines until one holds `text`; that line."""
        async with asyncio.timeout(timeout):
            while True:
                line = await self._line()
                if line is None:
                    raise AssertionError(f"follow ended before {text!r}:\n{self.output}")
                if text in line:
                    return line

    async def end(self, timeout: float = 60) -> tuple[int, str]:
        async with asyncio.timeout(timeout):
            while await self._line() is not None:
                pass
            return await self.process.wait(), self.output

    async def _line(self) -> str | None:
        assert self.process.stdout is not None
        raw = await self.process.stdout.readline()
        if not raw:
            return None
        self.lines.append(raw.decode().rstrip("\n"))
        return self.lines[-1]

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


async def follow_to_end(config: FarlineConfig, workflow_id: str) -> tuple[int, str]:
    follower = await Follower.start(config, workflow_id)
    try:
        return await follower.end()
    finally:
        follower.stop()


def in_order(output: str, *parts: str) -> None:
    """Each part is in `output`, after the one before."""
    position = 0
    for part in parts:
        found = output.find(part, position)
        assert found >= 0, f"{part!r} missing (after position {position}) in:\n{output}"
        position = found + len(part)


async def pending(handle) -> list[PendingApproval]:
    return await handle.query("pending_approvals", result_type=list[PendingApproval])


async def test_follow_on_a_finished_run_prints_its_whole_story(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        script(
            exec_call("echo hello; seq 1 12"),
            call("apply_patch", input=NOTES_PATCH),
            {
                "tool_calls": [
                    {"name": "exec_command", "arguments": {"cmd": "wc -l notes.md"}},
                    {"name": "exec_command", "arguments": {"command": "a malformed call"}},
                ]
            },
            {"message": "all done: notes.md has two notes"},
        )
    )
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="write some notes"))
        result = await handle.result()
    assert result.state is RunState.COMPLETED

    # no worker is needed to tell a finished run's story
    code, output = await follow_to_end(config, handle.id)
    assert code == 0, output
    in_order(
        output,
        f"{handle.id} · agent demo · task: write some notes",
        "turn 1 · model: 1 tool call (",
        " out tokens)",
        "sandbox",
        "created",
        "  exec_command: echo hello; seq 1 12\n  -> exit 0, 13 lines: 12",
        "  snapshot (turn 1): ",
        " files changed, ",
        " uploaded",
        "turn 2 · model: 1 tool call (",
        "  apply_patch: A notes.md\n  -> Success. Updated the following files: A notes.md",
        "  snapshot (turn 2): 1 file changed",
        "turn 3 · model: 2 tool calls (",
        "  exec_command: wc -l notes.md\n  -> exit 0, 1 line: 2 notes.md",
        # a call the workflow refused never reached an activity: its result comes from the next turn
        '  exec_command({"command": "a malformed call"})\n  -> error: invalid arguments for exec_command',
        "turn 4 · model: answered (",
        "sandbox: tear down (end)",
        "completed: all done: notes.md has two notes",
        f"  4 turns · {result.usage.total_tokens:,} tokens ({result.usage.input_tokens:,} in / "
        f"{result.usage.output_tokens:,} out tokens) in 4 model calls",
    )
    assert output.count("turn ") >= 4 and "WAITING" not in output


async def test_follow_shows_an_approval_with_its_command_then_the_end(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        script(call("update_status", task_id=1, status="DONE"), {"message": "{last_tool_output}"})
    )
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="tracker", task="finish task 1"))
        follower = await Follower.start(config, handle.id)
        try:
            line = await follower.until("WAITING FOR APPROVAL")
            [waiting] = await pending(handle)
            assert f"update_status({waiting.arguments})" in line
            assert line.endswith(f"— farline approve {handle.id} {waiting.call_id}")
            # what people type is what the line says
            approve = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "harness.cli",
                "approve",
                handle.id,
                waiting.call_id,
                "--reason",
                "checked",
                cwd=REPO,
                env={**os.environ, "FARLINE_TEMPORAL_ADDRESS": config.temporal_address},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            approved, _ = await approve.communicate()
            assert approve.returncode == 0, approved.decode()
            code, output = await follower.end()
        finally:
            follower.stop()
    assert code == 0, output
    in_order(
        output,
        "turn 1 · model: 1 tool call (",
        '  update_status({"task_id": 1, "status": "DONE"})\n  WAITING FOR APPROVAL: update_status(',
        f"farline decline {handle.id} {waiting.call_id} --reason",
        f"  approved by a person: call {waiting.call_id} (checked)",
        "  -> update_status: ",
        '"status":"DONE"',
        "turn 2 · model: answered (",
        "completed: ",
        "DONE",
    )
    assert output.count("WAITING FOR APPROVAL") == 1


async def test_follow_survives_a_worker_restart(
    client: Client, scripted_model, make_config, tmp_path
) -> None:
    server = scripted_model(
        script(
            exec_call("echo before the restart"),
            call("update_status", task_id=1, status="DONE"),
            exec_call("echo after the restart"),
            {"message": "done after a restart"},
        )
    )
    config = make_config(server)
    workers = [start_worker_process(config, tmp_path / "worker-1.log")]
    follower: Follower | None = None
    try:
        handle = await start_run(client, config, RunRequest(agent="tracker", task="close task 1"))
        follower = await Follower.start(config, handle.id)
        await follower.until("WAITING FOR APPROVAL")
        [waiting] = await pending(handle)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        # the follower notices, says so once, and keeps following the history meanwhile
        await follower.until("worker unavailable, retrying")
        workers.append(start_worker_process(config, tmp_path / "worker-2.log"))
        # queries reach the new worker once Temporal stops waiting for the dead one's sticky queue
        await follower.until("a worker answers again")
        await handle.execute_update("decide", ApprovalDecision(call_id=waiting.call_id), result_type=str)
        code, output = await follower.end()
        result = await handle.result()
    finally:
        if follower is not None:
            follower.stop()
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(10)
    assert code == 0, output
    assert result.state is RunState.COMPLETED
    in_order(
        output,
        "  -> exit 0, 1 line: before the restart",
        "WAITING FOR APPROVAL",
        "worker unavailable, retrying",
        "a worker answers again",
        f"approved by a person: call {waiting.call_id}",
        "  exec_command: echo after the restart\n  -> exit 0, 1 line: after the restart",
        "completed: done after a restart",
    )
    assert output.count("worker unavailable") == 1


async def test_follow_goes_on_into_the_history_after_continue_as_new(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    turns = 35
    server = scripted_model(script(*[call("list_tasks") for _ in range(turns)], {"message": "listed"}))
    config = make_config(server)
    request = RunRequest(
        agent="tracker", task="list the tasks, often", max_turns=turns + 1, continue_as_new_after_events=200
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        # followed live from the first history into the next
        code, output = await follow_to_end(config, handle.id)
        result = await client.get_workflow_handle(handle.id, result_type=RunResult).result()
    assert code == 0, output
    assert result.state is RunState.COMPLETED
    in_order(output, "turn 1 · model: 1 tool call", "continued as new after turn ", "completed: listed")
    told = [line.split(" · ")[0] for line in output.splitlines() if line.startswith("turn ")]
    assert told == [f"turn {number}" for number in range(1, turns + 2)]
    assert output.count("  list_tasks({})\n  -> ") == turns


async def test_follow_on_a_failed_run_says_why_and_exits_non_zero(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    config = make_config(scripted_model(script({"message": "never asked"})))
    broken = AgentSpec(name="broken", tools=["exec_command", "no_such_tool"])
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent_spec=broken, task="try"))
        code, output = await follow_to_end(config, handle.id)
    assert code == 1, output
    in_order(
        output,
        f"{handle.id} · agent broken · task: try",
        "failed: agent 'broken' lists tools this worker does not have: no_such_tool",
        "  after 0 turns · 0 tokens",
    )


async def test_a_lost_sandbox_and_its_rehydration_are_in_the_story(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        script(
            exec_call("echo kept > kept.txt"),
            exec_call("sleep 30", yield_time_ms=20000),
            exec_call("cat kept.txt"),
            {"message": "still here"},
        )
    )
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="keep a file"))

        async def sleeping() -> bool:
            status = await handle.query("status", result_type=RunStatus)
            return status.turn == 2 and bool(list(config.sandboxes_dir.glob("*/procs/t2-*")))

        await wait_for(sleeping)
        status = await handle.query("status", result_type=RunStatus)
        assert status.sandbox_id is not None and status.snapshot_id is not None
        # the sandbox dies under the running command, from outside the run
        await LocalProvider(config.sandboxes_dir).destroy(
            SandboxRef(provider="local", sandbox_id=status.sandbox_id)
        )
        result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.state is RunState.COMPLETED

    code, output = await follow_to_end(config, handle.id)
    assert code == 0, output
    in_order(
        output,
        "  snapshot (turn 1): 1 file changed",
        "  exec_command: sleep 30\n  -> failed: its sandbox is gone",
        "  sandbox lost: replaced by a new sandbox, ",
        f"  rehydrated from snapshot {status.snapshot_id[:12]} (1 file, ",
        "  exec_command: cat kept.txt\n  -> exit 0, 1 line: kept",
        "completed: still here",
    )


async def test_every_recorded_history_tells_its_story() -> None:
    """Histories of every earlier version read (no worker, no server: just their events)."""
    told: dict[str, list[str]] = {}
    for path in sorted(HISTORIES.glob("*.json")):
        history = WorkflowHistory.from_json("recorded", json.loads(path.read_text()))
        story = RunStory(pydantic_data_converter, "recorded")
        told[path.stem] = [line.text for event in history.events for line in await story.read(event)]
        assert any(line.startswith("turn 1 · model: ") for line in told[path.stem]), path.name
        assert story.ending is not None or story.next_run_id is not None, path.name
    e2e = told["agent_run_e2e"]
    assert "  exec_command: python3 -c 'print(6 * 7)'" in e2e and "  -> exit 0, 1 line: 42" in e2e
    assert e2e[-1].endswith("in 3 model calls")
    long_run = "\n".join(told["agent_run_v6_long_run_part1"])
    assert "context compacted: " in long_run and "continued as new after turn 13" in long_run
    memory = "\n".join(told["agent_run_v7_workspace_and_memory"])
    assert "workspace restored from snapshot " in memory and "memory: lessons for keeper" in memory
