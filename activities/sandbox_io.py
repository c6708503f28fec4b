"""Inputs and outputs of the sandbox activities (pydantic, small: references, never blobs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from harness.conversation import ImageInput
from harness.manifest import S3MountEntry
from sandbox_providers.base import SandboxRef


class CreateSandboxRequest(BaseModel):
    provider: str
    sandbox_id: str
    network: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


class MountRequest(BaseModel):
    """Mount a manifest's bucket into a sandbox; the keys are looked up on the worker that mounts."""

    sandbox: SandboxRef
    mount: S3MountEntry


class ExecRequest(BaseModel):
    """Start a command (or attach to it, on a retry) and wait up to the yield time."""

    sandbox: SandboxRef
    # stable across activity retries, so a retry attaches to the running process
    process_id: str
    cmd: str
    workdir: str | None = None
    tty: bool = False
    yield_time_ms: int
    max_output_bytes: int


class WriteStdinRequest(BaseModel):
    """Feed a running command (empty `chars` only polls) and collect its new output."""

    sandbox: SandboxRef
    process_id: str
    chars: str = ""
    # output before this byte was returned by earlier calls
    offset: int = 0
    yield_time_ms: int
    max_output_bytes: int


class ExecOutput(BaseModel):
    """What a command produced during one exec_command or write_stdin call."""

    # why the call could not run at all (bad workdir, too many processes); None when it ran
    error: str | None = None
    running: bool = False
    exit_code: int | None = None
    output: str = ""
    # bytes the command wrote during this call, before any truncation
    original_bytes: int = 0
    # where the next read of this process starts
    next_offset: int = 0
    wall_time_s: float = 0.0

    def for_model(self, session_id: int | None) -> str:
        """The text the model gets back, in the shape Codex-trained models know."""
        if self.error is not None:
            return f"error: {self.error}"
        lines = [f"Wall time: {self.wall_time_s:.1f} seconds"]
        if self.running:
            lines.append(f"Process running with session ID {session_id}")
        else:
            lines.append(f"Process exited with code {self.exit_code}")
        lines.append(f"Original token count: {(self.original_bytes + 3) // 4}")
        lines.append("Output:")
        lines.append(self.output)
        return "\n".join(lines)


class ViewImageRequest(BaseModel):
    sandbox: SandboxRef
    path: str


class ViewImageResult(BaseModel):
    error: str | None = None
    # what was done to fit the image, e.g. "downscaled from 4000x3000 to 2048x1536 image/jpeg"
    note: str = ""
    image: ImageInput | None = None
