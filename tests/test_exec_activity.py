"""The exec activities against a real bubblewrap sandbox, without a workflow."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.exec_session import ExecActivities
from activities.sandbox_io import ExecRequest, WriteStdinRequest
from sandbox_providers.base import ProcessSpec, SandboxConfig
from sandbox_providers.local import MAX_LIVE_PROCESSES, LocalProvider


async def test_the_65th_process_is_a_tool_error_not_a_failure(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path)
    ref = await provider.create("limits", SandboxConfig())
    activities = ExecActivities({"local": provider})
    try:
        for n in range(MAX_LIVE_PROCESSES):
            await provider.start_process(ref, ProcessSpec(process_id=f"sleeper-{n}", argv=["sleep", "30"]))
        request = ExecRequest(
            sandbox=ref, process_id="one-too-many", cmd="echo hi", yield_time_ms=500, max_output_bytes=4000
        )
        refused = await ActivityEnvironment().run(activities.exec_command, request)
        assert refused.error is not None and "64 processes" in refused.error
        assert refused.for_model(None).startswith("error:")

        await provider.kill_process(ref, "sleeper-0")
        ran = await ActivityEnvironment().run(activities.exec_command, request)
        assert ran.error is None and ran.exit_code == 0 and ran.output.strip() == "hi"
    finally:
        await provider.destroy(ref)


async def test_output_is_returned_once_across_calls_and_the_yield_caps_the_wall_time(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path)
    ref = await provider.create("stream", SandboxConfig())
    activities = ExecActivities({"local": provider})
    try:
        start = ExecRequest(
            sandbox=ref,
            process_id="stream",
            cmd="i=0; while true; do echo line $i; i=$((i+1)); sleep 0.01; done",
            yield_time_ms=400,
            max_output_bytes=1_000_000,
        )
        first = await ActivityEnvironment().run(activities.exec_command, start)
        assert first.running and first.wall_time_s < 1.5
        poll = WriteStdinRequest(
            sandbox=ref,
            process_id="stream",
            offset=first.next_offset,
            yield_time_ms=400,
            max_output_bytes=1_000_000,
        )
        second = await ActivityEnvironment().run(activities.write_stdin, poll)
        assert second.running and second.wall_time_s < 1.5
        lines = (first.output + second.output).split()
        numbers = [int(word) for word in lines if word.isdigit()]
        # every line exactly once, in order, across the two calls
        assert numbers == list(range(len(numbers))) and len(numbers) > 10
    finally:
        await provider.destroy(ref)
