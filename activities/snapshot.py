"""Snapshot activities: take a snapshot of a sandbox's workspace, restore one into a sandbox.

They run where the sandbox is reachable (a local sandbox's own machine queue).
A sandbox that vanished fails them with SandboxGone (the workflow rehydrates);
a missing or invalid snapshot fails them for good, loudly: the run never goes
on with an empty workspace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.providers import ProviderActivities, sandbox_gone
from activities.snapshot_engine import SnapshotEngine
from activities.snapshot_io import (
    HandoffRequest,
    HandoffResult,
    RestoreRequest,
    RestoreResult,
    SnapshotRequest,
    SnapshotResult,
)
from harness.handoffs import handoff_tree
from harness.object_store import ObjectStoreError
from harness.snapshot_store import SnapshotMissing, SnapshotStore
from harness.snapshot_stores import SnapshotStores, StoreRefused
from harness.snapshot_tree import SnapshotInvalid, SnapshotRecord
from harness.specs import SnapshotStoreChoice
from harness.subagent_tools import HANDOFFS_DIR
from harness.telemetry import record_restore, record_snapshot
from sandbox_providers.base import SandboxGone, SandboxProvider, SandboxRef

logger = structlog.get_logger(__name__)
_Result = TypeVar("_Result")


class SnapshotActivities(ProviderActivities):
    def __init__(self, providers: dict[str, SandboxProvider], stores: SnapshotStores) -> None:
        super().__init__(providers)
        self._stores = stores

    def _store(self, choice: SnapshotStoreChoice | None) -> SnapshotStore:
        try:
            return self._stores.get(choice)
        except StoreRefused as error:
            raise ApplicationError(str(error), type="SnapshotStoreRefused", non_retryable=True) from None

    def _engine(self, ref: SandboxRef, store: SnapshotStore) -> SnapshotEngine:
        return SnapshotEngine(store, self._provider(ref.provider), progress=activity.heartbeat)

    @activity.defn(name="snapshot_workspace")
    async def snapshot_workspace(self, request: SnapshotRequest) -> SnapshotResult:
        store = self._store(request.store)
        taken = await self._guarded(
            request.sandbox, self._engine(request.sandbox, store).take(request.sandbox)
        )
        record_snapshot(taken.uploaded_bytes, taken.seconds)
        new = taken.snapshot_id != request.previous_snapshot_id
        tree = taken.tree
        if new:
            record = SnapshotRecord(
                snapshot_id=taken.snapshot_id,
                run_id=request.run_id,
                sequence=request.sequence,
                created_at=time.time(),
                reason=request.reason,
                files=tree.count("file"),
                total_bytes=tree.total_bytes,
                changed_files=taken.changed_files,
                uploaded_bytes=taken.uploaded_bytes,
                skipped=taken.skipped,
            )
            await self._guarded(request.sandbox, asyncio.to_thread(store.record, record))
        return SnapshotResult(
            new=new,
            files=tree.count("file"),
            total_bytes=tree.total_bytes,
            **taken.model_dump(
                include={
                    "snapshot_id",
                    "changed_files",
                    "uploaded_bytes",
                    "skipped",
                    "skipped_count",
                    "seconds",
                }
            ),
        )

    @activity.defn(name="restore_workspace")
    async def restore_workspace(self, request: RestoreRequest) -> RestoreResult:
        engine = self._engine(request.sandbox, self._store(request.store))
        restored = await self._guarded(request.sandbox, engine.restore(request.sandbox, request.snapshot_id))
        record_restore(restored.seconds)
        return RestoreResult(**restored.model_dump())

    @activity.defn(name="deliver_handoff")
    async def deliver_handoff(self, request: HandoffRequest) -> HandoffResult:
        store = self._store(request.store)
        tree = await self._guarded(
            request.sandbox,
            asyncio.to_thread(
                handoff_tree,
                store,
                request.agent_id,
                request.final_message,
                request.child_snapshot,
                request.mtime,
            ),
        )
        await self._guarded(
            request.sandbox, self._engine(request.sandbox, store).place(request.sandbox, tree)
        )
        return HandoffResult(
            path=f"{HANDOFFS_DIR}/{request.agent_id}", files=tree.count("file"), total_bytes=tree.total_bytes
        )

    async def _guarded(self, ref: SandboxRef, work: Awaitable[_Result]) -> _Result:
        """Run `work`, turning failures into the errors the workflow acts on."""
        try:
            return await work
        except SandboxGone as error:
            raise sandbox_gone(error) from None
        except SnapshotMissing as error:
            raise ApplicationError(str(error), type="SnapshotMissing", non_retryable=True) from None
        except SnapshotInvalid as error:
            raise ApplicationError(str(error), type="SnapshotInvalid", non_retryable=True) from None
        except ObjectStoreError as error:
            # the store is unreachable or refused: worth retrying
            raise ApplicationError(str(error), type="SnapshotStoreError") from None
        except OSError as error:
            # the workspace vanished under the scan or the import
            provider = self._provider(ref.provider)
            if not await provider.health(ref):
                raise sandbox_gone(SandboxGone(f"sandbox {ref.sandbox_id!r} vanished: {error}")) from None
            raise
