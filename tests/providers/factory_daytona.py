"""The contract suite's factory for the daytona provider, on the fake Daytona SDK
(tests/fake_clouds/daytona_fake.py) whose sandboxes are containers of the podman service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from sandbox_providers.base import SandboxRef
from sandbox_providers.daytona import DaytonaProvider
from sandbox_providers.shell_scripts import MAX_LIVE_PROCESSES
from tests.fake_clouds.daytona_fake import FakeDaytonaCloud
from tests.providers.support import ProviderSetup


@asynccontextmanager
async def daytona_provider(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ProviderSetup]:
    """The daytona provider on a fake cloud of its own; every container it made is removed after."""
    service = request.getfixturevalue("podman_service")
    cloud = await asyncio.to_thread(FakeDaytonaCloud, service.base_url, service.image)
    provider = DaytonaProvider(sdk=cloud.sdk, labels={"farline.test": cloud.label})

    async def vanish(ref: SandboxRef) -> None:
        # what a sandbox deleted from Daytona's dashboard, or by its ttl, leaves behind
        await cloud.vanish(provider.name_prefix + ref.sandbox_id)

    try:
        yield ProviderSetup(provider=provider, vanish=vanish, live_process_limit=MAX_LIVE_PROCESSES)
    finally:
        await provider.close()
        await asyncio.to_thread(cloud.close)
