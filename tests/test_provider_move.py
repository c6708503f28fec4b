"""A run's sandbox changes provider on resume: paused on local (bubblewrap), resumed on docker
(podman's Docker API), the workspace comes along through the snapshot store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import docker
import pytest
from temporalio.client import Client, WorkflowUpdateFailedError

from harness.runs import start_run
from harness.specs import RunRequest, RunState, SandboxMove
from sandbox_providers.docker import LABEL_SANDBOX
from tests.script_helpers import exec_call, script, tool_outputs
from tests.test_rehydration import status_of
from tests.worker_processes import wait_for

if TYPE_CHECKING:
    from tests.podman_service import PodmanService


async def test_a_run_paused_on_local_resumes_on_docker_with_its_workspace(
    client: Client, scripted_model, make_config, running_worker, podman_service: PodmanService
) -> None:
    server = scripted_model(
        script(
            exec_call(
                "mkdir -p src && echo 'made on local' > src/kept.txt && ln -s src/kept.txt link; sleep 1"
            ),
            exec_call("cat link; ls /var/farline >/dev/null && echo IN-DOCKER"),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server, docker_url=podman_service.base_url, docker_image=podman_service.image)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="move me"))

        async def on_local() -> bool:
            status = await status_of(handle)
            return status.sandbox_id is not None and status.sandbox_provider == "local"

        await wait_for(on_local)
        # moving a run that is not paused is refused, and changes nothing
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("resume_on", SandboxMove(provider="docker"), result_type=str)
        assert "not paused" in str(refused.value.cause)
        await handle.signal("pause")

        async def released() -> bool:
            status = await status_of(handle)
            return status.state is RunState.PAUSED and status.sandbox_id is None

        await wait_for(released)
        answer = await handle.execute_update(
            "resume_on", SandboxMove(provider="docker", options={"pids_limit": 77}), result_type=str
        )
        assert answer.startswith("resumed on docker; the workspace comes from snapshot ")

        engine = docker.DockerClient(base_url=podman_service.base_url)
        try:

            async def on_docker() -> bool:
                status = await status_of(handle)
                return status.sandbox_provider == "docker" and status.sandbox_id is not None

            await wait_for(on_docker)
            sandbox_id = (await status_of(handle)).sandbox_id
            [container] = engine.containers.list(filters={"label": f"{LABEL_SANDBOX}={sandbox_id}"})
            assert container.attrs["HostConfig"]["PidsLimit"] == 77
            result = await asyncio.wait_for(handle.result(), timeout=90)
            status = await status_of(handle)
        finally:
            engine.close()

    assert result.state is RunState.COMPLETED
    # the second command ran in the container, on the files made in bubblewrap
    assert "made on local" in result.final_message and "IN-DOCKER" in result.final_message
    assert status.rehydrations == 0 and status.sandbox_provider == "docker"
    assert "IN-DOCKER" in tool_outputs(server)[1]


async def test_a_move_to_a_provider_the_worker_lacks_is_refused_and_the_run_stays(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    """The worker offers no docker provider (no FARLINE_DOCKER_IMAGE): the move is refused with the
    reason, the run stays paused on local, and a plain resume finishes it there."""
    server = scripted_model(
        script(
            exec_call("echo one > one.txt; sleep 1"),
            exec_call("cat one.txt"),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="t"))
        await wait_for(lambda: _has_sandbox(handle))
        await handle.signal("pause")
        await wait_for(lambda: _paused(handle))
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("resume_on", SandboxMove(provider="docker"), result_type=str)
        message = str(refused.value.cause)
        assert "cannot resume on docker" in message and "stays paused on local" in message
        assert "sandbox provider 'docker' is not available on this worker (available: local)" in message
        status = await status_of(handle)
        assert status.state is RunState.PAUSED and status.sandbox_provider == "local"
        await handle.signal("resume")
        result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.state is RunState.COMPLETED and result.final_message.strip().endswith("Output:\none")


async def _has_sandbox(handle) -> bool:
    return (await status_of(handle)).sandbox_id is not None


async def _paused(handle) -> bool:
    status = await status_of(handle)
    return status.state is RunState.PAUSED and status.sandbox_id is None


def test_the_cli_refuses_options_the_provider_does_not_take() -> None:
    """Checked before anything is sent: the message names the option and what the provider takes."""
    command = [
        sys.executable,
        "-m",
        "harness.cli",
        "resume",
        "some-run",
        "--provider",
        "e2b",
        "--option",
        "cpu=2",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ}, timeout=60)
    assert done.returncode == 2
    assert "cpu: Extra inputs are not permitted (it takes: template, timeout_s)" in done.stderr
