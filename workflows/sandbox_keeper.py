"""The run's sandbox over its whole life: created when first needed, snapshotted, rehydrated.

Workflow code (deterministic). The keeper holds the sandbox reference, the
newest snapshot id and their counters in workflow state, so they are in
history. A harness-owned sandbox is torn down (after a snapshot) on pause, at
the end and after an idle time; a user-owned one is used and never torn down.
When a sandbox is lost (SandboxGone, or its machine never picks a task up) the
keeper creates a new one and restores the newest snapshot into it.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from activities.sandbox_io import CreateSandboxRequest, MountRequest
    from activities.snapshot_io import RestoreRequest, RestoreResult, SnapshotRequest, SnapshotResult
    from harness.manifest import S3MountEntry
    from harness.sandbox_options import SUSPENDABLE
    from harness.specs import SandboxSettings, SnapshotStoreChoice, UserSandbox
    from harness.telemetry import count_rehydration
    from sandbox_providers.base import SandboxRef

SANDBOX_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
    non_retryable_error_types=["SandboxGone", "SandboxUnavailable", "SandboxProviderUnknown"],
)
SANDBOX_CALL_TIMEOUT = timedelta(minutes=2)
MOUNT_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=["SandboxGone", "SandboxUnavailable", "MountRefused"],
)
SNAPSHOT_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=10,
    non_retryable_error_types=[
        "SandboxGone",
        "SandboxProviderUnknown",
        "SnapshotMissing",
        "SnapshotInvalid",
    ],
)
SNAPSHOT_TIMEOUT = timedelta(minutes=30)
# snapshot activities heartbeat between batches of at most 64 MiB
SNAPSHOT_HEARTBEAT_TIMEOUT = timedelta(seconds=60)


class KeeperState(BaseModel):
    """What a keeper carries over a continue-as-new."""

    ref: SandboxRef | None
    generation: int
    latest_snapshot: str | None
    latest_reason: str | None
    snapshot_count: int
    rehydrations: int
    dirty: bool
    live_sessions: int
    notices: list[str]
    # defaults: state carried by runs recorded before starting workspaces existed
    seed: str | None = None
    mounts: list[S3MountEntry] = []
    suspended: bool = False


def sandbox_lost(error: BaseException) -> bool:
    """Whether an activity failed because its sandbox, or the machine holding it, is gone."""
    if not isinstance(error, ActivityError):
        return False
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type == "SandboxGone":
        return True
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START


class SandboxKeeper:
    def __init__(
        self,
        base_id: str,
        settings: SandboxSettings,
        user_sandbox: UserSandbox | None = None,
        managed: bool = True,
        seed: str | None = None,
        mounts: list[S3MountEntry] | None = None,
        fill_user_sandbox: bool = True,
        store: SnapshotStoreChoice | None = None,
    ) -> None:
        self.base_id = base_id
        self.settings = settings
        # where the run's snapshots go (None: the workers' store)
        self.store = store
        # False for runs recorded before snapshots existed: they replay with an eager sandbox,
        # no snapshots and no rehydration
        self.managed = managed
        self.user_ref = (
            SandboxRef(owner="user", **user_sandbox.model_dump()) if user_sandbox is not None else None
        )
        self.ref: SandboxRef | None = None
        self.generation = 0
        # the starting workspace (manifest, skills, memory): what a sandbox gets before any snapshot
        self.seed = seed
        # buckets mounted into every sandbox of the run
        self.mounts = list(mounts or [])
        self.latest_snapshot: str | None = None
        self.latest_reason: str | None = None
        self.snapshot_count = 0
        self.rehydrations = 0
        # tool calls running on the sandbox now; a sandbox in use is never torn down
        self.busy = 0
        # sub-agents working in this sandbox (a shared workspace): it is not torn down either
        self.borrowers = 0
        # False for a sub-agent in its parent's live sandbox: that workspace is used as it is
        self.fill_user_sandbox = fill_user_sandbox
        # exec sessions still running: a sandbox with some is not idle
        self.live_sessions = 0
        # a sandbox tool ran since the last snapshot
        self.dirty = False
        # the sandbox is paused by its provider (SUSPENDABLE): kept, and resumed by its next use
        self.suspended = False
        # what the model must hear before its next call (a sandbox lost between its turns)
        self.notices: list[str] = []
        self._lock = asyncio.Lock()

    def state(self) -> KeeperState:
        return KeeperState(**{name: getattr(self, name) for name in KeeperState.model_fields})

    def restore(self, state: KeeperState) -> None:
        for name in KeeperState.model_fields:
            setattr(self, name, getattr(state, name))

    @property
    def snapshots(self) -> bool:
        return self.managed and self.settings.snapshots

    def activity_options(self, ref: SandboxRef) -> dict[str, Any]:
        """Where an activity on this sandbox goes, and how long it may wait for that machine."""
        options: dict[str, Any] = {"task_queue": ref.task_queue}
        if ref.task_queue is not None and self.managed:
            options["schedule_to_start_timeout"] = timedelta(seconds=self.settings.worker_lost_after_s)
        return options

    def _snapshot_options(self, ref: SandboxRef) -> dict[str, Any]:
        return {
            "start_to_close_timeout": SNAPSHOT_TIMEOUT,
            "heartbeat_timeout": SNAPSHOT_HEARTBEAT_TIMEOUT,
            "retry_policy": SNAPSHOT_RETRY_POLICY,
            **self.activity_options(ref),
        }

    # -- getting a sandbox ---------------------------------------------------------------------------

    async def ensure(self) -> SandboxRef:
        """The sandbox, created (and the newest snapshot restored into it) if there is none."""
        async with self._lock:
            if self.ref is None:
                self.ref = await self._bring_up()
            # a suspended sandbox is resumed by the provider at its next operation
            self.suspended = False
            return self.ref

    async def _bring_up(self) -> SandboxRef:
        self.generation += 1
        if self.user_ref is not None and self.rehydrations == 0:
            await self._fill(self.user_ref, self.seed if self.fill_user_sandbox else None)
            return self.user_ref
        # the first sandbox keeps the name runs had before rehydration existed
        sandbox_id = self.base_id if self.generation == 1 else f"{self.base_id}-g{self.generation - 1}"
        ref = await workflow.execute_activity(
            "create_sandbox",
            CreateSandboxRequest(
                provider=self.settings.provider,
                sandbox_id=sandbox_id,
                network=self.settings.network,
                env=self.settings.env,
                options=self.settings.options,
            ),
            result_type=SandboxRef,
            start_to_close_timeout=SANDBOX_CALL_TIMEOUT,
            retry_policy=SANDBOX_RETRY_POLICY,
            summary=f"sandbox: create ({self.settings.provider})",
        )
        await self._fill(ref, self.latest_snapshot or self.seed)
        return ref

    async def _fill(self, ref: SandboxRef, snapshot_id: str | None) -> None:
        """A new sandbox's workspace: the newest snapshot (or the starting one), then the mounts."""
        if snapshot_id is not None:
            await self._restore(ref, snapshot_id)
        for mount in self.mounts:
            await workflow.execute_activity(
                "mount_storage",
                MountRequest(sandbox=ref, mount=mount),
                result_type=type(None),
                start_to_close_timeout=SANDBOX_CALL_TIMEOUT,
                retry_policy=MOUNT_RETRY_POLICY,
                summary=f"sandbox: mount s3://{mount.bucket}/{mount.prefix} at {mount.path}",
                **self.activity_options(ref),
            )

    async def _restore(self, ref: SandboxRef, snapshot_id: str) -> None:
        try:
            restored = await workflow.execute_activity(
                "restore_workspace",
                RestoreRequest(sandbox=ref, snapshot_id=snapshot_id, store=self.store),
                result_type=RestoreResult,
                summary=f"snapshot: restore {snapshot_id[:12]}",
                **self._snapshot_options(ref),
            )
        except ActivityError as error:
            # a missing or corrupt snapshot ends the run loudly: never an empty workspace
            raise ApplicationError(
                f"cannot restore snapshot {snapshot_id} into a new sandbox: {error.cause or error}",
                type="RestoreFailed",
                non_retryable=True,
            ) from error
        workflow.logger.info(
            "workspace restored", extra={"snapshot_id": snapshot_id, "files": restored.files}
        )

    # -- snapshots -----------------------------------------------------------------------------------

    async def snapshot(self, reason: str) -> None:
        """Snapshot the workspace if a sandbox tool ran since the last one."""
        async with self._lock:
            await self._snapshot(reason)

    async def _snapshot(self, reason: str) -> None:
        ref = self.ref
        if not self.snapshots or ref is None or not self.dirty:
            return
        try:
            result = await workflow.execute_activity(
                "snapshot_workspace",
                SnapshotRequest(
                    sandbox=ref,
                    run_id=workflow.info().workflow_id,
                    sequence=self.snapshot_count,
                    reason=reason,
                    previous_snapshot_id=self.latest_snapshot,
                    store=self.store,
                ),
                result_type=SnapshotResult,
                summary=f"snapshot: {reason}",
                **self._snapshot_options(ref),
            )
        except ActivityError as error:
            if sandbox_lost(error):
                self._lost(ref)
                return
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == "SnapshotStoreRefused":
                # the run's chosen store can never be used here: going on would keep nothing safe
                raise ApplicationError(
                    str(cause.message), type="SnapshotStoreRefused", non_retryable=True
                ) from None
            # the store is down: the run goes on, and the next turn tries again
            workflow.logger.warning("snapshot failed", extra={"reason": reason, "error": str(error.cause)})
            return
        self.dirty = False
        if result.new:
            self.snapshot_count += 1
            self.latest_snapshot = result.snapshot_id
            self.latest_reason = reason
        if result.skipped_count:
            workflow.logger.warning(
                "snapshot skipped special files",
                extra={"skipped": result.skipped, "count": result.skipped_count},
            )

    # -- losing and releasing ------------------------------------------------------------------------

    def _lost(self, ref: SandboxRef) -> None:
        """Forget a lost sandbox; the next command rehydrates a new one."""
        if self.ref == ref:
            self.ref = None
            self.rehydrations += 1
            count_rehydration(self.settings.provider)
            self.dirty = False
            self.notices.append(
                "The sandbox was lost after your last commands; the next command runs in a new one, "
                f"whose workspace is {self.workspace_is()}. Changes made after that are gone, and "
                "processes started before are no longer running."
            )

    def workspace_is(self) -> str:
        if self.latest_snapshot is None:
            return "as it was when the run started (no snapshot had been taken yet)"
        return f"as of the last snapshot ({self.latest_reason})"

    async def replace(self, ref: SandboxRef) -> str:
        """After a tool call found its sandbox gone: a new sandbox from the newest snapshot.

        Returns what the model is told for the call that failed.
        """
        async with self._lock:
            if self.ref == ref:
                self.ref = None
                self.rehydrations += 1
                count_rehydration(self.settings.provider)
                self.dirty = False
            if self.ref is None:
                self.ref = await self._bring_up()
        workflow.logger.warning("sandbox replaced", extra={"rehydrations": self.rehydrations})
        return (
            f"error: the sandbox was lost and replaced by a new one; the workspace is {self.workspace_is()}. "
            "This command did not complete: run it again if it is still needed. Sessions started before "
            "are gone."
        )

    async def release(self, reason: str) -> None:
        """Snapshot, then tear a harness-owned sandbox down (pause, idle, end)."""
        async with self._lock:
            ref = self.ref
            if ref is None:
                return
            await self._snapshot(reason)
            if self.ref is None or ref.owner != "harness":
                return
            if (
                reason in ("pause", "idle")
                and ref.provider in SUSPENDABLE
                and await self._suspend(ref, reason)
            ):
                return
            try:
                await workflow.execute_activity(
                    "destroy_sandbox",
                    ref,
                    start_to_close_timeout=SANDBOX_CALL_TIMEOUT,
                    retry_policy=SANDBOX_RETRY_POLICY,
                    summary=f"sandbox: tear down ({reason})",
                    **self.activity_options(ref),
                )
            except ActivityError as error:
                if not sandbox_lost(error):
                    raise
                workflow.logger.info("sandbox already gone at tear down", extra={"reason": reason})
            finally:
                # the status shows no sandbox only once it is gone
                self.ref = None

    async def _suspend(self, ref: SandboxRef, reason: str) -> bool:
        """Pause the sandbox with its provider's own primitive; False when that failed (it is torn
        down instead) or found it gone."""
        try:
            await workflow.execute_activity(
                "suspend_sandbox",
                ref,
                result_type=bool,
                start_to_close_timeout=SANDBOX_CALL_TIMEOUT,
                retry_policy=SANDBOX_RETRY_POLICY,
                summary=f"sandbox: suspend ({reason})",
                **self.activity_options(ref),
            )
        except ActivityError as error:
            if sandbox_lost(error):
                self.ref = None
                workflow.logger.info("sandbox already gone at suspend", extra={"reason": reason})
                return True
            workflow.logger.warning("suspend failed: tearing down", extra={"error": str(error.cause)})
            return False
        self.suspended = True
        return True

    async def discard(self, reason: str) -> None:
        """Tear a suspended sandbox down (its workspace is in the newest snapshot)."""
        if self.suspended:
            self.suspended = False
            await self.release(reason)

    async def watch(self, paused: Callable[[], bool]) -> None:
        """Background task: release the sandbox while the run is paused or the sandbox sits idle."""
        idle = self.settings.idle_timeout_s

        def releasable() -> bool:
            return (
                self.ref is not None
                and self.ref.owner == "harness"
                and self.busy == 0
                and not self.borrowers
                and not self.suspended
            )

        def idle_now() -> bool:
            return releasable() and self.live_sessions == 0 and idle is not None

        while True:
            await workflow.wait_condition(lambda: (releasable() and paused()) or idle_now())
            if paused():
                await self.release("pause")
                await workflow.wait_condition(lambda: not paused())
                continue
            assert idle is not None
            try:
                await workflow.wait_condition(
                    lambda: not idle_now() or paused(), timeout=timedelta(seconds=idle)
                )
            except builtins.TimeoutError:
                await self.release("idle")
