"""The apply_patch engine: the scenario folders, parse errors, and properties on random input.

Each folder of tests/apply_patch_cases holds `patch.txt`, an optional `input/`
tree (git keeps no empty directories: a missing `input/` is an empty root), an
optional `symlinks.txt` ("name -> target" lines, created in the root before the
patch) and either `expected/` (the whole tree after the patch, byte for byte,
executable bits included; a missing `expected/` is an empty tree) with an
optional `output.txt`, or `error.txt` (a substring of the error; the tree must
then be unchanged).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.apply_patch import (
    AddFile,
    File,
    Missing,
    PatchError,
    RemoveFile,
    UpdateFile,
    WriteFile,
    already_applied,
    apply_patch_to_directory,
    parse_patch,
    plan_changes,
    rollback_changes,
)

CASES = Path(__file__).parent / "apply_patch_cases"
SCENARIOS = sorted(path.name for path in CASES.iterdir() if path.is_dir())

Tree = dict[str, tuple[str, bytes | str, bool]]


def tree(root: Path) -> Tree:
    """Every file and symlink under `root` (directories are implied): kind, content, executable."""
    found: Tree = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            st_ = path.lstat()
            if stat.S_ISLNK(st_.st_mode):
                found[relative] = ("link", os.readlink(path), False)
            elif stat.S_ISREG(st_.st_mode):
                found[relative] = ("file", path.read_bytes(), bool(st_.st_mode & stat.S_IXUSR))
    return found


def prepare(case: Path, root: Path) -> None:
    if (case / "input").is_dir():
        shutil.copytree(case / "input", root, symlinks=True)
    else:
        root.mkdir()
    links = case / "symlinks.txt"
    for line in links.read_text().splitlines() if links.exists() else []:
        name, target = line.split(" -> ")
        (root / name).symlink_to(target)


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 30


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(name: str, tmp_path: Path) -> None:
    case = CASES / name
    root = tmp_path / "root"
    (tmp_path / "outside").mkdir()
    prepare(case, root)
    before = tree(root)
    patch = (case / "patch.txt").read_bytes().decode()

    if (case / "error.txt").exists():
        with pytest.raises(PatchError) as raised:
            apply_patch_to_directory(root, patch)
        assert (case / "error.txt").read_text().strip() in str(raised.value)
        assert tree(root) == before
    else:
        output = apply_patch_to_directory(root, patch)
        expected = tree(case / "expected") if (case / "expected").is_dir() else {}
        assert tree(root) == expected
        if (case / "output.txt").exists():
            assert output == (case / "output.txt").read_text()
    assert tree(tmp_path / "outside") == {}


# -- parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello", "line 1: the patch must start with '*** Begin Patch'"),
        ("\n\n  *** Begin Patch\n*** Add File: a\n+x\n", "line 5: the patch must end with '*** End Patch'"),
        ("*** Begin Patch\n\n*** Add File: a\n+x\nstray\n*** End Patch", "line 5: expected '*** Add File"),
        ("*** Begin Patch\n*** Add File: a\n+x\n*** End Patch\n*** Delete File: b\n*** End Patch", "line 4:"),
        ("*** Begin Patch\n*** Move to: b\n*** End Patch", "line 2: '*** Move to:' must come right after"),
        (
            "*** Begin Patch\n*** Update File: a\n@@\n*** End Patch",
            "line 3: the hunk starting here has no lines",
        ),
        ("*** Begin Patch\n*** Update File: a\n*** End of File\n*** End Patch", "line 3: '*** End of File'"),
        (
            "*** Begin Patch\n*** Update File: a\n-x\n*** End of File\n-y\n*** End Patch",
            "line 5: a hunk after",
        ),
        ("*** Begin Patch\n*** Add File: \n+x\n*** End Patch", "line 2: a file header without a file path"),
        ("*** Begin Patch\n*** Delete File: a\x00b\n*** End Patch", "line 2: the path"),
        ("<<'EOF'\n\nEOF", "line 1: the heredoc holds no patch"),
        ("*** Begin Patch\n*** Begin Patch\n*** End Patch", "line 2: a second '*** Begin Patch'"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(PatchError, match="^" + message.replace("(", r"\(").replace("*", r"\*")):
        parse_patch(text)


def test_parse_structure() -> None:
    patch = parse_patch(
        "*** Begin Patch\r\n"
        "*** Update File: src//./app.py\r\n"
        "*** Move to: lib/app.py\r\n"
        "@@ class A:\r\n"
        "@@     def m(self):\r\n"
        " keep\r\n"
        "-old\r\n"
        "+new\r\n"
        "@@ -10,3 +10,3 @@\r\n"
        "-tail\r\n"
        "*** End of File\r\n"
        "*** Add File: b.txt\r\n"
        "+b\r\n"
        "*** End Patch\r\n"
    )
    update, add = patch.operations
    assert isinstance(update, UpdateFile) and isinstance(add, AddFile)
    assert (update.path, update.move_to, update.line, update.move_line) == ("src/app.py", "lib/app.py", 2, 3)
    first, second = update.hunks
    assert [(a.text, a.line) for a in first.anchors] == [("class A:", 4), ("    def m(self):", 5)]
    assert [(line.kind, line.text, line.line) for line in first.lines] == [
        (" ", "keep", 6),
        ("-", "old", 7),
        ("+", "new", 8),
    ]
    assert not first.end_of_file
    assert second.anchors == () and second.end_of_file and second.line == 9
    assert add.lines == ("b",)
    assert patch.paths_to_read() == ["src/app.py", "lib/app.py", "b.txt"]
    assert patch.line_of("lib/app.py") == 3


# -- planning ----------------------------------------------------------------------------------------


def test_plan_keeps_modes_and_rollback_restores_originals() -> None:
    patch = parse_patch(
        "*** Begin Patch\n*** Update File: run.sh\n*** Move to: bin/run.sh\n@@\n-a\n+b\n"
        "*** Add File: new.txt\n+n\n*** End Patch"
    )
    originals = {
        "run.sh": File(b"a\n", 0o755),
        "bin/run.sh": File(b"old\n", 0o600),
        "new.txt": Missing(),
    }
    changes = plan_changes(patch, originals)
    assert changes == [
        WriteFile("bin/run.sh", b"b\n", 0o755),
        RemoveFile("run.sh"),
        WriteFile("new.txt", b"n\n", 0o644),
    ]
    assert rollback_changes(changes, originals) == [
        RemoveFile("new.txt"),
        WriteFile("run.sh", b"a\n", 0o755),
        WriteFile("bin/run.sh", b"old\n", 0o600),
    ]


def test_already_applied_recognises_the_result_only() -> None:
    patch = parse_patch(
        "*** Begin Patch\n*** Update File: a.txt\n@@\n x\n-y\n+z\n*** Add File: n.txt\n+n\n"
        "*** Delete File: d.txt\n*** End Patch"
    )
    before = {"a.txt": File(b"x\ny\n"), "n.txt": Missing(), "d.txt": File(b"d\n")}
    after = {"a.txt": File(b"x\nz\n"), "n.txt": File(b"n\n"), "d.txt": Missing()}
    assert not already_applied(patch, before)
    assert already_applied(patch, after)
    assert not already_applied(patch, {**after, "d.txt": File(b"d\n")})
    assert not already_applied(patch, {**after, "a.txt": File(b"x\ny\n")})


def test_lone_surrogates_are_refused() -> None:
    patch = parse_patch("*** Begin Patch\n*** Add File: a.txt\n+\ud800\n*** End Patch")
    with pytest.raises(PatchError, match="not valid text"):
        plan_changes(patch, {"a.txt": Missing()})


def test_symlink_inside_the_root_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("one\n")
    (tmp_path / "alias.txt").symlink_to("real.txt")
    (tmp_path / "gone.txt").symlink_to("real.txt")
    apply_patch_to_directory(
        tmp_path,
        "*** Begin Patch\n*** Update File: alias.txt\n@@\n-one\n+two\n"
        "*** Delete File: gone.txt\n*** End Patch",
    )
    assert (tmp_path / "real.txt").read_text() == "two\n"
    assert os.readlink(tmp_path / "alias.txt") == "real.txt"
    assert not (tmp_path / "gone.txt").is_symlink()


# -- properties --------------------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        "*** Begin Patch",
        "*** End Patch",
        "*** Add File: a.txt",
        "*** Update File: a.txt",
        "*** Delete File: b.txt",
        "*** Move to: c.txt",
        "*** End of File",
        "@@",
        "@@ alpha",
        "@@ -1,2 +1,2 @@",
        "<<'EOF'",
        "EOF",
        "+",
        "-",
        " ",
        "",
        "+alpha",
        "-alpha",
        " beta",
        "\t",
        "***",
    ]
)
_LINE_SOUP = st.lists(_FRAGMENTS | st.text(max_size=10), max_size=14).map("\n".join)

_PATHS = st.sampled_from(
    [
        "a.txt",
        "b.txt",
        "sub/c.txt",
        "new.txt",
        "sub/new/d.txt",
        "dir",
        "./a.txt",
        "sub//c.txt",
        "../escape.txt",
        "sub/../../escape.txt",
        "/tmp/abs.txt",
        "..",
        ".",
        "",
        "a\x00b",
        "inlink/evil.txt",
        "outlink",
        "outdir/evil.txt",
        "ünï/çødé—“x”.txt",
        "a.txt/below.txt",
        "x" * 300,
    ]
) | st.text(max_size=12)
_TEXT_LINES = st.lists(
    st.sampled_from(["alpha", "beta", "gamma", "", "  alpha  ", "be\u2014ta", "\u201cq\u201d"])
    | st.text(max_size=6),
    max_size=4,
)


@st.composite
def _patches(draw: st.DrawFn) -> str:
    lines = ["*** Begin Patch"]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["add", "delete", "update"]))
        path = draw(_PATHS)
        if kind == "add":
            lines += [f"*** Add File: {path}", *(f"+{t}" for t in draw(_TEXT_LINES))]
        elif kind == "delete":
            lines.append(f"*** Delete File: {path}")
        else:
            lines.append(f"*** Update File: {path}")
            if draw(st.booleans()):
                lines.append(f"*** Move to: {draw(_PATHS)}")
            for _ in range(draw(st.integers(0, 2))):
                lines.append(draw(st.sampled_from(["@@", "@@ alpha", "@@ nowhere"])))
                for text in draw(_TEXT_LINES):
                    lines.append(draw(st.sampled_from(" -+")) + text)
                if draw(st.booleans()):
                    lines.append("*** End of File")
    lines.append("*** End Patch")
    return "\n".join(lines)


def _seed(base: Path) -> tuple[Path, Path]:
    root, outside = base / "root", base / "outside"
    (root / "sub").mkdir(parents=True)
    (root / "dir").mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("alpha\nbeta\n")
    (root / "a.txt").write_text("alpha\nbeta\ngamma\n")
    (root / "b.txt").write_bytes(b"alpha\r\nbeta\r\n")
    (root / "sub" / "c.txt").write_text("gamma\nalpha")
    (root / "inlink").symlink_to("sub")
    (root / "outlink").symlink_to("../outside/secret.txt")
    (root / "outdir").symlink_to(outside)
    return root, outside


@settings(max_examples=300, deadline=None)
@given(_LINE_SOUP | st.text(max_size=200))
def test_parse_raises_only_patch_errors(text: str) -> None:
    with contextlib.suppress(PatchError):
        parse_patch(text)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_patches() | _LINE_SOUP)
def test_apply_is_all_or_nothing_and_stays_inside(text: str) -> None:
    with tempfile.TemporaryDirectory() as base:
        root, outside = _seed(Path(base))
        before_root, before_outside = tree(root), tree(outside)
        try:
            apply_patch_to_directory(root, text)
        except PatchError:
            assert tree(root) == before_root
        assert tree(outside) == before_outside
        assert sorted(os.listdir(base)) == ["outside", "root"]
