"""Fixtures and helpers for the tests that drive a local sandbox provider directly."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sandbox_providers.base import ProcessState, SandboxConfig, SandboxRef
from sandbox_providers.local import LocalProvider


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sandboxes"


@pytest.fixture
def provider(root: Path) -> LocalProvider:
    return LocalProvider(root)


@pytest.fixture
async def sandbox(provider: LocalProvider) -> SandboxRef:
    return await provider.create("sb", SandboxConfig())


async def wait_until_done(
    provider: LocalProvider, ref: SandboxRef, process_id: str, timeout: float = 10
) -> ProcessState:
    deadline = time.monotonic() + timeout
    while (state := await provider.process_state(ref, process_id)).running:
        assert time.monotonic() < deadline, f"{process_id} still running after {timeout}s"
        await asyncio.sleep(0.01)
    return state
