"""Fixtures and helpers for the tests that drive a local sandbox provider directly."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from sandbox_providers.base import ProcessSpec, ProcessState, SandboxConfig, SandboxRef
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


async def output_of(provider: LocalProvider, ref: SandboxRef, process_id: str) -> str:
    chunk = await provider.read_output(ref, process_id, 0, 1 << 20)
    return chunk.data.decode()


async def run(
    provider: LocalProvider, ref: SandboxRef, argv: list[str], **spec: object
) -> tuple[ProcessState, str]:
    process_id = f"p-{uuid.uuid4().hex[:12]}"
    await provider.start_process(ref, ProcessSpec(process_id=process_id, argv=argv, **spec))
    state = await wait_until_done(provider, ref, process_id)
    return state, await output_of(provider, ref, process_id)


async def sh(
    provider: LocalProvider, ref: SandboxRef, script: str, **spec: object
) -> tuple[ProcessState, str]:
    return await run(provider, ref, ["sh", "-c", script], **spec)
