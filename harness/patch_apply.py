"""Planning a parsed patch against the files it touches: pure, no I/O.

The caller reads every path of `Patch.paths_to_read()` into a FileState, gets
the whole list of writes and removals from `plan_changes` (or a PatchError, in
which case nothing may be written), then performs them in order; when one fails,
`rollback_changes` says how to put back the ones already done.

Rules, beyond the format itself (see harness.patch_parse):

- Hunks are found in order, each searching forward from where the previous one
  ended, after its `@@` anchors (each anchor a single line, also searched
  forward). Lines are compared exactly first, then ignoring trailing
  whitespace, then ignoring surrounding whitespace, then after mapping Unicode
  dashes, quotes and spaces to ASCII. A hunk whose lines are not found is
  retried without its trailing empty context lines. `*** End of File` makes
  the hunk match only at the end of the file.
- A hunk with no context or removed lines inserts its lines right after its
  last anchor, or at the end of the file when it has none.
- Context lines keep the file's own text (a match ignoring whitespace does not
  rewrite them); added lines take the file's line ending (CRLF when its first
  line ends in CRLF, else LF); untouched lines keep theirs byte for byte, and a
  UTF-8 byte order mark stays. Bytes that are not UTF-8 survive unchanged.
- Final newline: an updated file ends with a newline exactly when it did before
  (an empty file counts as ending with one), except that a hunk marked
  `*** End of File` always leaves a final newline. A new file's lines each end
  with LF.
- Add over an existing file replaces it, keeping its mode; Move onto an
  existing file replaces it and carries the moved file's mode. Update or Delete
  of a missing file, and any of them on a directory, are errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from harness.patch_parse import (
    AddFile,
    DeleteFile,
    Hunk,
    HunkLine,
    Patch,
    PatchError,
    UpdateFile,
    quoted,
)

DEFAULT_FILE_MODE = 0o644
_BOM = "\ufeff"

_TO_ASCII = str.maketrans(
    {
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
        **dict.fromkeys("\u2018\u2019\u201a\u201b", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f", '"'),
        **dict.fromkeys(
            "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
            "\u202f\u205f\u3000",
            " ",
        ),
    }
)


def _ascii_punctuation(text: str) -> str:
    return text.translate(_TO_ASCII).strip()


def _exact(text: str) -> str:
    return text


# from strictest to most lenient; each level accepts everything the previous one does
_MATCH_LEVELS: tuple[Callable[[str], str], ...] = (_exact, str.rstrip, str.strip, _ascii_punctuation)


# -- what the caller reads and performs -------------------------------------------------------------


@dataclass(frozen=True)
class Missing:
    """Nothing at that path."""


@dataclass(frozen=True)
class Directory:
    """A directory at that path."""


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int = DEFAULT_FILE_MODE


FileState = Missing | Directory | File


@dataclass(frozen=True)
class WriteFile:
    """Create or replace the file at `path` (creating its parent directories)."""

    path: str
    data: bytes
    mode: int = DEFAULT_FILE_MODE


@dataclass(frozen=True)
class RemoveFile:
    path: str


FileChange = WriteFile | RemoveFile


def plan_changes(patch: Patch, originals: Mapping[str, FileState]) -> list[FileChange]:
    """Every change the patch makes, in order, or PatchError before anything is written."""
    changes: list[FileChange] = []
    for op in patch.operations:
        state = originals[op.path]
        if isinstance(op, AddFile):
            if isinstance(state, Directory):
                raise PatchError(f"line {op.line}: cannot add {op.path}: it is a directory")
            mode = state.mode if isinstance(state, File) else DEFAULT_FILE_MODE
            changes.append(WriteFile(op.path, _added_content(op), mode))
        elif isinstance(op, DeleteFile):
            _existing_file(state, "delete", op.path, op.line)
            changes.append(RemoveFile(op.path))
        else:
            original = _existing_file(state, "update", op.path, op.line)
            data = update_content(original.data, op)
            if op.move_to is None:
                changes.append(WriteFile(op.path, data, original.mode))
                continue
            if isinstance(originals[op.move_to], Directory):
                raise PatchError(f"line {op.move_line}: cannot move {op.path} to {op.move_to}: a directory")
            changes += [WriteFile(op.move_to, data, original.mode), RemoveFile(op.path)]
    return changes


def rollback_changes(applied: Iterable[FileChange], originals: Mapping[str, FileState]) -> list[FileChange]:
    """The changes that put back what `applied` (done in order) changed, to be done in order."""
    undo: list[FileChange] = []
    for change in reversed(list(applied)):
        before = originals[change.path]
        undo.append(
            WriteFile(change.path, before.data, before.mode)
            if isinstance(before, File)
            else RemoveFile(change.path)
        )
    return undo


def render_summary(patch: Patch) -> str:
    """What the model reads after a patch applied, as Codex prints it."""
    added = [op.path for op in patch.operations if isinstance(op, AddFile)]
    modified = [op.move_to or op.path for op in patch.operations if isinstance(op, UpdateFile)]
    deleted = [op.path for op in patch.operations if isinstance(op, DeleteFile)]
    lines = ["Success. Updated the following files:"]
    lines += [f"A {path}" for path in added] + [f"M {path}" for path in modified]
    lines += [f"D {path}" for path in deleted]
    return "\n".join(lines) + "\n"


def already_applied(patch: Patch, current: Mapping[str, FileState]) -> bool:
    """True when the files already look as the patch would leave them.

    For a retried call whose first attempt wrote everything but never reported
    back: added files hold their content, deleted and moved-away files are gone,
    and each updated file holds every hunk's new lines, in order.
    """
    for op in patch.operations:
        state = current[op.path]
        if isinstance(op, AddFile):
            try:
                if not (isinstance(state, File) and state.data == _added_content(op)):
                    return False
            except PatchError:
                return False
        elif isinstance(op, DeleteFile):
            if not isinstance(state, Missing):
                return False
        else:
            if op.move_to is not None:
                if not isinstance(state, Missing):
                    return False
                state = current[op.move_to]
            if not isinstance(state, File) or not _holds_new_lines(state.data, op.hunks):
                return False
    return True


def write_failed(
    patch: Patch, change: FileChange, error: Exception, restore_failures: list[str]
) -> PatchError:
    """The error for a write or removal that failed after the patch was checked."""
    verb = "write" if isinstance(change, WriteFile) else "delete"
    message = f"line {patch.line_of(change.path)}: could not {verb} {change.path}: {error}"
    if restore_failures:
        return PatchError(
            f"{message}; restoring the files already changed failed too: {'; '.join(restore_failures)}"
        )
    return PatchError(f"{message}; no file was changed")


# -- updating one file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    text: str
    # "\n", "\r\n", or "" for a last line without a newline
    eol: str


class _Text:
    """A file's content as lines, with what is needed to write it back faithfully."""

    def __init__(self, data: bytes) -> None:
        text = data.decode("utf-8", "surrogateescape")
        self.bom = text.startswith(_BOM)
        parts = text.removeprefix(_BOM).split("\n")
        self.ends_with_newline = parts[-1] == ""
        if self.ends_with_newline:
            parts.pop()
        self.lines = [
            _Line(part[:-1], "\r\n") if part.endswith("\r") else _Line(part, "\n") for part in parts
        ]
        if not self.ends_with_newline:
            self.lines[-1] = _Line(parts[-1], "")
        self.eol = next((line.eol for line in self.lines if line.eol), "\n")
        self._keys: dict[int, list[str]] = {}

    def keys(self, level: int) -> list[str]:
        if level not in self._keys:
            self._keys[level] = [_MATCH_LEVELS[level](line.text) for line in self.lines]
        return self._keys[level]

    def seek(self, pattern: Sequence[str], start: int, at_end: bool = False) -> int | None:
        """Where `pattern` first occurs at or after `start` (at the very end if `at_end`)."""
        count, total = len(pattern), len(self.lines)
        if count == 0:
            return total if at_end else min(start, total)
        last_start = total - count
        if last_start < start:
            return None
        candidates = range(last_start, last_start + 1) if at_end else range(start, last_start + 1)
        for level, normalise in enumerate(_MATCH_LEVELS):
            keys = self.keys(level)
            wanted = [normalise(text) for text in pattern]
            for index in candidates:
                if keys[index] == wanted[0] and keys[index : index + count] == wanted:
                    return index
        return None

    def first_missing(self, pattern: Sequence[HunkLine], start: int) -> HunkLine:
        """The first line of `pattern` that no match from `start` gets to, even leniently."""
        keys = self.keys(len(_MATCH_LEVELS) - 1)
        wanted = [_MATCH_LEVELS[-1](line.text) for line in pattern]
        alive = [i for i in range(start, len(keys)) if keys[i] == wanted[0]]
        for offset, line in enumerate(pattern):
            alive = [i for i in alive if i + offset < len(keys) and keys[i + offset] == wanted[offset]]
            if not alive:
                return line
        return pattern[-1]

    def encode(self, lines: list[_Line], final_newline: bool, path: str) -> bytes:
        """`lines` as bytes: the old last line, if no longer last, gets a line ending."""
        endings = [line.eol or self.eol for line in lines]
        if endings and not final_newline:
            endings[-1] = ""
        body = "".join(line.text + ending for line, ending in zip(lines, endings, strict=True))
        return _encode(path, (_BOM if self.bom else "") + body)


def update_content(data: bytes, op: UpdateFile) -> bytes:
    """The new content of the file `op` updates, from its current content."""
    text = _Text(data)
    replacements: list[tuple[int, Hunk]] = []
    cursor = 0
    for hunk in op.hunks:
        start, hunk = _locate(text, hunk, cursor, op.path)
        replacements.append((start, hunk))
        cursor = start + len(hunk.old_lines)
    result: list[_Line] = []
    position = 0
    for start, hunk in replacements:
        result += text.lines[position:start]
        position = start
        for line in hunk.lines:
            if line.kind == "+":
                result.append(_Line(line.text, text.eol))
            else:
                if line.kind == " ":
                    result.append(text.lines[position])  # the file's own text, not the patch's
                position += 1
    result += text.lines[position:]
    final_newline = text.ends_with_newline or any(hunk.end_of_file for hunk in op.hunks)
    return text.encode(result, final_newline, op.move_to or op.path)


def _locate(text: _Text, hunk: Hunk, cursor: int, path: str) -> tuple[int, Hunk]:
    """Where `hunk` applies (at or after `cursor`), and the hunk as it applies there."""
    for anchor in hunk.anchors:
        found = text.seek([anchor.text], cursor)
        if found is None:
            raise PatchError(f"line {anchor.line}: anchor not found in {path}: {quoted(anchor.text)}")
        cursor = found + 1
    for candidate in _without_trailing_blank_context(hunk):
        old = [line.text for line in candidate.old_lines]
        if not old:
            at_end = candidate.end_of_file or not candidate.anchors
            return (len(text.lines) if at_end else cursor), candidate
        found = text.seek(old, cursor, at_end=candidate.end_of_file)
        if found is not None:
            return found, candidate
    old = [line.text for line in hunk.old_lines]
    if hunk.end_of_file and text.seek(old, cursor) is not None:
        raise PatchError(
            f"line {hunk.line}: the hunk marked '*** End of File' does not match the end of {path}"
        )
    if cursor > 0 and text.seek(old, 0) is not None:
        raise PatchError(
            f"line {hunk.line}: the hunk's lines are in {path} only before the previous hunk or anchor; "
            "hunks must come in the order of the file"
        )
    missing = text.first_missing(hunk.old_lines, cursor)
    raise PatchError(f"line {missing.line}: context not found in {path}: {quoted(missing.text)}")


def _without_trailing_blank_context(hunk: Hunk) -> Iterable[Hunk]:
    """The hunk, then (for the second chance models need) without its trailing empty context lines."""
    yield hunk
    lines = list(hunk.lines)
    while lines and lines[-1].kind == " " and not lines[-1].text.strip():
        lines.pop()
    if len(lines) < len(hunk.lines) and any(line.kind != " " for line in lines):
        yield Hunk(hunk.anchors, tuple(lines), hunk.end_of_file, hunk.line)


def _holds_new_lines(data: bytes, hunks: Sequence[Hunk]) -> bool:
    text = _Text(data)
    cursor = 0
    for hunk in hunks:
        for anchor in hunk.anchors:
            found = text.seek([anchor.text], cursor)
            if found is None:
                return False
            cursor = found + 1
        new = [line.text for line in hunk.new_lines]
        if not new and text.seek([line.text for line in hunk.old_lines], cursor) is not None:
            return False  # what it removes is still there
        found = text.seek(new, cursor, at_end=hunk.end_of_file)
        if found is None:
            return False
        cursor = found + len(new)
    return True


def _added_content(op: AddFile) -> bytes:
    return _encode(op.path, "".join(f"{text}\n" for text in op.lines))


def _existing_file(state: FileState, verb: str, path: str, line: int) -> File:
    if isinstance(state, Missing):
        raise PatchError(f"line {line}: cannot {verb} {path}: no such file")
    if isinstance(state, Directory):
        raise PatchError(f"line {line}: cannot {verb} {path}: it is a directory, not a file")
    return state


def _encode(path: str, text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise PatchError(f"the new content of {path} is not valid text (it holds lone surrogates)") from None
