"""Parsing of the apply_patch format (Codex's): text in, a checked `Patch` out, no I/O.

    *** Begin Patch
    *** Add File: path          then lines each starting with "+"
    *** Delete File: path
    *** Update File: path
    *** Move to: new/path       optional, right after the Update header
    @@ optional anchor          a hunk: lines starting with " " (context), "-" or "+"
    *** End of File             optional: the hunk must match the end of the file
    *** End Patch

Lenient where models slip: marker lines may be padded with whitespace; the whole
patch may be wrapped in a heredoc (`<<'EOF'` ... `EOF`, also `apply_patch <<'EOF'`);
the first hunk of an Update may omit `@@`; an empty line inside a hunk is an empty
context line; a unified-diff `@@ -1,3 +1,4 @@` header counts as a bare `@@`; CRLF
line endings in the patch text itself are read as LF. Once a hunk has started, a
line that starts with a space is always a context line (a file may hold lines
like "*** x" or "@@ y"), so a marker padded on the left is recognised only
between hunks.

Every error is a PatchError naming the line (1-based, in the text as sent).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal, cast

BEGIN_PATCH = "*** Begin Patch"
END_PATCH = "*** End Patch"
END_OF_FILE = "*** End of File"

_HEADER = re.compile(r"^\*\*\*\s*(Add File|Delete File|Update File|Move to)\s*:\s*(.*)$")
_HEREDOC_START = re.compile(r"^(?:apply_patch\s+)?<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1$")
# "@@ -12,7 +12,8 @@ def f():" from a unified diff: line numbers the format does not use
_UNIFIED_RANGE = re.compile(r"^-\d+(?:,\d+)? \+\d+(?:,\d+)? @@")

HunkLineKind = Literal[" ", "-", "+"]
_HUNK_PREFIXES = (" ", "-", "+")


class PatchError(Exception):
    """A patch that cannot be applied; the message says what to fix, for the model."""


def quoted(text: str) -> str:
    """A line of text as it appears in error messages: in double quotes, escapes visible."""
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True)
class HunkLine:
    kind: HunkLineKind
    text: str
    line: int


@dataclass(frozen=True)
class Anchor:
    """A line to find (searching forward) before the hunk's own lines are looked for."""

    text: str
    line: int


@dataclass(frozen=True)
class Hunk:
    anchors: tuple[Anchor, ...]
    lines: tuple[HunkLine, ...]
    end_of_file: bool
    line: int

    @property
    def old_lines(self) -> list[HunkLine]:
        """What the hunk expects in the file: its context and removed lines, in order."""
        return [line for line in self.lines if line.kind != "+"]

    @property
    def new_lines(self) -> list[HunkLine]:
        """What the hunk leaves in the file: its context and added lines, in order."""
        return [line for line in self.lines if line.kind != "-"]


@dataclass(frozen=True)
class AddFile:
    path: str
    lines: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class DeleteFile:
    path: str
    line: int


@dataclass(frozen=True)
class UpdateFile:
    path: str
    move_to: str | None
    hunks: tuple[Hunk, ...]
    line: int
    move_line: int | None = None


FileOperation = AddFile | DeleteFile | UpdateFile


@dataclass(frozen=True)
class Patch:
    operations: tuple[FileOperation, ...]

    def paths_to_read(self) -> list[str]:
        """Every path the patch touches, in order: what the applier must read first."""
        paths: list[str] = []
        for op in self.operations:
            paths.append(op.path)
            if isinstance(op, UpdateFile) and op.move_to is not None:
                paths.append(op.move_to)
        return paths

    def line_of(self, path: str) -> int:
        """The patch line that names `path` (its header, or its Move to line)."""
        for op in self.operations:
            if op.path == path:
                return op.line
            if isinstance(op, UpdateFile) and op.move_to == path and op.move_line is not None:
                return op.move_line
        raise KeyError(path)


def check_path(raw: str, line: int) -> str:
    """The workspace-relative path `raw` normalised ("a//b/./c" -> "a/b/c"), or PatchError."""
    if "\0" in raw:
        raise PatchError(f"line {line}: the path {quoted(raw)} contains a NUL byte")
    if raw.startswith("/"):
        raise PatchError(
            f"line {line}: the path {quoted(raw)} is absolute; give a path relative to the workspace"
        )
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PatchError(
            f"line {line}: the path {quoted(raw)} contains '..'; paths must stay inside the workspace"
        )
    if not parts:
        raise PatchError(f"line {line}: a file header without a file path")
    return "/".join(parts)


def parse_patch(text: str) -> Patch:
    """The patch in `text`, checked; PatchError naming the line of the first problem."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    first, last = _content_bounds(lines, 0, len(lines))
    if first > last:
        raise PatchError("the patch is empty; send '*** Begin Patch', the file sections, '*** End Patch'")
    first, last = _unwrap_heredoc(lines, first, last)
    if lines[first].strip() != BEGIN_PATCH:
        raise PatchError(f"line {first + 1}: the patch must start with '{BEGIN_PATCH}'")
    if first == last or lines[last].strip() != END_PATCH:
        raise PatchError(f"line {last + 1}: the patch must end with '{END_PATCH}'")
    operations = _Parser(lines, first + 1, last).parse()
    if not operations:
        raise PatchError(f"line {last + 1}: the patch changes no files")
    _refuse_repeated_paths(operations)
    return Patch(tuple(operations))


def _content_bounds(lines: list[str], start: int, stop: int) -> tuple[int, int]:
    """Indexes of the first and last non-blank lines in lines[start:stop] (first > last if none)."""
    first, last = start, stop - 1
    while first <= last and not lines[first].strip():
        first += 1
    while last >= first and not lines[last].strip():
        last -= 1
    return first, last


def _unwrap_heredoc(lines: list[str], first: int, last: int) -> tuple[int, int]:
    """The bounds inside a heredoc wrapper (`<<'EOF'` ... `EOF`), or the bounds unchanged."""
    match = _HEREDOC_START.match(lines[first].strip())
    if match is None:
        return first, last
    delimiter = match.group(2)
    if first == last or lines[last].strip() != delimiter:
        raise PatchError(
            f"line {first + 1}: the heredoc started here is not closed by a last line {quoted(delimiter)}"
        )
    inner_first, inner_last = _content_bounds(lines, first + 1, last)
    if inner_first > inner_last:
        raise PatchError(f"line {first + 1}: the heredoc holds no patch")
    return inner_first, inner_last


def _refuse_repeated_paths(operations: list[FileOperation]) -> None:
    seen: dict[str, int] = {}
    for op in operations:
        named = [(op.path, op.line)]
        if isinstance(op, UpdateFile) and op.move_to is not None and op.move_line is not None:
            named.append((op.move_to, op.move_line))
        for path, line in named:
            if path in seen:
                raise PatchError(
                    f"line {line}: {path} appears twice in the patch (first on line {seen[path]}); "
                    "put all the changes to one file in one section"
                )
            seen[path] = line


class _Parser:
    """Reads the file sections between the Begin and End markers (lines[start:stop])."""

    def __init__(self, lines: list[str], start: int, stop: int) -> None:
        self.lines = lines
        self.index = start
        self.stop = stop

    def parse(self) -> list[FileOperation]:
        operations: list[FileOperation] = []
        while self.index < self.stop:
            raw = self.lines[self.index]
            stripped = raw.strip()
            number = self.index + 1
            if not stripped:
                self.index += 1
                continue
            header = _HEADER.match(stripped)
            if header is None:
                raise PatchError(f"line {number}: {_not_a_header(stripped)}")
            kind, raw_path = header.group(1), header.group(2).strip()
            if kind == "Move to":
                raise PatchError(f"line {number}: '*** Move to:' must come right after '*** Update File:'")
            path = check_path(raw_path, number)
            self.index += 1
            if kind == "Add File":
                operations.append(AddFile(path, self._add_lines(), number))
            elif kind == "Delete File":
                operations.append(DeleteFile(path, number))
            else:
                operations.append(self._update(path, number))
        return operations

    def _add_lines(self) -> tuple[str, ...]:
        content: list[str] = []
        while self.index < self.stop:
            raw = self.lines[self.index]
            if raw.startswith("+"):
                content.append(raw[1:])
                self.index += 1
                continue
            if not raw.strip():
                # a blank line between "+" lines is an empty line the model forgot to prefix
                following = self.index
                while following < self.stop and not self.lines[following].strip():
                    following += 1
                if following < self.stop and self.lines[following].startswith("+"):
                    content.extend([""] * (following - self.index))
                    self.index = following
                    continue
            break
        return tuple(content)

    def _update(self, path: str, header_line: int) -> UpdateFile:
        move_to, move_line = None, None
        if self.index < self.stop:
            move = _HEADER.match(self.lines[self.index].strip())
            if move is not None and move.group(1) == "Move to":
                move_line = self.index + 1
                move_to = check_path(move.group(2).strip(), move_line)
                self.index += 1
        if move_to == path:
            move_to, move_line = None, None
        hunks = _HunkReader(self, path).read()
        if not hunks and move_to is None:
            raise PatchError(f"line {header_line}: '*** Update File: {path}' has no hunks")
        return UpdateFile(path, move_to, tuple(hunks), header_line, move_line)


class _HunkReader:
    """Reads the hunks of one Update section, leaving the parser on the next header."""

    def __init__(self, parser: _Parser, path: str) -> None:
        self.parser = parser
        self.path = path
        self.hunks: list[Hunk] = []
        self.anchors: list[Anchor] = []
        self.body: list[HunkLine] = []
        # the line of the current hunk's first `@@` (or first line), None between hunks
        self.opened_at: int | None = None

    def read(self) -> list[Hunk]:
        parser = self.parser
        while parser.index < parser.stop:
            raw = parser.lines[parser.index]
            stripped = raw.strip()
            number = parser.index + 1
            if self.opened_at is not None and raw[:1] in _HUNK_PREFIXES:
                self.body.append(_hunk_line(raw, number))
            elif stripped.startswith("@@"):
                self._anchor(stripped[2:].removeprefix(" "), number)
            elif stripped == END_OF_FILE:
                if not self.body:
                    raise PatchError(f"line {number}: '{END_OF_FILE}' must follow the lines of a hunk")
                self._close(end_of_file=True)
            elif stripped.startswith("***"):
                return self._finish()
            elif raw[:1] in _HUNK_PREFIXES or (self.opened_at is not None and not stripped):
                self._open_without_header(number)
                self.body.append(_hunk_line(raw, number))
            elif stripped:
                raise PatchError(
                    f"line {number}: {quoted(raw)} is not a hunk line in the update of {self.path}; "
                    "hunk lines start with ' ' (context), '-' (removed) or '+' (added), "
                    "and a hunk starts with '@@'"
                )
            parser.index += 1
        return self._finish()

    def _anchor(self, text: str, number: int) -> None:
        """A `@@` line: it opens a hunk, or adds an anchor to the hunk it opened."""
        self._close()
        if self.opened_at is None:
            self.opened_at = number
        if text.strip() and not _UNIFIED_RANGE.match(text.strip()):
            self.anchors.append(Anchor(text, number))

    def _open_without_header(self, number: int) -> None:
        if self.opened_at is None:
            if self.hunks:
                raise PatchError(
                    f"line {number}: a hunk after the first one must start with '@@' (in {self.path})"
                )
            self.opened_at = number

    def _close(self, end_of_file: bool = False) -> None:
        if not self.body:
            return
        assert self.opened_at is not None
        self.hunks.append(Hunk(tuple(self.anchors), tuple(self.body), end_of_file, self.opened_at))
        self.anchors, self.body, self.opened_at = [], [], None

    def _finish(self) -> list[Hunk]:
        if self.opened_at is not None and not self.body:
            raise PatchError(f"line {self.opened_at}: the hunk starting here has no lines (in {self.path})")
        self._close()
        return self.hunks


def _hunk_line(raw: str, number: int) -> HunkLine:
    """A line inside a hunk; a blank one is an empty context line."""
    if not raw.strip():
        return HunkLine(" ", "", number)
    return HunkLine(cast(HunkLineKind, raw[0]), raw[1:], number)


def _not_a_header(stripped: str) -> str:
    if stripped == END_PATCH:
        return f"'{END_PATCH}' before the end of the patch; nothing may follow it"
    if stripped == BEGIN_PATCH:
        return f"a second '{BEGIN_PATCH}'; send one patch per call"
    if stripped == END_OF_FILE:
        return f"'{END_OF_FILE}' outside an update hunk"
    expected = "expected '*** Add File: <path>', '*** Delete File: <path>' or '*** Update File: <path>'"
    if stripped.startswith("***"):
        return f"unknown header {quoted(stripped)}; {expected}"
    return f"{expected}, got {quoted(stripped)}"
