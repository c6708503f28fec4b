"""The modal provider on the fake Modal SDK (tests/fake_clouds/modal_fake.py), whose sandboxes are
containers of the tests' podman service: real processes, Modal's SDK surface."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from sandbox_providers.base import SandboxRef
from sandbox_providers.modal import ModalProvider, modal_name
from sandbox_providers.shell_scripts import MAX_LIVE_PROCESSES
from tests.fake_clouds.modal_fake import FakeModal
from tests.providers.support import ProviderSetup

# the registry image the provider is configured with, and the test image that stands for it
REGISTRY_IMAGE = "python:3.12-slim"


@asynccontextmanager
async def modal_provider(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ProviderSetup]:
    """Fake-Modal sandboxes in an app of the test's own; every container it made is removed after it."""
    service = request.getfixturevalue("podman_service")
    label = uuid.uuid4().hex[:12]
    fake = FakeModal(
        service.base_url,
        images={REGISTRY_IMAGE: service.image},
        labels={"farline.test": label},
        default_image=service.image,
    )
    app_name = f"farline-test-{label}"
    provider = ModalProvider(REGISTRY_IMAGE, app_name=app_name, sdk=fake)

    async def vanish(ref: SandboxRef) -> None:
        # Modal ended it behind the worker's back: its timeout passed, or someone terminated it
        await asyncio.to_thread(fake.terminate_behind, app_name, modal_name(ref.sandbox_id))

    try:
        yield ProviderSetup(provider=provider, vanish=vanish, live_process_limit=MAX_LIVE_PROCESSES)
    finally:
        await asyncio.to_thread(fake.remove_all)
