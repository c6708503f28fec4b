"""The manifest model: entries, the paths they may take, and the rendered tree the model sees."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from harness.manifest import Manifest
from harness.object_store import LocalDirectoryStore
from harness.snapshot_store import SnapshotStore
from harness.specs import RunRequest
from harness.workspace_seed import SeedConflict, SeedTooBig, WorkspaceSeed
from harness.workspace_tree import render_workspace


def refusal(entries: list[dict]) -> str:
    with pytest.raises(ValidationError) as caught:
        Manifest(entries=entries)
    return str(caught.value)


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("../outside", "leaves the workspace"),
        ("working/../../etc/passwd", "leaves the workspace"),
        ("/etc/passwd", "absolute"),
        ("a//b", "empty or '.' part"),
        ("./a", "empty or '.' part"),
        ("a\\b", "backslash"),
        ("", "empty"),
    ],
)
def test_a_path_that_leaves_the_workspace_is_refused_naming_the_entry(path: str, rule: str) -> None:
    message = refusal([{"kind": "dir", "path": "ok"}, {"kind": "file", "path": path, "content": "x"}])
    assert f"manifest entry 2 (file {path!r})" in message
    assert rule in message


def test_a_request_with_a_bad_manifest_is_refused_before_it_starts() -> None:
    with pytest.raises(ValidationError, match=r"manifest entry 1 \(git '\.\./repo'\)"):
        RunRequest.model_validate(
            {
                "agent": "demo",
                "task": "t",
                "manifest": {"entries": [{"kind": "git", "path": "../repo", "url": "x"}]},
            }
        )


def test_entries_that_fill_the_same_path_are_refused() -> None:
    message = refusal(
        [
            {"kind": "git", "path": "repo", "url": "https://example.com/r.git"},
            {"kind": "file", "path": "repo/x", "content": ""},
        ]
    )
    assert "manifest entry 2 (file 'repo/x') overlaps manifest entry 1 (git 'repo')" in message
    # a folder may hold other entries, but nothing goes inside a mount
    Manifest(entries=[{"kind": "dir", "path": "data"}, {"kind": "file", "path": "data/a", "content": ""}])
    assert "overlaps" in refusal(
        [{"kind": "s3_mount", "path": "m", "bucket": "abc"}, {"kind": "dir", "path": "m/x"}]
    )


def test_the_harness_folders_are_reserved() -> None:
    assert "skills/ is filled by the harness" in refusal(
        [{"kind": "file", "path": "skills/x", "content": ""}]
    )
    assert "memory/ is filled by the harness" in refusal([{"kind": "dir", "path": "memory"}])


def test_inline_content_is_checked() -> None:
    assert "not valid base64" in refusal(
        [{"kind": "file", "path": "a.bin", "content": "@@", "encoding": "base64"}]
    )
    big = "x" * (1024 * 1024 + 1)
    assert "copy big files" in refusal([{"kind": "file", "path": "big", "content": big}])


def test_credentials_are_named_never_given() -> None:
    message = refusal([{"kind": "s3", "path": "d", "bucket": "abc", "credentials": "AKIA/secret+key"}])
    assert "never the keys themselves" in message


def test_git_refs_and_subpaths_are_checked() -> None:
    assert "must not start with '-'" in refusal([{"kind": "git", "path": "r", "url": "--upload-pack=evil"}])
    assert "subpath '../x'" in refusal(
        [{"kind": "git", "path": "r", "url": "https://h/r", "subpath": "../x"}]
    )
    assert "40-character" in refusal([{"kind": "git", "path": "r", "url": "https://h/r", "commit": "abc"}])


def seed(tmp_path, max_bytes: int = 10**9) -> WorkspaceSeed:
    return WorkspaceSeed(
        SnapshotStore(LocalDirectoryStore(tmp_path / "store")), max_bytes, mtime=1_700_000_000
    )


def test_a_seed_is_content_addressed_and_refuses_conflicts(tmp_path) -> None:
    first = seed(tmp_path)
    first.add_file("original/photo.png", base64.b64decode("iVBORw0KGgo="), 0o600)
    first.add_dir("output")
    tree = first.finish()
    again = seed(tmp_path)
    again.add_dir("output")
    again.add_file("original/photo.png", base64.b64decode("iVBORw0KGgo="), 0o600)
    assert again.finish().snapshot_id == tree.snapshot_id
    assert again.uploaded_bytes == 0  # the blob was stored by the first seed
    by_path = {entry.path: entry for entry in tree.entries}
    assert by_path["original"].kind == "dir" and by_path["original/photo.png"].mode == 0o600
    with pytest.raises(SeedConflict, match="filled twice"):
        again.add_file("output", b"")
    with pytest.raises(SeedConflict, match="which is a file"):
        again.add_file("original/photo.png/x", b"")
    small = seed(tmp_path, max_bytes=10)
    with pytest.raises(SeedTooBig, match="FARLINE_MANIFEST_MAX_BYTES"):
        small.add_file("a", b"x" * 11)


def test_the_rendered_tree_shows_descriptions_and_summarises_deep_or_wide_folders(tmp_path) -> None:
    workspace = seed(tmp_path)
    workspace.add_dir("original")
    workspace.add_file("original/brief.md", b"# brief\n")
    workspace.add_dir("output")
    for number in range(40):
        workspace.add_file(f"repo/src/pkg/deep/module_{number:02d}.py", b"pass\n")
    for number in range(30):
        workspace.add_file(f"wide/file_{number:02d}.txt", b"x")
    tree = workspace.finish()
    text = render_workspace(
        tree,
        {"original": "The inputs: never change them", "output": "Put deliverables here"},
        {"bucket": "s3://data/raw, read-only"},
    )
    lines = text.splitlines()
    assert lines[0] == "/workspace/"
    assert "  original/  # The inputs: never change them" in lines
    assert "    brief.md (8 B)" in lines
    assert "  output/  # Put deliverables here" in lines
    assert "  bucket/  [mounted: s3://data/raw, read-only]" in lines
    # depth is bounded: the deep package is a count, not 40 lines
    assert any("pkg/" in line and "(40 files, 1 folder)" in line for line in lines)
    assert not any("module_" in line for line in lines)
    # width is bounded: 15 files then a count of the rest
    assert sum("file_" in line for line in lines) == 15
    assert "    ... and 15 more (15 files, 0 folders)" in lines
    assert len(lines) < 40
    assert len(render_workspace(tree, {}, max_lines=5).splitlines()) == 6
