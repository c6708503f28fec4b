"""The apply_patch tool: Codex's patch format, as the model sees it and as the harness applies it.

Parsing lives in harness.patch_parse, planning in harness.patch_apply, both pure;
the sandbox activity (activities.patch) and `apply_patch_to_directory` do the I/O.

Atomicity: every new file content is computed in memory from the files as they
are before anything is written, so a patch that fails to parse or to match
changes nothing. The writes then happen in the patch's order (a move writes the
new path, then removes the old one); if one fails with an I/O error, the files
already written are restored from their originals (best effort; directories
created on the way stay). So a patch applies all or nothing.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from harness.patch_apply import (
    DEFAULT_FILE_MODE,
    Directory,
    File,
    FileChange,
    FileState,
    Missing,
    RemoveFile,
    WriteFile,
    already_applied,
    plan_changes,
    render_summary,
    rollback_changes,
    write_failed,
)
from harness.patch_directory import apply_patch_to_directory
from harness.patch_parse import (
    AddFile,
    DeleteFile,
    Hunk,
    Patch,
    PatchError,
    UpdateFile,
    parse_patch,
)

__all__ = [
    "APPLY_PATCH_DESCRIPTION",
    "APPLY_PATCH_FREEFORM_DESCRIPTION",
    "APPLY_PATCH_LARK_GRAMMAR",
    "DEFAULT_FILE_MODE",
    "AddFile",
    "ApplyPatchArgs",
    "DeleteFile",
    "Directory",
    "File",
    "FileChange",
    "FileState",
    "Hunk",
    "Missing",
    "Patch",
    "PatchError",
    "RemoveFile",
    "UpdateFile",
    "WriteFile",
    "already_applied",
    "apply_patch_to_directory",
    "parse_patch",
    "plan_changes",
    "render_summary",
    "rollback_changes",
    "write_failed",
]

APPLY_PATCH_DESCRIPTION = """\
Use the `apply_patch` tool to edit files.
Your patch language is a stripped-down, file-oriented diff format designed to be easy to parse and \
safe to apply. You can think of it as a high-level envelope:

*** Begin Patch
[ one or more file sections ]
*** End Patch

Within that envelope, you get a sequence of file operations. You MUST include a header to specify \
the action you are taking. Each operation starts with one of three headers:

*** Add File: <path> - create a new file. Every following line is a + line (the initial contents).
*** Delete File: <path> - remove an existing file. Nothing follows.
*** Update File: <path> - patch an existing file in place (optionally with a rename).

An Update may be immediately followed by *** Move to: <new path> if you want to rename the file. \
Then one or more hunks, each introduced by @@ (optionally followed by a line of the file, such as a \
class or function definition, that comes before the change). Within a hunk each line starts with \
" " (context, unchanged), "-" (removed) or "+" (added). Show about 3 lines of context above and below \
each change; when that does not identify the place uniquely, use @@ lines to jump to the right class \
or function first (several @@ lines may follow each other). End a hunk that must match the end of \
the file with *** End of File.

For example:

*** Begin Patch
*** Add File: hello.txt
+Hello world
*** Update File: src/app.py
*** Move to: src/main.py
@@ def greet():
-print("Hi")
+print("Hello, world!")
*** Delete File: obsolete.txt
*** End Patch

It is important to remember:
- You must include a header with your intended action (Add/Delete/Update).
- You must prefix new lines with `+` even when creating a new file.
- File references can only be relative to the workspace, NEVER ABSOLUTE.
- The patch applies all or nothing: if any part fails, no file is changed."""

APPLY_PATCH_FREEFORM_DESCRIPTION = (
    "Use the `apply_patch` tool to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON."
)

APPLY_PATCH_LARK_GRAMMAR = r"""start: begin_patch hunk+ end_patch
begin_patch: "*** Begin Patch" LF
end_patch: "*** End Patch" LF?

hunk: add_hunk | delete_hunk | update_hunk
add_hunk: "*** Add File: " filename LF add_line+
delete_hunk: "*** Delete File: " filename LF
update_hunk: "*** Update File: " filename LF change_move? change?

filename: /(.+)/
add_line: "+" /(.*)/ LF -> line

change_move: "*** Move to: " filename LF
change: (change_context | change_line)+ eof_line?
change_context: ("@@" | "@@ " /(.+)/) LF
change_line: ("+" | "-" | " ") /(.*)/ LF
eof_line: "*** End of File" LF

%import common.LF
"""


class ApplyPatchArgs(BaseModel):
    """Arguments of `apply_patch` as the model sends them (the JSON function-tool form)."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(
        min_length=1,
        description="The entire patch, from '*** Begin Patch' to '*** End Patch'.",
    )
