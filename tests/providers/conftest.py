"""The provider contract suite's fixture: `provider_under_test`, once for each provider in FACTORIES.

Adding a provider to the suite: write a factory, an async context manager that takes the test's
temporary directory and yields a `ProviderSetup` (the provider, and optionally how to make one of
its sandboxes vanish and its live process limit), then add it to FACTORIES under the provider's
name. A provider driven through a fake (a recorded engine, a fake cloud API) is set up the same
way: the factory starts the fake, yields the provider pointed at it, and stops it afterwards.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import docker
import pytest

from sandbox_providers.base import SandboxRef
from sandbox_providers.docker import DockerProvider
from sandbox_providers.local import MAX_LIVE_PROCESSES, LocalProvider
from sandbox_providers.shell_scripts import MAX_LIVE_PROCESSES as DOCKER_MAX_LIVE_PROCESSES
from tests.providers.factory_daytona import daytona_provider
from tests.providers.factory_e2b import e2b_provider
from tests.providers.factory_modal import modal_provider
from tests.providers.support import ProviderSetup, ProviderUnderTest

# what every sandbox must hide: set in the worker's environment before any provider is built
WORKER_SECRETS = {
    "OPENAI_API_KEY": "sk-contract-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-contract-secret",
}

ProviderFactory = Callable[[Path, pytest.FixtureRequest], AbstractAsyncContextManager[ProviderSetup]]


@asynccontextmanager
async def local_provider(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ProviderSetup]:
    """Bubblewrap sandboxes under the test's own directory."""
    root = tmp_path / "sandboxes"

    async def vanish(ref: SandboxRef) -> None:
        # what a wiped disk or a cleaned-up data directory leaves behind
        await asyncio.to_thread(shutil.rmtree, root / ref.sandbox_id / "workspace")

    yield ProviderSetup(provider=LocalProvider(root), vanish=vanish, live_process_limit=MAX_LIVE_PROCESSES)


@asynccontextmanager
async def docker_provider(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ProviderSetup]:
    """Containers of podman's Docker-compatible API service (tests/podman_service.py), as a
    non-root user; every container the test made is removed after it."""
    service = request.getfixturevalue("podman_service")
    label = uuid.uuid4().hex[:12]
    provider = DockerProvider(
        service.image, base_url=service.base_url, user="1000", labels={"farline.test": label}
    )
    engine = docker.DockerClient(base_url=service.base_url)

    async def vanish(ref: SandboxRef) -> None:
        # what `docker rm -f` by someone else, or an engine that lost its containers, leaves behind
        await asyncio.to_thread(engine.api.remove_container, f"farline-{ref.sandbox_id}", force=True)

    try:
        yield ProviderSetup(provider=provider, vanish=vanish, live_process_limit=DOCKER_MAX_LIVE_PROCESSES)
    finally:
        for container in engine.containers.list(all=True, filters={"label": f"farline.test={label}"}):
            container.remove(force=True)
        engine.close()


FACTORIES: dict[str, ProviderFactory] = {
    "docker": docker_provider,
    # the cloud providers, on fakes of their SDKs whose sandboxes are podman containers
    "daytona": daytona_provider,
    "e2b": e2b_provider,
    "local": local_provider,
    "modal": modal_provider,
}

# (provider, test): a part of the contract the provider does not meet yet, and why. The test then
# runs as a strict xfail, so a fix shows up as XPASS (a failure) until its entry goes.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


@pytest.fixture
def worker_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in WORKER_SECRETS.items():
        monkeypatch.setenv(name, value)
    return WORKER_SECRETS


@pytest.fixture(params=sorted(FACTORIES))
async def provider_under_test(
    request: pytest.FixtureRequest, tmp_path: Path, worker_secrets: dict[str, str]
) -> AsyncIterator[ProviderUnderTest]:
    """The provider named by the parameter; the sandboxes a test creates are destroyed after it."""
    gap = KNOWN_GAPS.get((request.param, request.node.originalname))
    if gap is not None:
        request.applymarker(pytest.mark.xfail(reason=gap, strict=True))
    async with FACTORIES[request.param](tmp_path, request) as setup:
        under_test = ProviderUnderTest(request.param, setup)
        try:
            yield under_test
        finally:
            await under_test.destroy_all()
