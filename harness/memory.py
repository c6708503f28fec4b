"""An agent's long-term memory: a MEMORY.md per agent (and optional key), kept as numbered versions.

The memory lives on the trusted side, in the same object store as the snapshots. A run's end
merges the model's new lessons into it (`merge_lessons`) and writes a new version; the next run
gets the whole file in its workspace and a bounded summary in its instructions
(`memory_summary`). Every change, clearing included, is a new version: nothing is overwritten,
so any change is visible (`history`) and can be undone (`revert`).

Layout inside the object store:

    memory/<agent>/_/versions/00000001.json           the agent's memory without a key
    memory/<agent>/keys/<key>/versions/00000001.json  its memory for one user or project key

Each version is one JSON object holding its record and its whole text, so a version is
written in one atomic put and can never be half there.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

import structlog
from pydantic import BaseModel, Field, ValidationError, field_validator

from harness.object_store import ObjectMissing, ObjectStore, ObjectStoreError

log = structlog.get_logger(__name__)

MEMORY_MAX_BYTES = 16_000
SUMMARY_MAX_CHARS = 2_000
TITLE = "# Memory"
# where a run finds the whole file in its workspace (the summary's note points there)
WORKSPACE_PATH = "memory/MEMORY.md"
# room for the title, a little header and one lesson: below this no bound can be kept
MIN_MAX_BYTES = 64
# how many version numbers a write tries before it gives up on racing writers
WRITE_ATTEMPTS = 20

_VERSION_KEY = re.compile(r"versions/(\d{8,})\.json")
_BULLET = re.compile(r"[-*] ")
_NAME = r"^[A-Za-z0-9_.-]{%d,%d}$"


class MemoryVersionMissing(Exception):
    """That version of a memory was never written."""


class MemoryInvalid(Exception):
    """A stored version cannot be read back: corrupt, or not what its key says."""


class MemoryTooLarge(ValueError):
    """The text is over MEMORY_MAX_BYTES; `merge_lessons` keeps a merged memory under it."""


class MemoryScope(BaseModel):
    """Whose memory: an agent's, or its memory for one user or project (`key`)."""

    agent: str = Field(pattern=_NAME % (1, 64))
    key: str | None = Field(default=None, pattern=_NAME % (1, 128))

    @field_validator("agent", "key")
    @classmethod
    def _not_a_dot_path(cls, value: str | None) -> str | None:
        # both are object key segments, where "." and ".." would walk the tree
        if value in (".", ".."):
            raise ValueError(f"{value!r} is not a name")
        return value

    def prefix(self) -> str:
        # a keyless scope's segment "_" sits where a keyed scope has "keys", so no key can reach it
        if self.key is None:
            return f"memory/{self.agent}/_/"
        return f"memory/{self.agent}/keys/{self.key}/"

    def describe(self) -> str:
        return f"agent {self.agent!r}" + (f" (key {self.key!r})" if self.key is not None else "")


class MemoryVersion(BaseModel):
    version: int = Field(ge=1)
    created_at: float
    run_id: str | None = None
    # "lessons from run X", "cleared", "reverted to 3"
    reason: str
    # bytes of MEMORY.md
    size: int = Field(ge=0)
    lessons_added: int = Field(default=0, ge=0)


class _StoredVersion(BaseModel):
    record: MemoryVersion
    text: str
    # a token unique to the write: reading it back tells a writer whether a racing one replaced it
    writer: str


class MemoryStore:
    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def describe(self) -> str:
        return self.objects.describe()

    @staticmethod
    def _key(scope: MemoryScope, version: int) -> str:
        return f"{scope.prefix()}versions/{version:08d}.json"

    def _numbers(self, scope: MemoryScope) -> list[int]:
        """The scope's version numbers, ascending."""
        prefix = scope.prefix()
        numbers = []
        for stored in self.objects.list(f"{prefix}versions/"):
            match = _VERSION_KEY.fullmatch(stored.key.removeprefix(prefix))
            if match is not None:
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def _load(self, scope: MemoryScope, version: int) -> _StoredVersion:
        try:
            raw = self.objects.get(self._key(scope, version))
        except ObjectMissing:
            numbers = self._numbers(scope)
            known = f"the newest is version {numbers[-1]}" if numbers else "it has no versions"
            command = f"farline memory history {scope.agent}" + (f" --key {scope.key}" if scope.key else "")
            raise MemoryVersionMissing(
                f"the memory of {scope.describe()} has no version {version}: {known} (see `{command}`)"
            ) from None
        try:
            stored = _StoredVersion.model_validate_json(raw)
        except ValidationError as error:
            raise MemoryInvalid(
                f"version {version} of the memory of {scope.describe()} in {self.describe()} "
                f"is corrupt: {error}"
            ) from None
        if stored.record.version != version:
            raise MemoryInvalid(
                f"version {version} of the memory of {scope.describe()} in {self.describe()} "
                f"claims to be version {stored.record.version}"
            )
        return stored

    def read(self, scope: MemoryScope) -> str:
        """The current MEMORY.md: the newest version's text ("" when there is none)."""
        numbers = self._numbers(scope)
        return self._load(scope, numbers[-1]).text if numbers else ""

    def read_version(self, scope: MemoryScope, version: int) -> str:
        return self._load(scope, version).text

    def history(self, scope: MemoryScope) -> list[MemoryVersion]:
        """Every version's record, oldest first."""
        return [self._load(scope, number).record for number in self._numbers(scope)]

    def write(
        self, scope: MemoryScope, text: str, reason: str, run_id: str | None = None, lessons_added: int = 0
    ) -> MemoryVersion:
        """Store `text` as the scope's next version; older versions stay as they are."""
        size = len(text.encode())
        if size > MEMORY_MAX_BYTES:
            raise MemoryTooLarge(
                f"the memory of {scope.describe()} would be {size} bytes, "
                f"over the {MEMORY_MAX_BYTES} byte bound"
            )
        writer = secrets.token_hex(8)
        numbers = self._numbers(scope)
        number = numbers[-1] + 1 if numbers else 1
        # Neither the local directory nor S3 offers compare-and-swap (a put-if-absent), so two runs
        # ending at once could pick the same number. Skipping numbers that exist, then reading our
        # put back and moving on when a racing writer replaced it, keeps both versions except when
        # the other's put lands after we read ours back: then the later put wins that number.
        for _attempt in range(WRITE_ATTEMPTS):
            key = self._key(scope, number)
            if self.objects.exists(key):
                number += 1
                continue
            record = MemoryVersion(
                version=number,
                created_at=time.time(),
                run_id=run_id,
                reason=reason,
                size=size,
                lessons_added=lessons_added,
            )
            stored = _StoredVersion(record=record, text=text, writer=writer)
            self.objects.put(key, stored.model_dump_json().encode())
            if self._load(scope, number).writer == writer:
                log.info(
                    "memory.written",
                    agent=scope.agent,
                    key=scope.key,
                    version=number,
                    reason=reason,
                    run_id=run_id,
                    size=size,
                    lessons_added=lessons_added,
                )
                return record
            log.warning("memory.write_raced", agent=scope.agent, key=scope.key, version=number)
            number += 1
        raise ObjectStoreError(
            f"could not write the memory of {scope.describe()}: {WRITE_ATTEMPTS} version numbers "
            f"were taken by other writers in {self.describe()}"
        )

    def clear(self, scope: MemoryScope) -> MemoryVersion:
        """An empty new version: the old ones stay, so `revert` undoes it."""
        return self.write(scope, "", "cleared")

    def revert(self, scope: MemoryScope, version: int) -> MemoryVersion:
        """A new version holding what `version` held."""
        return self.write(scope, self.read_version(scope, version), f"reverted to {version}")


# -- the MEMORY.md format ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    # lines a person wrote that are not lessons, kept as they are
    header: list[str]
    # lesson texts, oldest first, without their "- "
    bullets: list[str]


def _parse(text: str) -> _Parsed:
    lines = text.splitlines()
    if lines and lines[0].strip() == TITLE:
        lines = lines[1:]
    header: list[str] = []
    bullets: list[str] = []
    for line in lines:
        if _BULLET.match(line):
            # an empty bullet carries nothing: it is not kept
            if line[2:].strip():
                bullets.append(line[2:].strip())
        else:
            header.append(line.rstrip())
    while header and not header[0]:
        header.pop(0)
    while header and not header[-1]:
        header.pop()
    return _Parsed(header=header, bullets=bullets)


def _render(header: list[str], bullets: list[str]) -> str:
    blocks = [TITLE]
    if header:
        blocks.append("\n".join(header))
    if bullets:
        blocks.append("\n".join(f"- {bullet}" for bullet in bullets))
    return "\n\n".join(blocks) + "\n"


def _normal_lesson(lesson: str) -> str:
    text = " ".join(lesson.split())
    if _BULLET.match(text):
        text = text[2:].strip()
    return text


def _dedup_key(lesson: str) -> str:
    return " ".join(lesson.split()).casefold()


def _truncate_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, "…" (3 bytes) included when it was cut."""
    if len(text.encode()) <= limit:
        return text
    return text.encode()[: max(limit - 3, 0)].decode(errors="ignore").rstrip() + "…"


def merge_lessons(existing: str, lessons: list[str], max_bytes: int = MEMORY_MAX_BYTES) -> tuple[str, int]:
    """`existing` with the new lessons appended as bullets, and how many were added.

    Lessons already there (ignoring case and whitespace) are skipped. Over `max_bytes`, the
    oldest lessons go first; lines a person wrote that are not lessons stay unless they alone
    are over the bound. With nothing to add, `existing` comes back unchanged.
    """
    if max_bytes < MIN_MAX_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}")
    parsed = _parse(existing)
    seen = {_dedup_key(bullet) for bullet in parsed.bullets}
    new: list[str] = []
    for lesson in lessons:
        text = _normal_lesson(lesson)
        if text and _dedup_key(text) not in seen:
            seen.add(_dedup_key(text))
            new.append(text)
    if not new:
        return existing, 0
    bullets = [*parsed.bullets, *new]
    first_new = len(parsed.bullets)
    while len(bullets) > 1 and len(_render(parsed.header, bullets).encode()) > max_bytes:
        bullets.pop(0)
        first_new = max(first_new - 1, 0)
    merged = _render(parsed.header, bullets)
    if len(merged.encode()) > max_bytes:
        # one lesson left and still too long: cut it to the room the header leaves
        room = max_bytes - len(_render(parsed.header, [""]).encode())
        if room >= len("…".encode()):
            bullets = [_truncate_bytes(bullets[0], room)]
        else:
            bullets, first_new = [], 0
        merged = _render(parsed.header, bullets)
    if len(merged.encode()) > max_bytes:
        # the person's notes alone are over the bound: the only case they are cut
        merged = _truncate_bytes(merged, max_bytes - 1) + "\n"
        bullets, first_new = [], 0
    added = len(bullets) - first_new
    dropped = len(parsed.bullets) + len(new) - len(bullets)
    if dropped:
        log.warning("memory.lessons_dropped", dropped=dropped, max_bytes=max_bytes)
    return merged, added


def _summary_note(older: int, notes_left_out: bool) -> str:
    parts = []
    if older:
        parts.append(f"{older} older lesson" + ("s" if older != 1 else ""))
    if notes_left_out:
        parts.append("notes")
    return f"({' and '.join(parts)} in {WORKSPACE_PATH})" if parts else ""


def _compose(note: str, header: list[str], bullets: list[str]) -> str:
    lines = [note] if note else []
    return "\n".join([*lines, *header, *(f"- {bullet}" for bullet in bullets)])


def memory_summary(text: str, max_chars: int = SUMMARY_MAX_CHARS) -> str:
    """What the instructions say of the memory: the newest lessons that fit in `max_chars`.

    A person's notes come first when they take at most half the room; a note at the top says
    what was left out and where the rest is.
    """
    parsed = _parse(text)
    if not parsed.header and not parsed.bullets:
        return ""
    header = parsed.header if len("\n".join(parsed.header)) <= max_chars // 2 else []
    notes_left_out = bool(parsed.header) and not header
    total = len(parsed.bullets)
    kept: list[str] = []
    for bullet in reversed(parsed.bullets):
        trial = [bullet, *kept]
        note = _summary_note(total - len(trial), notes_left_out)
        if len(_compose(note, header, trial)) > max_chars:
            break
        kept = trial
    if not kept and total:
        # even the newest lesson alone is too long: show as much of it as fits
        note = _summary_note(total - 1, notes_left_out)
        room = max_chars - len(_compose(note, header, [""]))
        if room > 1:
            newest = parsed.bullets[-1]
            kept = [newest if len(newest) <= room else newest[: room - 1].rstrip() + "…"]
    summary = _compose(_summary_note(total - len(kept), notes_left_out), header, kept)
    return summary[:max_chars]
