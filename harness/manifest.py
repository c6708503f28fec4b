"""The manifest: the workspace a run starts with, declared.

A manifest lists entries at workspace paths: directories, inline files (text or
base64), copies of a file or folder from the worker's disk, git checkouts
(the ref is resolved to a commit when the run starts and recorded), objects
under an S3 prefix, and S3 buckets mounted with rclone. Each entry may carry a
description, which the model sees in the rendered tree of its workspace.

The manifest travels in the run's input, so it holds names and settings only:
S3 credentials are named (resolved on the worker), never given.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.source_paths import GitLocation, relative_path_problem

# inline content rides in the run's input (history): keep it modest, copy big data from elsewhere
MAX_INLINE_BYTES = 1024 * 1024
_CREDENTIALS_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def normal_path(path: str) -> str:
    return path.rstrip("/")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Where in the workspace, relative (e.g. 'original/report.pdf').")
    description: str | None = Field(
        default=None, max_length=500, description="Shown to the model next to the path."
    )


class DirectoryEntry(_Entry):
    kind: Literal["dir"] = "dir"


class InlineFileEntry(_Entry):
    kind: Literal["file"] = "file"
    content: str = Field(description="The file's content: text, or base64 with encoding 'base64'.")
    encoding: Literal["utf-8", "base64"] = "utf-8"
    executable: bool = False

    def data(self) -> bytes:
        if self.encoding == "utf-8":
            return self.content.encode()
        return base64.b64decode(self.content, validate=True)

    @model_validator(mode="after")
    def _decodable_and_small(self) -> InlineFileEntry:
        try:
            size = len(self.data())
        except (binascii.Error, ValueError):
            raise ValueError(f"the content of {self.path!r} is not valid base64") from None
        if size > MAX_INLINE_BYTES:
            raise ValueError(
                f"the inline content of {self.path!r} is {size:,} bytes, over {MAX_INLINE_BYTES:,}: "
                "copy big files from the worker's disk, git or S3 instead"
            )
        return self


class LocalCopyEntry(_Entry):
    kind: Literal["local"] = "local"
    source: str = Field(
        description="A file or folder on the worker's disk, under one of FARLINE_LOCAL_SOURCES."
    )

    @field_validator("source")
    @classmethod
    def _absolute(cls, source: str) -> str:
        if not source.startswith("/") or "\0" in source:
            raise ValueError(f"source {source!r} must be an absolute path on the worker")
        return source


class GitEntry(_Entry, GitLocation):
    """A repository at the commit its ref names when the run starts (or at `commit`)."""

    kind: Literal["git"] = "git"
    commit: str | None = Field(
        default=None, description="Set by the run when it resolves `ref`; give it to pin a commit."
    )

    @field_validator("commit")
    @classmethod
    def _full_sha(cls, commit: str | None) -> str | None:
        if commit is not None and not _COMMIT.match(commit):
            raise ValueError(f"commit {commit!r} must be a full 40-character lowercase sha-1")
        return commit


class _S3Location(_Entry):
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = Field(default="", description="Only the objects under this key prefix.")
    endpoint_url: str | None = Field(
        default=None, description="The S3-compatible endpoint; default FARLINE_S3_ENDPOINT."
    )
    region: str | None = None
    credentials: str | None = Field(
        default=None,
        description="The name of a credential set on the worker (FARLINE_CREDENTIALS_<NAME>_ACCESS_KEY_ID "
        "and _SECRET_ACCESS_KEY); default: FARLINE_S3_ACCESS_KEY_ID and FARLINE_S3_SECRET_ACCESS_KEY.",
    )

    @field_validator("credentials")
    @classmethod
    def _credentials_name(cls, name: str | None) -> str | None:
        if name is not None and not _CREDENTIALS_NAME.match(name):
            raise ValueError(
                f"credentials {name!r} must be a name (letters, digits, '_'), never the keys themselves"
            )
        return name


class S3CopyEntry(_S3Location):
    """Objects under a prefix copied into the workspace when the run starts (then snapshotted)."""

    kind: Literal["s3"] = "s3"


class S3MountEntry(_S3Location):
    """A bucket mounted with rclone over FUSE in every sandbox of the run (never snapshotted)."""

    kind: Literal["s3_mount"] = "s3_mount"
    read_only: bool = True


ManifestEntry = Annotated[
    DirectoryEntry | InlineFileEntry | LocalCopyEntry | GitEntry | S3CopyEntry | S3MountEntry,
    Field(discriminator="kind"),
]
# paths the harness itself fills: skills and the agent's memory
RESERVED_ROOTS = ("skills", "memory")


class Manifest(BaseModel):
    """The workspace a run starts with; entries are applied in order."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(
        default=None, max_length=2_000, description="What the workspace is for, shown above its tree."
    )
    entries: list[ManifestEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _paths_inside_and_apart(self) -> Manifest:
        owners: dict[str, tuple[int, str]] = {}
        for number, entry in enumerate(self.entries, start=1):
            name = f"manifest entry {number} ({entry.kind} {entry.path!r})"
            problem = relative_path_problem(entry.path)
            if problem is not None:
                raise ValueError(f"{name}: {problem}")
            path = normal_path(entry.path)
            if path.split("/")[0] in RESERVED_ROOTS:
                raise ValueError(
                    f"{name}: {path.split('/')[0]}/ is filled by the harness (skills and memory); "
                    "choose another folder"
                )
            for other, (other_number, other_kind) in owners.items():
                inside = path == other or path.startswith(other + "/")
                if entry.kind == "dir" and not (inside and other_kind == "s3_mount"):
                    continue
                if inside or other.startswith(path + "/"):
                    raise ValueError(
                        f"{name} overlaps manifest entry {other_number} ({other_kind} {other!r}): "
                        "two entries may not fill the same path"
                    )
            if entry.kind != "dir":
                owners[path] = (number, entry.kind)
        return self

    def plus(self, other: Manifest | None) -> Manifest:
        """This manifest's entries, then `other`'s (a run's additions to its agent's manifest)."""
        if other is None:
            return self
        return Manifest(
            description=other.description or self.description, entries=[*self.entries, *other.entries]
        )

    @property
    def mounts(self) -> list[S3MountEntry]:
        return [entry for entry in self.entries if isinstance(entry, S3MountEntry)]
