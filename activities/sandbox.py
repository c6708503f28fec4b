"""Sandbox lifecycle activities: create a sandbox for a run, destroy it at the end."""

from __future__ import annotations

import asyncio

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.providers import ProviderActivities
from activities.sandbox_io import CreateSandboxRequest
from harness.snapshot_store import SnapshotStore
from sandbox_providers.base import SandboxConfig, SandboxProvider, SandboxRef, SandboxUnavailable

logger = structlog.get_logger(__name__)


class SandboxActivities(ProviderActivities):
    def __init__(
        self,
        providers: dict[str, SandboxProvider],
        local_task_queue: str | None = None,
        store: SnapshotStore | None = None,
    ) -> None:
        super().__init__(providers)
        # where the activities on this worker's local sandboxes go (this machine's own queue)
        self._local_task_queue = local_task_queue
        # the snapshot store keeps each sandbox's stat data; it goes with the sandbox
        self._store = store

    @activity.defn(name="create_sandbox")
    async def create_sandbox(self, request: CreateSandboxRequest) -> SandboxRef:
        provider = self._provider(request.provider)
        try:
            ref = await provider.create(
                request.sandbox_id, SandboxConfig(network=request.network, env=request.env)
            )
        except SandboxUnavailable as error:
            raise ApplicationError(str(error), type="SandboxUnavailable", non_retryable=True) from None
        if request.provider == "local" and self._local_task_queue is not None:
            ref = ref.model_copy(update={"task_queue": self._local_task_queue})
        logger.info(
            "sandbox created",
            workflow_id=activity.info().workflow_id,
            sandbox_id=ref.sandbox_id,
            queue=ref.task_queue,
        )
        return ref

    @activity.defn(name="destroy_sandbox")
    async def destroy_sandbox(self, ref: SandboxRef) -> None:
        await self._provider(ref.provider).destroy(ref)
        if self._store is not None:
            await asyncio.to_thread(self._store.forget_stat_cache, ref.sandbox_id)
        logger.info("sandbox destroyed", workflow_id=activity.info().workflow_id, sandbox_id=ref.sandbox_id)
