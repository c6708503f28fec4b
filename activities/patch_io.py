"""Input and output of the apply_patch activity (pydantic, small: the patch text and a summary)."""

from __future__ import annotations

from pydantic import BaseModel

from sandbox_providers.base import SandboxRef


class ApplyPatchRequest(BaseModel):
    sandbox: SandboxRef
    patch: str


class ApplyPatchResult(BaseModel):
    # False when the patch was refused (nothing changed); `output` then says why
    ok: bool
    # the text for the model: Codex's "Success. Updated the following files: ..." or "error: ..."
    output: str
