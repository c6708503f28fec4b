"""apply_patch: Codex's patch format applied to a sandbox workspace, all or nothing.

The patch is parsed and every file it touches is read through the provider
(whose file layer refuses paths and links that leave the workspace); all new
contents are computed in memory, so a patch that does not apply changes
nothing and comes back to the model as `ok=False` with the reason. Then the
writes and removals happen in order; if one fails, the ones done are undone.
An updated file keeps its mode; a moved file carries it to its new path.

Retries: the activity is retried only on infrastructure errors (a worker died,
the provider failed). A retry re-reads the workspace; if the first attempt
finished writing but never reported back, the patch no longer applies, and the
retry checks instead whether the files already hold its result (added files
with their content, deleted ones gone, every hunk's new lines in place): then
it reports the same success. A first attempt killed halfway through its writes
leaves a mix that neither check accepts; the model gets the error and a hint to
look at the files. No marker is ever written into the workspace.
"""

from __future__ import annotations

import structlog
from temporalio import activity

from activities.patch_io import ApplyPatchRequest, ApplyPatchResult
from activities.providers import ProviderActivities, sandbox_gone
from harness.apply_patch import (
    DEFAULT_FILE_MODE,
    Directory,
    File,
    FileChange,
    FileState,
    Missing,
    Patch,
    PatchError,
    WriteFile,
    already_applied,
    parse_patch,
    plan_changes,
    render_summary,
    rollback_changes,
    write_failed,
)
from sandbox_providers.base import SandboxGone, SandboxPathError, SandboxProvider, SandboxRef

logger = structlog.get_logger(__name__)

_RETRY_HINT = (
    " (an earlier attempt of this call was interrupted and may have changed some files; "
    "read them before patching again)"
)


class PatchActivities(ProviderActivities):
    @activity.defn(name="apply_patch")
    async def apply_patch(self, request: ApplyPatchRequest) -> ApplyPatchResult:
        info = activity.info()
        log = logger.bind(
            workflow_id=info.workflow_id, sandbox_id=request.sandbox.sandbox_id, attempt=info.attempt
        )
        files = _SandboxFiles(self._provider(request.sandbox.provider), request.sandbox)
        try:
            patch = parse_patch(request.patch)
            originals = {path: await files.state(patch, path) for path in patch.paths_to_read()}
            try:
                changes = plan_changes(patch, originals)
            except PatchError as error:
                if info.attempt > 1 and already_applied(patch, originals):
                    log.info("patch.already_applied")
                    return ApplyPatchResult(ok=True, output=render_summary(patch))
                if info.attempt > 1:
                    raise PatchError(f"{error}{_RETRY_HINT}") from None
                raise
            await files.commit(patch, changes, originals)
        except PatchError as error:
            log.info("patch.refused", error=str(error))
            return ApplyPatchResult(ok=False, output=f"error: {error}")
        except SandboxGone as error:
            raise sandbox_gone(error) from None
        log.info("patch.applied", changes=len(changes))
        return ApplyPatchResult(ok=True, output=render_summary(patch))


class _SandboxFiles:
    """The files of one sandbox, as the patch engine sees them."""

    def __init__(self, provider: SandboxProvider, ref: SandboxRef) -> None:
        self.provider = provider
        self.ref = ref
        self._modes: dict[str, dict[str, int]] = {}

    async def state(self, patch: Patch, path: str) -> FileState:
        try:
            data = await self.provider.read_file(self.ref, path)
        except (FileNotFoundError, NotADirectoryError):
            return Missing()
        except IsADirectoryError:
            return Directory()
        except SandboxPathError as error:
            raise PatchError(f"line {patch.line_of(path)}: cannot read {path}: {error}") from None
        return File(data, await self._mode(path))

    async def _mode(self, path: str) -> int:
        """The file's permission bits (those of a symlink's target are not looked up: 0o644)."""
        parent = path.rpartition("/")[0] or "."
        if parent not in self._modes:
            try:
                entries = await self.provider.list_dir(self.ref, parent)
            except (OSError, SandboxPathError):
                entries = []
            self._modes[parent] = {entry.path: entry.mode for entry in entries if entry.kind == "file"}
        return self._modes[parent].get(path, DEFAULT_FILE_MODE)

    async def commit(self, patch: Patch, changes: list[FileChange], originals: dict[str, FileState]) -> None:
        """Perform `changes` in order; on a failure undo those done and raise PatchError."""
        done: list[FileChange] = []
        for change in changes:
            try:
                await self._perform(change)
            except (OSError, SandboxPathError) as error:
                failures = await self._undo([*done, change], originals)
                raise write_failed(patch, change, error, failures) from None
            done.append(change)

    async def _undo(self, done: list[FileChange], originals: dict[str, FileState]) -> list[str]:
        failures: list[str] = []
        for undo in rollback_changes(done, originals):
            try:
                await self._perform(undo)
            except (FileNotFoundError, NotADirectoryError):
                continue  # the failed write never created it
            except (OSError, SandboxPathError) as error:
                failures.append(f"{undo.path}: {error}")
        return failures

    async def _perform(self, change: FileChange) -> None:
        if isinstance(change, WriteFile):
            await self.provider.write_file(self.ref, change.path, change.data, change.mode)
        else:
            await self.provider.delete_file(self.ref, change.path)
