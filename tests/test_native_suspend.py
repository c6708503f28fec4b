"""A paused run on a provider with a native pause (E2B here, on the fake SDK whose sandboxes are
podman containers) suspends its sandbox instead of tearing it down, and goes on in the same
sandbox without a restore; moved to another provider, the suspended sandbox is torn down."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from harness.runs import start_run
from harness.specs import RunRequest, RunState, SandboxMove, SandboxSettings
from sandbox_providers.e2b import LABEL_SANDBOX, E2BProvider
from sandbox_providers.local import LocalProvider
from tests.fake_clouds.e2b_fake import FakeE2B
from tests.script_helpers import exec_call, script
from tests.test_rehydration import status_of
from tests.worker_processes import wait_for
from workflows.agent_run import AgentRun

if TYPE_CHECKING:
    from tests.podman_service import PodmanService


@pytest.fixture
def cloud(podman_service: PodmanService) -> Iterator[FakeE2B]:
    fake = FakeE2B(
        podman_service.base_url,
        templates={"base": podman_service.image},
        labels={"farline.test": uuid.uuid4().hex[:12]},
    )
    yield fake
    fake.remove_all()


def activities_of(history: object) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events  # type: ignore[attr-defined]
        if event.HasField("activity_task_scheduled_event_attributes")
    ]


async def paused(handle: WorkflowHandle) -> bool:
    return (await status_of(handle)).state is RunState.PAUSED


async def test_a_paused_run_suspends_its_e2b_sandbox_and_goes_on_in_it(
    client: Client, scripted_model, make_config, running_worker, cloud: FakeE2B
) -> None:
    server = scripted_model(
        script(
            exec_call("echo 'made before the pause' > kept.txt; sleep 1"),
            exec_call("cat kept.txt"),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server)
    providers = {"local": LocalProvider.from_config(config), "e2b": E2BProvider(sdk=cloud)}
    request = RunRequest(agent="demo", task="pause me", sandbox=SandboxSettings(provider="e2b"))
    async with running_worker(config, providers=providers):
        handle = await start_run(client, config, request)
        await wait_for(lambda: _has_sandbox(handle))
        await handle.signal("pause")
        await wait_for(lambda: paused(handle))
        status = await status_of(handle)
        sandbox_id = status.sandbox_id
        assert sandbox_id is not None  # kept, not torn down
        [e2b_id] = cloud.sandbox_ids(**{LABEL_SANDBOX: sandbox_id})
        await wait_for(lambda: _async(cloud.is_paused(e2b_id)))
        await handle.signal("resume")
        result = await asyncio.wait_for(handle.result(), timeout=90)
        status = await status_of(handle)
        history = await handle.fetch_history()

    assert result.state is RunState.COMPLETED and "made before the pause" in result.final_message
    assert status.rehydrations == 0
    ran = activities_of(history)
    assert ran.count("suspend_sandbox") == 1 and ran.count("create_sandbox") == 1
    assert "restore_workspace" not in ran  # the same sandbox went on: nothing to restore
    assert ran[-1] == "destroy_sandbox" and not cloud.sandbox_ids(**{LABEL_SANDBOX: sandbox_id})


async def test_a_suspended_sandbox_is_torn_down_when_the_run_moves(
    client: Client, scripted_model, make_config, running_worker, cloud: FakeE2B
) -> None:
    server = scripted_model(
        script(
            exec_call("echo moved > m.txt; sleep 1"),
            exec_call("cat m.txt"),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server)
    providers = {"local": LocalProvider.from_config(config), "e2b": E2BProvider(sdk=cloud)}
    request = RunRequest(agent="demo", task="t", sandbox=SandboxSettings(provider="e2b"))
    async with running_worker(config, providers=providers):
        handle = await start_run(client, config, request)
        await wait_for(lambda: _has_sandbox(handle))
        await handle.signal("pause")
        await wait_for(lambda: paused(handle))
        suspended = (await status_of(handle)).sandbox_id
        answer = await handle.execute_update("resume_on", SandboxMove(provider="local"), result_type=str)
        assert answer.startswith("resumed on local")
        assert not cloud.sandbox_ids(**{LABEL_SANDBOX: suspended})
        result = await asyncio.wait_for(handle.result(), timeout=90)
        status = await status_of(handle)
        history = await handle.fetch_history()
    assert result.state is RunState.COMPLETED and "moved" in result.final_message
    assert status.sandbox_provider == "local"
    # the suspend and the move replay (FARLINE_RECORD_HISTORIES=1 keeps the history)
    await Replayer(workflows=[AgentRun], data_converter=pydantic_data_converter).replay_workflow(history)
    if os.environ.get("FARLINE_RECORD_HISTORIES"):
        (Path(__file__).parent / "histories" / "agent_run_v8_suspend_and_move.json").write_text(
            history.to_json()
        )


async def _has_sandbox(handle: WorkflowHandle) -> bool:
    return (await status_of(handle)).sandbox_id is not None


async def _async(value: bool) -> bool:
    return value
