"""What manifests and skills share: relative paths that stay inside, and git locations."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


def relative_path_problem(path: str, inside: str = "the workspace") -> str | None:
    """Why `path` is not a plain relative path that stays inside `inside`, or None when it is."""
    if not path:
        return "the path is empty"
    if "\0" in path:
        return "the path contains a NUL byte"
    if path.startswith("/"):
        return f"the path is absolute; give it relative to {inside}"
    if "\\" in path:
        return "the path contains a backslash; separate folders with '/'"
    parts = path.rstrip("/").split("/")
    if ".." in parts:
        return f"the path leaves {inside} ('..')"
    if any(part in ("", ".") for part in parts):
        return "the path has an empty or '.' part"
    return None


class GitLocation(BaseModel):
    """A repository, a ref in it (resolved to a commit when a run starts) and a folder of it."""

    url: str = Field(min_length=1, description="Any URL git clones: https://, ssh, file://.")
    ref: str = Field(default="HEAD", min_length=1, description="A branch, a tag or a commit.")
    subpath: str | None = Field(default=None, description="Only this folder of the repository.")

    @field_validator("url", "ref")
    @classmethod
    def _not_an_option(cls, value: str) -> str:
        # git reads a leading '-' as an option
        if value.startswith("-") or "\0" in value:
            raise ValueError(f"{value!r} must not start with '-' or contain NUL")
        return value

    @field_validator("subpath")
    @classmethod
    def _inside_the_repository(cls, subpath: str | None) -> str | None:
        if subpath is None:
            return None
        problem = relative_path_problem(subpath, "the repository")
        if problem is not None:
            raise ValueError(f"subpath {subpath!r}: {problem}")
        return subpath.rstrip("/")
