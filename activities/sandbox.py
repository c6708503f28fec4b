"""Sandbox lifecycle activities: create a sandbox for a run, destroy it at the end."""

from __future__ import annotations

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.providers import ProviderActivities
from activities.sandbox_io import CreateSandboxRequest
from sandbox_providers.base import SandboxConfig, SandboxRef, SandboxUnavailable

logger = structlog.get_logger(__name__)


class SandboxActivities(ProviderActivities):
    @activity.defn(name="create_sandbox")
    async def create_sandbox(self, request: CreateSandboxRequest) -> SandboxRef:
        provider = self._provider(request.provider)
        try:
            ref = await provider.create(
                request.sandbox_id, SandboxConfig(network=request.network, env=request.env)
            )
        except SandboxUnavailable as error:
            raise ApplicationError(str(error), type="SandboxUnavailable", non_retryable=True) from None
        logger.info("sandbox created", workflow_id=activity.info().workflow_id, sandbox_id=ref.sandbox_id)
        return ref

    @activity.defn(name="destroy_sandbox")
    async def destroy_sandbox(self, ref: SandboxRef) -> None:
        await self._provider(ref.provider).destroy(ref)
        logger.info("sandbox destroyed", workflow_id=activity.info().workflow_id, sandbox_id=ref.sandbox_id)
