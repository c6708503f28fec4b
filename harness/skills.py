"""Agent skills: where they come from, what a valid one is, and unpacking one safely.

A skill is a folder with a `SKILL.md` (YAML frontmatter between `---` lines, then
markdown instructions) and any scripts, templates or data it needs. The worker
fetches each skill (from its own disk, git, or a zip carried in the run's input)
and places it under `skills/<name>/` in the workspace; the model is told the
skills' names and descriptions and reads a SKILL.md when a task fits.

This module is the part with no I/O beyond a folder it is given: the source
models, the frontmatter rules of the Agent Skills specification, discovery of
the skill folders under a fetched root, and zip extraction that writes nothing
outside its destination. Every refusal is a SkillInvalid whose message starts
with the file it is about, so a run that fails to start says what to fix.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import io
import os
import re
import shutil
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from harness.source_paths import GitLocation, relative_path_problem

# the zip rides in the run's input (history): big skills belong in git or on the worker's disk
MAX_ZIP_BYTES = 10 * 1024 * 1024
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
MAX_ZIP_FILES = 10_000

MAX_NAME_CHARS = 64
MAX_DESCRIPTION_CHARS = 1024
MAX_COMPATIBILITY_CHARS = 500
FRONTMATTER_FIELDS = ("name", "description", "license", "compatibility", "metadata", "allowed-tools")
_NAME_CHARS = re.compile(r"[a-z0-9-]+")
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_COPY_CHUNK = 64 * 1024
# Python's zipfile reads other methods too, but their decoders fail with errors that cannot be told
# apart from the worker's own; every common zip tool writes one of these two
_COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}


class SkillInvalid(Exception):
    """A skill that breaks the specification or the harness's limits; the message names the file."""


class SkillFolderSource(BaseModel):
    """A folder on the worker's disk: one skill, or a folder of skills (allowed roots apply)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["folder"] = "folder"
    path: str = Field(description="An absolute path on the worker, under one of FARLINE_LOCAL_SOURCES.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/") or "\0" in path:
            raise ValueError(f"skill folder {path!r} must be an absolute path on the worker")
        return path


class SkillGitSource(GitLocation):
    """A git repository holding one skill at its top (or at `subpath`), or a folder of skills."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["git"] = "git"


class SkillZipSource(BaseModel):
    """A zip archive of one skill (SKILL.md at its top) or of skill folders, base64 in the run's input."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["zip"] = "zip"
    data: str = Field(description="The zip archive, base64-encoded (no line breaks: `base64 -w0`).")

    def archive(self) -> bytes:
        return base64.b64decode(self.data, validate=True)

    @model_validator(mode="after")
    def _decodable_and_small(self) -> SkillZipSource:
        try:
            size = len(self.archive())
        except (binascii.Error, ValueError):
            raise ValueError(
                "the skill zip's data is not valid base64 (encode it without line breaks: base64 -w0)"
            ) from None
        if size > MAX_ZIP_BYTES:
            raise ValueError(
                f"the skill zip is {size:,} bytes, over {MAX_ZIP_BYTES:,} (10 MiB): "
                "give a bigger skill as a git or folder source"
            )
        return self


SkillSource = Annotated[SkillFolderSource | SkillGitSource | SkillZipSource, Field(discriminator="kind")]


class SkillMetadata(BaseModel):
    """A skill's frontmatter, checked against the Agent Skills specification.

    The checks run here, not only in `parse_skill_md`, so metadata rebuilt from an activity's result
    holds to the same rules. Each check raises with the field and the rule in its message.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    description: str
    license: str | None = None
    compatibility: str | None = None
    metadata: dict[str, str] | None = None
    allowed_tools: str | list[str] | None = Field(default=None, alias="allowed-tools")

    @field_validator("name", "description", "license", "compatibility", mode="before")
    @classmethod
    def _a_string(cls, value: object, info: ValidationInfo) -> object:
        if value is None and info.field_name in ("name", "description"):
            raise ValueError(f"{info.field_name} has no value")
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{info.field_name} must be a string, not {_what(value)}{_quote_hint(value)}")
        return value

    @field_validator("name")
    @classmethod
    def _name_rules(cls, name: str) -> str:
        if not name:
            raise ValueError("name is empty")
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(f"name is {len(name)} characters long; at most {MAX_NAME_CHARS} are allowed")
        if not _NAME_CHARS.fullmatch(name):
            raise ValueError(f"name {name!r} may contain only lowercase letters, digits and hyphens")
        if name.startswith("-") or name.endswith("-"):
            raise ValueError(f"name {name!r} must not start or end with a hyphen")
        if "--" in name:
            raise ValueError(f"name {name!r} must not contain consecutive hyphens ('--')")
        return name

    @field_validator("description")
    @classmethod
    def _description_rules(cls, description: str) -> str:
        # a YAML block scalar ends with a newline: the description is the text without it
        description = description.strip()
        if not description:
            raise ValueError("description is empty; say what the skill does and when to use it")
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise ValueError(
                f"description is {len(description):,} characters long; "
                f"at most {MAX_DESCRIPTION_CHARS:,} are allowed"
            )
        return description

    @field_validator("compatibility")
    @classmethod
    def _compatibility_rules(cls, compatibility: str | None) -> str | None:
        if compatibility is None:
            return None
        if not compatibility.strip():
            raise ValueError("compatibility is empty; leave the field out instead")
        if len(compatibility) > MAX_COMPATIBILITY_CHARS:
            raise ValueError(
                f"compatibility is {len(compatibility)} characters long; "
                f"at most {MAX_COMPATIBILITY_CHARS} are allowed"
            )
        return compatibility

    @field_validator("metadata", mode="before")
    @classmethod
    def _strings_to_strings(cls, metadata: object) -> object:
        if metadata is None:
            return None
        if not isinstance(metadata, dict):
            raise ValueError(f"metadata must be a mapping of strings to strings, not {_what(metadata)}")
        for key, value in metadata.items():
            if not isinstance(key, str):
                raise ValueError(f"metadata key {key!r} must be a string, not {_what(key)}{_quote_hint(key)}")
            if not isinstance(value, str):
                raise ValueError(f"metadata {key!r} must be a string, not {_what(value)}{_quote_hint(value)}")
        return metadata

    @field_validator("allowed_tools", mode="before")
    @classmethod
    def _string_or_strings(cls, tools: object) -> object:
        if tools is None or isinstance(tools, str):
            return tools
        if not isinstance(tools, list):
            raise ValueError(f"allowed-tools must be a string or a list of strings, not {_what(tools)}")
        for tool in tools:
            if not isinstance(tool, str):
                raise ValueError(f"allowed-tools entry {tool!r} must be a string, not {_what(tool)}")
        return tools


def _field(field_name: str | None) -> str:
    return "allowed-tools" if field_name == "allowed_tools" else str(field_name)


def _what(value: object) -> str:
    """How a YAML value's type reads in a message (`description: 2024-01-01` is a date)."""
    if value is None:
        return "empty"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return f"a boolean ({value!r})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, datetime.date):
        return f"a date ({value})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _quote_hint(value: object) -> str:
    scalar = isinstance(value, bool | int | float | datetime.date)
    return "; put the value in quotes to make it a string" if scalar else ""


def parse_skill_md(text: str, folder_name: str | None, label: str) -> SkillMetadata:
    """The checked frontmatter of a SKILL.md; `folder_name` is the name it must have (None: any).

    Raises SkillInvalid starting with `label` (the file as the user knows it), then the rule broken.
    """
    fields = _frontmatter(text, label)
    unknown = [key for key in fields if key not in FRONTMATTER_FIELDS]
    if unknown:
        listed = ", ".join(repr(key) for key in unknown)
        raise SkillInvalid(
            f"{label}: unknown field{'s' if len(unknown) > 1 else ''} {listed} in the frontmatter; "
            f"the allowed fields are {', '.join(FRONTMATTER_FIELDS)}"
        )
    for required in ("name", "description"):
        if required not in fields:
            raise SkillInvalid(f"{label}: the frontmatter has no '{required}' field, which is required")
    try:
        metadata = SkillMetadata.model_validate(fields)
    except ValidationError as error:
        raise SkillInvalid(f"{label}: {_problems(error)}") from None
    if folder_name is not None and metadata.name != folder_name:
        raise SkillInvalid(
            f"{label}: name {metadata.name!r} must be the same as its folder's name {folder_name!r}"
        )
    return metadata


def _frontmatter(text: str, label: str) -> dict[Any, Any]:
    lines = text.removeprefix("\ufeff").splitlines()
    if not lines or lines[0].rstrip() != "---":
        raise SkillInvalid(
            f"{label}: does not start with YAML frontmatter "
            "(a '---' line, then the fields, then another '---' line)"
        )
    closing = next((number for number, line in enumerate(lines[1:], 1) if line.rstrip() == "---"), None)
    if closing is None:
        raise SkillInvalid(f"{label}: the frontmatter that starts on line 1 has no closing '---' line")
    try:
        fields = yaml.safe_load("\n".join(lines[1:closing]))
    except yaml.YAMLError as error:
        raise SkillInvalid(f"{label}: the frontmatter is not valid YAML ({_yaml_problem(error)})") from None
    if fields is None:
        raise SkillInvalid(f"{label}: the frontmatter is empty; it needs at least a name and a description")
    if not isinstance(fields, dict):
        raise SkillInvalid(
            f"{label}: the frontmatter must be a YAML mapping of fields (name: ..., description: ...), "
            f"not {_what(fields)}"
        )
    return fields


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        # the mark counts from 0 within the frontmatter, which starts on the file's line 2
        return f"{error.problem} on line {error.problem_mark.line + 2}"
    return str(error)


def _problems(error: ValidationError) -> str:
    """The messages of a SkillMetadata refusal, without pydantic's framing."""
    problems = []
    for detail in error.errors():
        cause = detail.get("ctx", {}).get("error")
        if isinstance(cause, ValueError):
            problems.append(str(cause))
        else:
            where = ".".join(_field(str(part)) for part in detail["loc"])
            problems.append(f"{where}: {detail['msg']}")
    return "; ".join(problems)


def find_skill_folders(root: Path, label: str) -> list[Path]:
    """The skill folders of a fetched source: `root` itself when it holds a SKILL.md, otherwise each
    folder directly under it that holds one (sorted by name).

    Symlinks are not followed: a linked SKILL.md or folder could point anywhere on the worker.
    """
    if _is_skill_folder(root):
        return [root]
    try:
        children = sorted(root.iterdir(), key=lambda child: child.name)
    except (FileNotFoundError, NotADirectoryError):
        raise SkillInvalid(f"{label}: is not a folder") from None
    found = [child for child in children if _is_real_directory(child) and _is_skill_folder(child)]
    if not found:
        raise SkillInvalid(f"{label}: no SKILL.md at its top or in any folder directly under it")
    return found


def _is_skill_folder(folder: Path) -> bool:
    try:
        return stat.S_ISREG((folder / "SKILL.md").lstat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _is_real_directory(path: Path) -> bool:
    return stat.S_ISDIR(path.lstat().st_mode)


def extract_zip_safely(
    archive: bytes, destination: Path, max_bytes: int = MAX_UNPACKED_BYTES, max_files: int = MAX_ZIP_FILES
) -> None:
    """Unpack a zip into `destination` (an existing empty folder) without writing anywhere else.

    Every member is checked before anything is written: no absolute paths, drive letters,
    backslashes, `..` or NUL; no symlinks or other special files; no encrypted members; at most
    `max_files` members and `max_bytes` declared. The bytes are counted again as they are written,
    since a header can lie. Files get 0o644 (0o755 when the zip marks them executable), folders
    0o755. On a refusal the destination is emptied again, so no half skill is left behind.
    """
    if not destination.is_dir() or any(destination.iterdir()):
        raise ValueError(f"{destination} must be an existing empty folder to unpack a skill zip into")
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as unpacked:
            members = unpacked.infolist()
            _check_members(members, max_bytes, max_files)
            try:
                _write_members(unpacked, members, destination, max_bytes)
            except BaseException:
                _empty(destination)
                raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise SkillInvalid(f"skill zip: is not a valid zip archive ({error})") from None


def _check_members(members: list[zipfile.ZipInfo], max_bytes: int, max_files: int) -> None:
    if len(members) > max_files:
        raise SkillInvalid(f"skill zip: has {len(members):,} members, over the limit of {max_files:,}")
    declared = sum(member.file_size for member in members)
    if declared > max_bytes:
        raise SkillInvalid(f"skill zip: unpacks to {declared:,} bytes, over the limit of {max_bytes:,}")
    files: set[str] = set()
    folders: set[str] = set()
    for member in members:
        problem = _member_problem(member)
        if problem is not None:
            raise SkillInvalid(f"skill zip member {member.filename!r}: {problem}")
        path = member.filename.rstrip("/")
        if not member.is_dir() and path in files:
            raise SkillInvalid(f"skill zip member {member.filename!r}: appears twice")
        (folders if member.is_dir() else files).add(path)
        parts = path.split("/")
        folders.update("/".join(parts[:end]) for end in range(1, len(parts)))
    clash = files & folders
    if clash:
        raise SkillInvalid(f"skill zip member {min(clash)!r}: is both a file and a folder")


def _member_problem(member: zipfile.ZipInfo) -> str | None:
    name = member.filename
    if _DRIVE_LETTER.match(name):
        return "the path starts with a drive letter"
    problem = relative_path_problem(name, "the destination")
    if problem is not None:
        return problem
    kind = stat.S_IFMT(member.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "is a symlink; a skill zip may hold only files and folders"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is a special file; a skill zip may hold only files and folders"
    if member.flag_bits & 0x1:
        return "is encrypted"
    if not member.is_dir() and member.compress_type not in _COMPRESSIONS:
        return f"uses compression method {member.compress_type}; only stored and deflate are supported"
    return None


def _write_members(
    unpacked: zipfile.ZipFile, members: list[zipfile.ZipInfo], destination: Path, max_bytes: int
) -> None:
    written = 0
    for member in members:
        target = destination / member.filename.rstrip("/")
        if member.is_dir():
            _make_folders(destination, target)
            continue
        _make_folders(destination, target.parent)
        executable = (member.external_attr >> 16) & 0o111
        mode = 0o755 if executable else 0o644
        try:
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        except FileExistsError:
            # only a case-insensitive disk gets here: the exact names were checked to be distinct
            raise SkillInvalid(f"skill zip member {member.filename!r}: clashes with another member") from None
        with os.fdopen(descriptor, "wb") as output, unpacked.open(member) as source:
            os.fchmod(descriptor, mode)
            while chunk := source.read(_COPY_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise SkillInvalid(
                        f"skill zip member {member.filename!r}: unpacks to more than {max_bytes:,} bytes "
                        "with the members before it, more than its header declares"
                    )
                output.write(chunk)


def _make_folders(destination: Path, folder: Path) -> None:
    """Create `folder` and its parents below `destination`, each 0o755 whatever the umask."""
    current = destination
    for part in folder.relative_to(destination).parts:
        current = current / part
        try:
            current.mkdir()
        except FileExistsError:
            if not _is_real_directory(current):
                # only a case-insensitive disk gets here: files and folders were checked to be distinct
                raise SkillInvalid(
                    f"skill zip member {current.relative_to(destination).as_posix() + '/'!r}: "
                    "clashes with a file of the zip"
                ) from None
            continue
        current.chmod(0o755)


def _empty(destination: Path) -> None:
    for child in destination.iterdir():
        if _is_real_directory(child):
            shutil.rmtree(child)
        else:
            child.unlink()


def skills_listing(skills: list[tuple[SkillMetadata, str]]) -> str:
    """The section of the agent's instructions that lists its skills ("" when it has none).

    Each pair is a skill and its folder in the workspace (e.g. "skills/pdf-tools").
    """
    if not skills:
        return ""
    lines = [
        "## Skills",
        "Skills are folders in your workspace with instructions and helpers for specific tasks. "
        "Before a task that one fits, read its SKILL.md.",
    ]
    for metadata, path in skills:
        # one line per skill, whatever line breaks a YAML block scalar kept
        description = " ".join(metadata.description.split())
        lines.append(f"- {metadata.name} ({path.rstrip('/')}/SKILL.md): {description}")
    return "\n".join(lines)
