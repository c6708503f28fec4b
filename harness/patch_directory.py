"""apply_patch on a plain local directory (tests, benchmarks, tools run on the worker's own files).

Same rules as in a sandbox: paths stay under the root, and a symlink (anywhere on
the way, or the file itself) whose target leaves the root is refused. The check
resolves links with `os.path.realpath` just before each access, which is sound
for a directory nobody else is changing meanwhile; sandbox workspaces, which a
running process may change under us, go through the provider's own file layer.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from harness.patch_apply import (
    Directory,
    File,
    FileChange,
    FileState,
    Missing,
    WriteFile,
    plan_changes,
    render_summary,
    rollback_changes,
    write_failed,
)
from harness.patch_parse import Patch, PatchError, parse_patch


def apply_patch_to_directory(root: Path, text: str) -> str:
    """Apply the patch `text` to the files under `root`: all of it, or (PatchError) none of it."""
    patch = parse_patch(text)
    files = _DirectoryFiles(root, patch)
    originals = {path: files.state(path) for path in patch.paths_to_read()}
    changes = plan_changes(patch, originals)
    done: list[FileChange] = []
    for change in changes:
        try:
            files.perform(change)
        except (OSError, PatchError) as error:
            failures = []
            for undo in rollback_changes([*done, change], originals):
                try:
                    files.perform(undo)
                except (OSError, PatchError) as undo_error:
                    if not isinstance(undo_error, (FileNotFoundError, NotADirectoryError)):
                        failures.append(f"{undo.path}: {undo_error}")
            raise write_failed(patch, change, error, failures) from None
        done.append(change)
    return render_summary(patch)


class _DirectoryFiles:
    def __init__(self, root: Path, patch: Patch) -> None:
        self.root = Path(os.path.realpath(root))
        self.patch = patch

    def _inside(self, path: str, follow_last: bool) -> Path:
        """The real location of `path`, refusing one that leaves the root."""
        parent, _, name = path.rpartition("/")
        if follow_last:
            real = Path(os.path.realpath(self.root / path))
        else:
            real = Path(os.path.realpath(self.root / parent)) / name
        if real != self.root and self.root not in real.parents:
            raise PatchError(
                f"line {self.patch.line_of(path)}: {path} leads outside the workspace through a symlink; "
                "refusing it"
            )
        return real

    def state(self, path: str) -> FileState:
        real = self._inside(path, follow_last=True)
        try:
            st = os.stat(real)
            if stat.S_ISDIR(st.st_mode):
                return Directory()
            if not stat.S_ISREG(st.st_mode):
                raise PatchError(f"line {self.patch.line_of(path)}: {path} is not a regular file")
            return File(real.read_bytes(), stat.S_IMODE(st.st_mode))
        except (FileNotFoundError, NotADirectoryError):
            return Missing()
        except OSError as error:
            raise PatchError(f"line {self.patch.line_of(path)}: cannot read {path}: {error}") from None

    def perform(self, change: FileChange) -> None:
        if isinstance(change, WriteFile):
            real = self._inside(change.path, follow_last=True)
            real.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name[:100]}.", suffix=".patch")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(change.data)
                os.chmod(tmp, change.mode)
                os.replace(tmp, real)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            real = self._inside(change.path, follow_last=False)
            if real.is_dir() and not real.is_symlink():
                raise IsADirectoryError(f"{change.path} is a directory")
            real.unlink()
