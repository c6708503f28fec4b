"""Inputs and outputs of the sandbox activities (pydantic, small: references, never blobs)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from harness.tools import DEFAULT_MAX_OUTPUT_BYTES
from sandbox_providers.base import SandboxRef


class CreateSandboxRequest(BaseModel):
    provider: str
    sandbox_id: str
    network: bool = False
    env: dict[str, str] = Field(default_factory=dict)


class ExecRequest(BaseModel):
    sandbox: SandboxRef
    # stable across activity retries, so a retry attaches to the running process
    process_id: str
    cmd: str
    workdir: str | None = None
    timeout_s: float
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES


class ExecResult(BaseModel):
    exit_code: int | None
    timed_out: bool = False
    # why the command could not run at all (bad workdir, lost process); None when it ran
    error: str | None = None
    output: str = ""
    output_bytes: int = 0
    wall_time_s: float = 0.0

    def for_model(self) -> str:
        """The text the model gets back, in the shape Codex-trained models know."""
        if self.error is not None:
            return f"error: {self.error}"
        if self.timed_out:
            status = f"Process timed out and was killed after {self.wall_time_s:.1f} seconds"
        else:
            status = f"Process exited with code {self.exit_code}"
        return f"{status}\nWall time: {self.wall_time_s:.1f} seconds\nOutput:\n{self.output}"
