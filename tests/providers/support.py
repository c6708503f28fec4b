"""What the contract tests need around a provider: sandboxes cleaned up at the end, processes run
to completion and their output read back.

Everything here goes through the `SandboxProvider` protocol only, so that every provider is
driven the same way; what differs between providers lives in their factory (conftest.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sandbox_providers.base import ProcessSpec, ProcessState, SandboxConfig, SandboxProvider, SandboxRef

# generous, for providers whose sandboxes live in a cloud: only a failing test waits this long
WAIT_S = 30.0
POLL_S = 0.02
READ_BYTES = 1 << 20


@dataclass(frozen=True)
class ProviderSetup:
    """What a provider's factory hands the suite."""

    provider: SandboxProvider
    # makes a sandbox disappear behind the provider's back, as an expired sandbox or a lost
    # machine does; None when that cannot be arranged (the tests that need it skip)
    vanish: Callable[[SandboxRef], Awaitable[None]] | None = None
    # the most processes the provider runs at once in one sandbox; None when it sets no limit
    live_process_limit: int | None = None


@dataclass(frozen=True)
class Finished:
    """A process that ran to its end, with all its output."""

    state: ProcessState
    output: bytes

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")


class ProviderUnderTest:
    """One provider, with the sandboxes a test created through it (destroyed when the test ends)."""

    def __init__(self, name: str, setup: ProviderSetup) -> None:
        self.name = name
        self.setup = setup
        self.provider = setup.provider
        self._created: list[SandboxRef] = []

    @staticmethod
    def unique_id(label: str = "sb") -> str:
        """A sandbox or process id no other test uses."""
        return f"ct-{label}-{uuid.uuid4().hex[:10]}"

    async def create(self, sandbox_id: str | None = None, **config: object) -> SandboxRef:
        """Create a sandbox (a fresh id unless given) with a SandboxConfig of these fields."""
        sandbox_id = sandbox_id or self.unique_id()
        ref = await self.provider.create(sandbox_id, SandboxConfig.model_validate(config))
        self._created.append(ref)
        return ref

    async def destroy_all(self) -> None:
        """Destroy every sandbox the test created, gone ones included (destroy is idempotent)."""
        errors: list[BaseException] = []
        for ref in self._created:
            try:
                await self.provider.destroy(ref)
            except Exception as error:
                errors.append(error)
        if errors:
            raise ExceptionGroup(f"{self.name}: destroying the test's sandboxes failed", errors)

    async def start(self, ref: SandboxRef, argv: list[str], **spec: object) -> str:
        """Start a process under a fresh id (unless `process_id` is given); returns the id."""
        process_id = str(spec.pop("process_id", None) or self.unique_id("p"))
        state = await self.provider.start_process(
            ref, ProcessSpec.model_validate({"process_id": process_id, "argv": argv, **spec})
        )
        assert state.process_id == process_id
        return process_id

    async def wait_until_done(
        self, ref: SandboxRef, process_id: str, timeout: float = WAIT_S
    ) -> ProcessState:
        deadline = time.monotonic() + timeout
        while (state := await self.provider.process_state(ref, process_id)).running:
            assert time.monotonic() < deadline, f"{process_id} still running after {timeout}s"
            await asyncio.sleep(POLL_S)
        return state

    async def output_of(self, ref: SandboxRef, process_id: str, offset: int = 0) -> bytes:
        """Every byte still held from `offset` on, following `next_offset` chunk by chunk."""
        parts = []
        while chunk := (await self.provider.read_output(ref, process_id, offset, READ_BYTES)).data:
            parts.append(chunk)
            offset += len(chunk)
        return b"".join(parts)

    async def wait_for_output(
        self, ref: SandboxRef, process_id: str, needle: bytes, offset: int = 0, timeout: float = WAIT_S
    ) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in (output := await self.output_of(ref, process_id, offset)):
            assert time.monotonic() < deadline, f"no {needle!r} in the output of {process_id}: {output!r}"
            await asyncio.sleep(POLL_S)
        return output

    async def run(self, ref: SandboxRef, argv: list[str], **spec: object) -> Finished:
        process_id = await self.start(ref, argv, **spec)
        state = await self.wait_until_done(ref, process_id)
        return Finished(state, await self.output_of(ref, process_id))

    async def sh(self, ref: SandboxRef, script: str, **spec: object) -> Finished:
        """Run a bash script, as exec_command does."""
        return await self.run(ref, ["bash", "-c", script], **spec)
