"""The contract every sandbox provider implements.

A sandbox is a disposable machine with one writable workspace. Processes are
identified by ids the caller chooses (derived from the workflow), so starting
the same process twice attaches to the first one instead of running it again.
Processes, their output, stdin and exit codes live in the sandbox, not in the
worker, so they outlive a worker restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

WORKSPACE_PATH = "/workspace"


class SandboxError(Exception):
    """Base class of the errors a provider raises."""


class SandboxUnavailable(SandboxError):
    """The provider cannot run here (a missing binary, a missing permission)."""


class SandboxGone(SandboxError):
    """The sandbox no longer exists: the workflow rehydrates a fresh one from this."""


class SandboxPathError(SandboxError):
    """A path that is malformed or leaves the workspace."""


class ProcessNotFound(SandboxError):
    """No process with that id was ever started in this sandbox."""


class SandboxLimitError(SandboxError):
    """The sandbox already runs as many processes as it allows; the message says what to do."""


class SandboxConfig(BaseModel):
    """How a sandbox is set up; fixed at creation."""

    network: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    # the provider's own options (harness/sandbox_options.py): the run's, checked when it started
    options: dict[str, Any] = Field(default_factory=dict)


class SandboxRef(BaseModel):
    """A small, serialisable handle on a sandbox (safe to keep in workflow history)."""

    provider: str
    sandbox_id: str
    owner: Literal["harness", "user"] = "harness"
    # the task queue of the workers that can reach this sandbox (local sandboxes: one machine);
    # None: any worker of the run's queue
    task_queue: str | None = None


class ProcessSpec(BaseModel):
    """A process to start. `process_id` must be unique in the sandbox and stable across retries."""

    process_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    argv: list[str] = Field(min_length=1)
    workdir: str = "."
    env: dict[str, str] = Field(default_factory=dict)
    # run on a pseudo-terminal (stdin, stdout and stderr), as interactive programs expect
    tty: bool = False


class ProcessState(BaseModel):
    process_id: str
    running: bool
    exit_code: int | None = None
    # the process vanished without an exit code (its supervisor died with the machine)
    lost: bool = False
    # every byte the process has written so far, including any no longer held
    output_size: int = 0
    # epoch seconds, from the sandbox's clock: when the process was started and when it ended
    started_at: float | None = None
    ended_at: float | None = None


class OutputChunk(BaseModel):
    """Output from the requested `offset`; offsets count every byte the process ever wrote.

    A provider may keep only the head and the tail of a long output: when `offset`
    falls in the part it dropped, `data` starts `dropped` bytes later, at the first
    byte still held, and `next_offset` is `offset + dropped + len(data)`.
    """

    data: bytes
    offset: int
    next_offset: int
    dropped: int = 0


class FileEntry(BaseModel):
    path: str
    kind: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    link_target: str | None = None


@dataclass(frozen=True)
class BucketMount:
    """An S3 bucket (or a prefix of it) to mount at a workspace path; the keys are the worker's own
    and never enter the sandbox (its environment, its files) nor the run's history."""

    path: str
    bucket: str
    prefix: str
    endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: str | None
    read_only: bool = True


@dataclass(frozen=True)
class WorkspaceStat:
    """One path of a workspace with the stat data a snapshot compares (links never followed)."""

    path: str
    kind: Literal["file", "dir", "symlink", "other"]
    mode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    link_target: str | None = None


class SandboxProvider(Protocol):
    """What the activities need from a place that runs commands."""

    name: str

    async def create(self, sandbox_id: str, config: SandboxConfig) -> SandboxRef:
        """Create the sandbox, or return the existing one with that id (idempotent)."""
        ...

    async def health(self, ref: SandboxRef) -> bool:
        """True while the sandbox exists and can run processes."""
        ...

    async def start_process(self, ref: SandboxRef, spec: ProcessSpec) -> ProcessState:
        """Start a process, or attach to the one already started with that id."""
        ...

    async def process_state(self, ref: SandboxRef, process_id: str) -> ProcessState: ...

    async def read_output(self, ref: SandboxRef, process_id: str, offset: int, max_bytes: int) -> OutputChunk:
        """Combined stdout and stderr from byte `offset`, at most `max_bytes`."""
        ...

    async def write_stdin(self, ref: SandboxRef, process_id: str, data: bytes) -> None: ...

    async def kill_process(self, ref: SandboxRef, process_id: str) -> None: ...

    async def read_file(self, ref: SandboxRef, path: str) -> bytes: ...

    async def write_file(self, ref: SandboxRef, path: str, data: bytes, mode: int = 0o644) -> None: ...

    async def delete_file(self, ref: SandboxRef, path: str) -> None:
        """Remove a file or a symlink (never what it points to).

        IsADirectoryError for a directory, FileNotFoundError when nothing is there.
        """
        ...

    async def list_dir(self, ref: SandboxRef, path: str = ".") -> list[FileEntry]: ...

    async def scan_workspace(self, ref: SandboxRef) -> list[WorkspaceStat]:
        """Every path under the workspace (not the root itself), parents before children."""
        ...

    async def export_paths(self, ref: SandboxRef, paths: list[str]) -> bytes:
        """A tar archive of the given workspace paths (links kept as links)."""
        ...

    async def import_paths(self, ref: SandboxRef, archive: bytes) -> None:
        """Unpack a tar archive into the workspace, refusing anything that would leave it."""
        ...

    async def mount_bucket(self, ref: SandboxRef, mount: BucketMount) -> None:
        """Mount the bucket at `mount.path` for the sandbox's processes (idempotent); snapshots leave
        mounts out. SandboxUnavailable when this provider or machine cannot mount."""
        ...

    async def destroy(self, ref: SandboxRef) -> None:
        """Kill every process and delete the sandbox; destroying a gone sandbox is not an error."""
        ...
