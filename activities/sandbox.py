"""Sandbox lifecycle activities: create a sandbox for a run, destroy it at the end."""

from __future__ import annotations

import asyncio

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.providers import ProviderActivities, sandbox_gone
from activities.sandbox_io import CreateSandboxRequest, MountRequest
from harness.config import ConfigError, FarlineConfig
from harness.manifest import normal_path
from harness.sandbox_options import OptionsError
from harness.snapshot_stores import SnapshotStores
from sandbox_providers.base import (
    BucketMount,
    SandboxConfig,
    SandboxGone,
    SandboxPathError,
    SandboxProvider,
    SandboxRef,
    SandboxUnavailable,
)

logger = structlog.get_logger(__name__)


class SandboxActivities(ProviderActivities):
    def __init__(
        self,
        providers: dict[str, SandboxProvider],
        local_task_queue: str | None = None,
        stores: SnapshotStores | None = None,
        config: FarlineConfig | None = None,
    ) -> None:
        super().__init__(providers)
        # where the keys of mounted buckets are looked up
        self._config = config or FarlineConfig()
        # where the activities on this worker's local sandboxes go (this machine's own queue)
        self._local_task_queue = local_task_queue
        # the snapshot stores keep each sandbox's stat data; it goes with the sandbox
        self._stores = stores

    @activity.defn(name="create_sandbox")
    async def create_sandbox(self, request: CreateSandboxRequest) -> SandboxRef:
        provider = self._provider(request.provider)
        try:
            ref = await provider.create(
                request.sandbox_id,
                SandboxConfig(network=request.network, env=request.env, options=request.options),
            )
        except (SandboxUnavailable, OptionsError) as error:
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
        for store in self._stores.opened() if self._stores is not None else []:
            await asyncio.to_thread(store.forget_stat_cache, ref.sandbox_id)
        logger.info("sandbox destroyed", workflow_id=activity.info().workflow_id, sandbox_id=ref.sandbox_id)

    @activity.defn(name="suspend_sandbox")
    async def suspend_sandbox(self, ref: SandboxRef) -> bool:
        """Pause the sandbox with its provider's own primitive (E2B pause, Daytona stop), files kept
        for its next use; False when the provider has none."""
        suspend = getattr(self._provider(ref.provider), "suspend", None)
        if suspend is None:
            return False
        try:
            now = await suspend(ref)  # False: it already was
        except SandboxGone as error:
            raise sandbox_gone(error) from None
        logger.info(
            "sandbox suspended", workflow_id=activity.info().workflow_id, sandbox_id=ref.sandbox_id, now=now
        )
        return True

    @activity.defn(name="mount_storage")
    async def mount_storage(self, request: MountRequest) -> None:
        """Mount a manifest's bucket into the sandbox, with keys looked up here on the worker."""
        entry = request.mount
        try:
            key_id, secret = self._config.s3_credentials(entry.credentials)
        except ConfigError as error:
            raise ApplicationError(str(error), type="MountRefused", non_retryable=True) from None
        mount = BucketMount(
            path=normal_path(entry.path),
            bucket=entry.bucket,
            prefix=entry.prefix,
            endpoint_url=entry.endpoint_url or self._config.s3_endpoint_url,
            region=entry.region or self._config.s3_region,
            access_key_id=key_id,
            secret_access_key=secret,
            read_only=entry.read_only,
        )
        provider = self._provider(request.sandbox.provider)
        try:
            await provider.mount_bucket(request.sandbox, mount)
        except SandboxGone as error:
            raise sandbox_gone(error) from None
        except (SandboxUnavailable, SandboxPathError) as error:
            raise ApplicationError(str(error), type="MountRefused", non_retryable=True) from None
