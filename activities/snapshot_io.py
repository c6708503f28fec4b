"""Inputs and outputs of the snapshot activities (references and counts, never content)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from harness.specs import SnapshotStoreChoice
from sandbox_providers.base import SandboxRef


class SnapshotRequest(BaseModel):
    sandbox: SandboxRef
    # the workflow id: the run whose snapshot list this snapshot joins
    run_id: str
    # the run's count of snapshots so far (orders its list; stable across retries)
    sequence: int
    # why: "turn 3", "pause", "end", "idle"
    reason: str
    previous_snapshot_id: str | None = None
    # the run's snapshot store (None: the worker's)
    store: SnapshotStoreChoice | None = None


class SnapshotResult(BaseModel):
    snapshot_id: str
    # False when the workspace is as it was at the previous snapshot (nothing recorded)
    new: bool
    files: int
    total_bytes: int
    changed_files: int
    uploaded_bytes: int
    skipped: list[str] = Field(default_factory=list)
    skipped_count: int = 0
    seconds: float


class RestoreRequest(BaseModel):
    sandbox: SandboxRef
    snapshot_id: str
    store: SnapshotStoreChoice | None = None


class RestoreResult(BaseModel):
    snapshot_id: str
    files: int
    total_bytes: int
    seconds: float


class HandoffRequest(BaseModel):
    """Place a finished sub-agent's results into its parent's workspace (handoffs/<agent id>/)."""

    sandbox: SandboxRef
    agent_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    final_message: str
    child_snapshot: str | None = None
    # the parent's workflow time (epoch seconds): the RESULT.md file's mtime
    mtime: int
    store: SnapshotStoreChoice | None = None


class HandoffResult(BaseModel):
    path: str
    files: int
    total_bytes: int
