"""Skills: the frontmatter rules, finding skill folders, unpacking a zip safely, and the sources."""

from __future__ import annotations

import base64
import io
import stat
import zipfile
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from harness.skills import (
    MAX_ZIP_BYTES,
    SkillFolderSource,
    SkillGitSource,
    SkillInvalid,
    SkillMetadata,
    SkillSource,
    SkillZipSource,
    extract_zip_safely,
    find_skill_folders,
    parse_skill_md,
    skills_listing,
)

LABEL = "skills/pdf-tools/SKILL.md"


def frontmatter(*lines: str) -> str:
    return "\n".join(["---", *lines, "---", "# PDF tools", "", "Run scripts/fill.py."])


def valid(*extra: str) -> str:
    return frontmatter("name: pdf-tools", "description: Fill and merge PDF forms.", *extra)


def refusal(text: str, folder_name: str | None = "pdf-tools") -> str:
    with pytest.raises(SkillInvalid) as caught:
        parse_skill_md(text, folder_name, LABEL)
    message = str(caught.value)
    assert message.startswith(f"{LABEL}: "), message
    return message


# --- frontmatter -------------------------------------------------------------------------------


def test_a_skill_with_every_optional_field_is_read() -> None:
    text = frontmatter(
        "name: pdf-tools",
        "description: >",
        "  Fill and merge PDF forms.",
        "  Use it when a task involves a PDF.",
        "license: Apache-2.0",
        "compatibility: Needs python3 and qpdf",
        "metadata:",
        "  author: example-org",
        '  version: "1.0"',
        "allowed-tools: Bash(python3:*) Read",
    )
    metadata = parse_skill_md(text, "pdf-tools", LABEL)
    assert metadata == SkillMetadata(
        name="pdf-tools",
        description="Fill and merge PDF forms. Use it when a task involves a PDF.",
        license="Apache-2.0",
        compatibility="Needs python3 and qpdf",
        metadata={"author": "example-org", "version": "1.0"},
        allowed_tools="Bash(python3:*) Read",
    )


def test_allowed_tools_may_be_a_list_and_line_ends_may_be_crlf() -> None:
    text = valid("allowed-tools: [Read, Bash]").replace("\n", "\r\n")
    assert parse_skill_md(text, "pdf-tools", LABEL).allowed_tools == ["Read", "Bash"]


def test_the_longest_name_and_description_are_allowed_and_any_name_fits_no_folder() -> None:
    name = "a" * 64
    metadata = parse_skill_md(frontmatter(f"name: {name}", f"description: {'d' * 1024}"), None, LABEL)
    assert metadata.name == name
    assert len(metadata.description) == 1024


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("pdf_tools", "name 'pdf_tools' may contain only lowercase letters, digits and hyphens"),
        ("pdf tools", "name 'pdf tools' may contain only lowercase letters, digits and hyphens"),
        ("PDF", "name 'PDF' may contain only lowercase letters, digits and hyphens"),
        ("Pdf-Tools", "name 'Pdf-Tools' may contain only lowercase letters, digits and hyphens"),
        ("café", "name 'café' may contain only lowercase letters, digits and hyphens"),
        ("-pdf", "name '-pdf' must not start or end with a hyphen"),
        ("pdf-", "name 'pdf-' must not start or end with a hyphen"),
        ("pdf--tools", "name 'pdf--tools' must not contain consecutive hyphens ('--')"),
        ("a" * 65, "name is 65 characters long; at most 64 are allowed"),
        ('""', "name is empty"),
    ],
)
def test_a_name_that_breaks_a_rule_is_refused_with_that_rule(name: str, rule: str) -> None:
    message = refusal(frontmatter(f"name: {name}", "description: Fill forms."), folder_name=None)
    assert message == f"{LABEL}: {rule}"


def test_a_name_other_than_its_folders_is_refused() -> None:
    message = refusal(valid(), folder_name="pdf")
    assert message == f"{LABEL}: name 'pdf-tools' must be the same as its folder's name 'pdf'"


@pytest.mark.parametrize(
    ("description", "rule"),
    [
        ('""', "description is empty"),
        ('"   "', "description is empty"),
        ("d" * 1025, "description is 1,025 characters long; at most 1,024 are allowed"),
    ],
)
def test_an_empty_or_long_description_is_refused(description: str, rule: str) -> None:
    message = refusal(frontmatter("name: pdf-tools", f"description: {description}"))
    assert rule in message


def test_a_long_compatibility_is_refused() -> None:
    message = refusal(valid(f"compatibility: {'c' * 501}"))
    assert message == f"{LABEL}: compatibility is 501 characters long; at most 500 are allowed"


def test_an_unknown_field_is_refused_naming_it_and_the_allowed_ones() -> None:
    message = refusal(valid("version: 2"))
    assert message == (
        f"{LABEL}: unknown field 'version' in the frontmatter; "
        "the allowed fields are name, description, license, compatibility, metadata, allowed-tools"
    )


def test_allowed_tools_spelled_with_an_underscore_is_an_unknown_field() -> None:
    assert "unknown field 'allowed_tools'" in refusal(valid("allowed_tools: Read"))


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("# PDF tools\n\nNo frontmatter.", "does not start with YAML frontmatter"),
        ("", "does not start with YAML frontmatter"),
        ("\n---\nname: pdf-tools\n---\n", "does not start with YAML frontmatter"),
        ("---\nname: pdf-tools\ndescription: x\n# body", "has no closing '---' line"),
        ("---\n- name\n- description\n---\n", "must be a YAML mapping of fields"),
        (
            "---\njust some words\n---\n",
            "must be a YAML mapping of fields (name: ..., description: ...), not a string",
        ),
        ("---\n---\n", "the frontmatter is empty"),
        (
            "---\nname: pdf-tools\ndescription: Use it when: a PDF\n---\n",
            "the frontmatter is not valid YAML (mapping values are not allowed here on line 3)",
        ),
        ("---\nname: [pdf\n---\n", "the frontmatter is not valid YAML"),
    ],
)
def test_missing_unterminated_or_malformed_frontmatter_is_refused(text: str, rule: str) -> None:
    assert rule in refusal(text)


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        (
            ["name: 123", "description: x"],
            "name must be a string, not a number (123); put the value in quotes to make it a string",
        ),
        (["name: pdf-tools", "description: true"], "description must be a string, not a boolean (True)"),
        (
            ["name: pdf-tools", "description: 2024-01-01"],
            "description must be a string, not a date (2024-01-01)",
        ),
        (["name: pdf-tools", "description:"], "description has no value"),
        (["name: pdf-tools", "description: [a, b]"], "description must be a string, not a list"),
        (["name: pdf-tools", "description: x", "license: [MIT]"], "license must be a string, not a list"),
        (["name: pdf-tools", "description: x", "compatibility: 3.11"], "compatibility must be a string"),
        (
            ["name: pdf-tools", "description: x", "metadata: [a]"],
            "metadata must be a mapping of strings to strings, not a list",
        ),
        (
            ["name: pdf-tools", "description: x", "metadata: {version: 1.0}"],
            "metadata 'version' must be a string",
        ),
        (["name: pdf-tools", "description: x", "metadata: {1: one}"], "metadata key 1 must be a string"),
        (
            ["name: pdf-tools", "description: x", "allowed-tools: {Read: yes}"],
            "allowed-tools must be a string or a list of strings, not a mapping",
        ),
        (
            ["name: pdf-tools", "description: x", "allowed-tools: [Read, 3]"],
            "allowed-tools entry 3 must be a string, not a number (3)",
        ),
        (["description: x"], "the frontmatter has no 'name' field, which is required"),
        (["name: pdf-tools"], "the frontmatter has no 'description' field, which is required"),
    ],
)
def test_a_field_of_the_wrong_type_or_a_missing_one_is_refused(fields: list[str], rule: str) -> None:
    assert rule in refusal(frontmatter(*fields))


def test_every_type_problem_is_reported_at_once() -> None:
    message = refusal(frontmatter("name: 7", "description: 8"))
    assert "name must be a string" in message
    assert "description must be a string" in message


def test_the_metadata_model_holds_the_rules_itself_and_survives_a_round_trip() -> None:
    with pytest.raises(ValidationError, match="may contain only lowercase letters"):
        SkillMetadata(name="PDF", description="x")
    metadata = parse_skill_md(valid("allowed-tools: [Read]"), "pdf-tools", LABEL)
    assert metadata.model_dump(by_alias=True)["allowed-tools"] == ["Read"]
    assert SkillMetadata.model_validate(metadata.model_dump(by_alias=True)) == metadata
    assert SkillMetadata.model_validate(metadata.model_dump()) == metadata


# --- finding skill folders ---------------------------------------------------------------------


def make_skill(folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(frontmatter(f"name: {name or folder.name}", "description: x"))
    return folder


def test_a_root_with_a_skill_md_is_one_skill(tmp_path: Path) -> None:
    root = make_skill(tmp_path / "checkout")
    make_skill(root / "nested")
    assert find_skill_folders(root, "repo") == [root]


def test_each_folder_directly_under_the_root_with_a_skill_md_is_a_skill(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    make_skill(root / "zeta")
    make_skill(root / "alpha")
    (root / "docs").mkdir()
    (root / "README.md").write_text("readme")
    make_skill(root / "deeper" / "too-deep")
    assert find_skill_folders(root, "repo") == [root / "alpha", root / "zeta"]


def test_a_root_without_skills_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    (root / "docs").mkdir(parents=True)
    with pytest.raises(SkillInvalid) as caught:
        find_skill_folders(root, "https://example.com/skills.git at 0123456789ab")
    assert str(caught.value) == (
        "https://example.com/skills.git at 0123456789ab: "
        "no SKILL.md at its top or in any folder directly under it"
    )


def test_a_missing_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SkillInvalid, match=r"^gone: is not a folder$"):
        find_skill_folders(tmp_path / "gone", "gone")


def test_symlinked_folders_and_skill_mds_are_not_followed(tmp_path: Path) -> None:
    elsewhere = make_skill(tmp_path / "elsewhere")
    root = tmp_path / "checkout"
    real = make_skill(root / "real")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "half-linked").mkdir()
    (root / "half-linked" / "SKILL.md").symlink_to(elsewhere / "SKILL.md")
    assert find_skill_folders(root, "repo") == [real]

    only_links = tmp_path / "only-links"
    only_links.mkdir()
    (only_links / "SKILL.md").symlink_to(elsewhere / "SKILL.md")
    (only_links / "linked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SkillInvalid, match=r"no SKILL\.md at its top"):
        find_skill_folders(only_links, "repo")


# --- zip extraction ----------------------------------------------------------------------------


def zip_of(*members: tuple[str, bytes] | tuple[str, bytes, int]) -> bytes:
    """A zip of (name, content[, unix mode]) members; a mode carries its file type bits."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content, *mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (mode[0] if mode else stat.S_IFREG | 0o644) << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def everything_under(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


@pytest.fixture
def destination(tmp_path: Path) -> Path:
    """An empty folder two levels down, so a member that escapes would land inside tmp_path."""
    folder = tmp_path / "unpack" / "here"
    folder.mkdir(parents=True)
    return folder


def refused_zip(archive: bytes, destination: Path, **limits: int) -> str:
    root = destination.parent.parent
    with pytest.raises(SkillInvalid) as caught:
        extract_zip_safely(archive, destination, **limits)
    assert everything_under(root) == ["unpack", "unpack/here"], "something was written"
    return str(caught.value)


def test_a_zip_is_unpacked_with_its_folders_and_executable_bits(destination: Path) -> None:
    archive = zip_of(
        ("pdf-tools/", b"", stat.S_IFDIR | 0o700),
        ("pdf-tools/SKILL.md", valid().encode(), stat.S_IFREG | 0o600),
        ("pdf-tools/scripts/fill.py", b"#!/usr/bin/env python3\n", stat.S_IFREG | 0o744),
        ("pdf-tools/templates/form/a.txt", b"a" * 200_000),
    )
    extract_zip_safely(archive, destination)
    assert everything_under(destination) == [
        "pdf-tools",
        "pdf-tools/SKILL.md",
        "pdf-tools/scripts",
        "pdf-tools/scripts/fill.py",
        "pdf-tools/templates",
        "pdf-tools/templates/form",
        "pdf-tools/templates/form/a.txt",
    ]
    skill = destination / "pdf-tools"
    assert (skill / "SKILL.md").read_text() == valid()
    assert (skill / "templates/form/a.txt").read_bytes() == b"a" * 200_000
    assert stat.S_IMODE((skill / "SKILL.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((skill / "scripts/fill.py").stat().st_mode) == 0o755
    for folder in ("pdf-tools", "pdf-tools/scripts", "pdf-tools/templates/form"):
        assert stat.S_IMODE((destination / folder).stat().st_mode) == 0o755
    assert find_skill_folders(destination, "an inline zip") == [skill]


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("../evil", "the path leaves the destination ('..')"),
        ("skill/../../evil", "the path leaves the destination ('..')"),
        ("/tmp/evil", "the path is absolute"),
        ("C:/evil", "the path starts with a drive letter"),
        ("..\\evil", "the path contains a backslash"),
        ("skill//evil", "the path has an empty or '.' part"),
    ],
)
def test_a_member_that_leaves_the_destination_is_refused(destination: Path, name: str, rule: str) -> None:
    archive = zip_of(("skill/SKILL.md", valid().encode()), (name, b"pwned"))
    message = refused_zip(archive, destination)
    assert message.startswith(f"skill zip member {name!r}: {rule}")


def test_a_symlink_member_is_refused(destination: Path) -> None:
    archive = zip_of(("skill/SKILL.md", valid().encode()), ("skill/data", b"/etc", stat.S_IFLNK | 0o777))
    message = refused_zip(archive, destination)
    assert (
        message == "skill zip member 'skill/data': is a symlink; a skill zip may hold only files and folders"
    )


def test_a_member_under_a_file_member_is_refused(destination: Path) -> None:
    archive = zip_of(("skill", b"a file"), ("skill/SKILL.md", valid().encode()))
    assert refused_zip(archive, destination) == "skill zip member 'skill': is both a file and a folder"


def test_a_member_that_appears_twice_is_refused(destination: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        archive = zip_of(("SKILL.md", b"first"), ("SKILL.md", b"second"))
    assert refused_zip(archive, destination) == "skill zip member 'SKILL.md': appears twice"


def test_too_many_members_are_refused(destination: Path) -> None:
    archive = zip_of(*[(f"skill/{n}.txt", b"x") for n in range(4)])
    extract_zip_safely(archive, destination, max_files=4)
    other = destination.parent / "other"
    other.mkdir()
    with pytest.raises(SkillInvalid, match=r"^skill zip: has 4 members, over the limit of 3$"):
        extract_zip_safely(archive, other, max_files=3)
    assert everything_under(other) == []


def test_more_declared_bytes_than_allowed_are_refused(destination: Path) -> None:
    archive = zip_of(("skill/a.bin", b"\0" * 600), ("skill/b.bin", b"\0" * 500))
    message = refused_zip(archive, destination, max_bytes=1000)
    assert message == "skill zip: unpacks to 1,100 bytes, over the limit of 1,000"


def lying_about_its_size(archive: bytes, declared: int) -> bytes:
    """`archive` (one member) with both its headers declaring `declared` uncompressed bytes."""
    patched = bytearray(archive)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = patched.index(signature) + offset
        patched[at : at + 4] = declared.to_bytes(4, "little")
    return bytes(patched)


def test_a_header_that_understates_the_size_does_not_get_more_bytes_written(destination: Path) -> None:
    archive = lying_about_its_size(zip_of(("skill/bomb.bin", b"\0" * 1_000_000)), declared=10)
    assert zipfile.ZipFile(io.BytesIO(archive)).infolist()[0].file_size == 10
    message = refused_zip(archive, destination, max_bytes=1000)
    assert message.startswith("skill zip: is not a valid zip archive (Bad CRC-32")


def test_bytes_are_counted_as_they_are_written_not_taken_from_the_header(
    destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python's zipfile stops at the declared size itself; a reader that did not would be caught here
    archive = zip_of(("skill/small.txt", b"0123456789"))
    monkeypatch.setattr(
        zipfile.ZipFile, "open", lambda self, member, *args, **kwargs: io.BytesIO(b"x" * 5000)
    )
    message = refused_zip(archive, destination, max_bytes=1000)
    assert message.startswith("skill zip member 'skill/small.txt': unpacks to more than 1,000 bytes")


@pytest.mark.parametrize(
    "archive",
    [
        b"this is not a zip",
        b"",
        zip_of(("skill/SKILL.md", valid().encode()))[:60],
    ],
)
def test_a_corrupt_zip_is_refused(destination: Path, archive: bytes) -> None:
    assert refused_zip(archive, destination).startswith("skill zip: is not a valid zip archive")


def test_a_zip_with_corrupt_compressed_data_is_refused_and_leaves_nothing(destination: Path) -> None:
    archive = bytearray(
        zip_of(("skill/SKILL.md", valid().encode()), ("skill/data.txt", bytes(range(256)) * 50))
    )
    start = archive.index(b"skill/data.txt") + len("skill/data.txt") + 20
    archive[start : start + 40] = b"\xff" * 40
    assert refused_zip(bytes(archive), destination).startswith("skill zip: is not a valid zip archive")


def test_the_destination_must_be_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "left-over").write_text("x")
    with pytest.raises(ValueError, match="must be an existing empty folder"):
        extract_zip_safely(zip_of(("SKILL.md", b"x")), tmp_path)
    with pytest.raises(ValueError, match="must be an existing empty folder"):
        extract_zip_safely(zip_of(("SKILL.md", b"x")), tmp_path / "missing")


# --- sources -----------------------------------------------------------------------------------


def test_a_zip_source_carries_its_archive() -> None:
    archive = zip_of(("SKILL.md", valid().encode()))
    source = TypeAdapter(SkillSource).validate_python(
        {"kind": "zip", "data": base64.b64encode(archive).decode()}
    )
    assert isinstance(source, SkillZipSource)
    assert source.archive() == archive


@pytest.mark.parametrize("data", ["not base64!", "QUJD\nREVG", "QUJ"])
def test_a_zip_source_that_is_not_base64_is_refused(data: str) -> None:
    with pytest.raises(ValidationError, match="the skill zip's data is not valid base64"):
        SkillZipSource(data=data)


def test_a_zip_source_over_the_limit_is_refused() -> None:
    SkillZipSource(data=base64.b64encode(b"\0" * MAX_ZIP_BYTES).decode())
    with pytest.raises(
        ValidationError, match=r"the skill zip is 10,485,761 bytes, over 10,485,760 \(10 MiB\)"
    ):
        SkillZipSource(data=base64.b64encode(b"\0" * (MAX_ZIP_BYTES + 1)).decode())


@pytest.mark.parametrize(
    ("subpath", "rule"),
    [
        ("../other", "leaves the repository ('..')"),
        ("skills/../../other", "leaves the repository ('..')"),
        ("/etc", "absolute"),
        ("skills//pdf", "empty or '.' part"),
        ("", "empty"),
        ("skills\0pdf", "NUL"),
    ],
)
def test_a_git_subpath_outside_the_repository_is_refused(subpath: str, rule: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SkillGitSource(url="https://example.com/skills.git", subpath=subpath)
    assert f"subpath {subpath!r}: " in str(caught.value)
    assert rule in str(caught.value)


def test_a_git_source_keeps_a_plain_subpath_and_refuses_option_like_values() -> None:
    source = SkillGitSource(url="https://example.com/skills.git", ref="v1", subpath="skills/pdf-tools/")
    assert source.subpath == "skills/pdf-tools"
    for fields in ({"url": ""}, {"url": "--upload-pack=touch /tmp/x"}, {"url": "u", "ref": "-b"}):
        with pytest.raises(ValidationError):
            SkillGitSource(**fields)


def test_a_folder_source_must_be_absolute() -> None:
    assert SkillFolderSource(path="/opt/skills").path == "/opt/skills"
    for path in ("", "skills/pdf-tools"):
        with pytest.raises(ValidationError, match="must be an absolute path on the worker"):
            SkillFolderSource(path=path)


def test_a_source_is_chosen_by_its_kind() -> None:
    adapter = TypeAdapter(list[SkillSource])
    sources = adapter.validate_python(
        [{"kind": "folder", "path": "/opt/skills"}, {"kind": "git", "url": "https://example.com/s.git"}]
    )
    assert [type(source) for source in sources] == [SkillFolderSource, SkillGitSource]
    with pytest.raises(ValidationError):
        adapter.validate_python([{"kind": "ftp", "path": "/x"}])


# --- the listing -------------------------------------------------------------------------------


def test_the_listing_names_each_skill_its_skill_md_and_its_description() -> None:
    pdf = parse_skill_md(valid(), "pdf-tools", LABEL)
    charts = SkillMetadata(name="charts", description="Draw charts\nfrom CSV files.\n")
    assert skills_listing([(pdf, "skills/pdf-tools"), (charts, "skills/charts")]) == (
        "## Skills\n"
        "Skills are folders in your workspace with instructions and helpers for specific tasks. "
        "Before a task that one fits, read its SKILL.md.\n"
        "- pdf-tools (skills/pdf-tools/SKILL.md): Fill and merge PDF forms.\n"
        "- charts (skills/charts/SKILL.md): Draw charts from CSV files."
    )


def test_no_skills_make_no_listing() -> None:
    assert skills_listing([]) == ""
