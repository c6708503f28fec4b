"""The e2b provider's factory for the contract suite: E2BProvider on the fake E2B SDK
(tests/fake_clouds/e2b_fake.py), whose sandboxes are containers of the podman service. Where the
real SDK is installed, every call the suite made must bind to its signatures."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from sandbox_providers.base import SandboxRef
from sandbox_providers.e2b import LABEL_SANDBOX, E2BProvider
from sandbox_providers.shell_scripts import MAX_LIVE_PROCESSES
from tests.fake_clouds.e2b_fake import FakeE2B, unbound_calls
from tests.providers.support import ProviderSetup


@asynccontextmanager
async def e2b_provider(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ProviderSetup]:
    """E2B sandboxes of the fake cloud (template "base": the test image); every container the
    test made is removed after it."""
    service = request.getfixturevalue("podman_service")
    cloud = FakeE2B(
        service.base_url, templates={"base": service.image}, labels={"farline.test": uuid.uuid4().hex[:12]}
    )

    async def vanish(ref: SandboxRef) -> None:
        # what an expired sandbox, or one killed from E2B's dashboard, leaves behind
        for sandbox_id in await asyncio.to_thread(cloud.sandbox_ids, **{LABEL_SANDBOX: ref.sandbox_id}):
            await asyncio.to_thread(cloud.lose, sandbox_id)

    try:
        provider = E2BProvider(sdk=cloud)
        yield ProviderSetup(provider=provider, vanish=vanish, live_process_limit=MAX_LIVE_PROCESSES)
    finally:
        await asyncio.to_thread(cloud.remove_all)
    if importlib.util.find_spec("e2b") is not None:  # the real SDK, where installed
        assert not unbound_calls(importlib.import_module("e2b"), cloud.calls)
