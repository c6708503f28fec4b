"""Agents' long-term memory: merging lessons, the bounded summary, the versioned store and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from harness.cli import main
from harness.memory import (
    MEMORY_MAX_BYTES,
    MemoryInvalid,
    MemoryScope,
    MemoryStore,
    MemoryTooLarge,
    MemoryVersionMissing,
    memory_summary,
    merge_lessons,
)
from harness.object_store import LocalDirectoryStore, ObjectStore
from harness.object_store_s3 import S3ObjectStore

AGENT = MemoryScope(agent="coder")


@pytest.fixture
def objects(tmp_path: Path) -> LocalDirectoryStore:
    return LocalDirectoryStore(tmp_path / "objects")


@pytest.fixture
def store(objects: ObjectStore) -> MemoryStore:
    return MemoryStore(objects)


def bullets(text: str) -> list[str]:
    return [line[2:] for line in text.splitlines() if line.startswith("- ")]


# -- merge_lessons -----------------------------------------------------------------------------------


def test_merge_into_empty_memory_writes_title_and_bullets_in_order() -> None:
    merged, added = merge_lessons("", ["Use pnpm, not npm.", "Tests live in tests/."])
    assert merged == "# Memory\n\n- Use pnpm, not npm.\n- Tests live in tests/.\n"
    assert added == 2


def test_merge_normalises_and_dedups_case_and_whitespace() -> None:
    existing = "# Memory\n\n- Use pnpm, not npm.\n"
    lessons = [
        "  use   PNPM, not npm. ",
        "- The API  needs\n a token.",
        "* the api needs a TOKEN.",
        "",
        "   ",
        "Run ruff before committing.",
    ]
    merged, added = merge_lessons(existing, lessons)
    assert bullets(merged) == ["Use pnpm, not npm.", "The API needs a token.", "Run ruff before committing."]
    assert added == 2


def test_merge_with_nothing_new_returns_existing_unchanged() -> None:
    existing = "# Memory\n\n- Use pnpm.\n"
    assert merge_lessons(existing, ["USE  pnpm.", ""]) == (existing, 0)
    assert merge_lessons("", []) == ("", 0)


def test_merge_appends_newest_last() -> None:
    merged, _ = merge_lessons("# Memory\n\n- first\n- second\n", ["third"])
    assert bullets(merged) == ["first", "second", "third"]


def test_merge_over_the_bound_drops_the_oldest_lessons() -> None:
    existing, _ = merge_lessons("", [f"old lesson number {n:02d} " + "x" * 40 for n in range(10)])
    merged, added = merge_lessons(existing, ["brand new lesson"], max_bytes=300)
    assert len(merged.encode()) <= 300
    kept = bullets(merged)
    assert kept[-1] == "brand new lesson"
    assert added == 1
    # the survivors are the newest old ones, in order
    numbers = [int(line.split()[3]) for line in kept[:-1]]
    assert numbers == list(range(10 - len(numbers), 10))
    assert 0 < len(numbers) < 10


def test_merge_counts_only_lessons_that_survive_the_bound() -> None:
    lessons = [f"lesson {n} " + "y" * 60 for n in range(5)]
    merged, added = merge_lessons("", lessons, max_bytes=200)
    assert len(merged.encode()) <= 200
    assert added == len(bullets(merged)) < 5
    assert bullets(merged)[-1].startswith("lesson 4 ")


def test_merge_truncates_a_single_lesson_longer_than_the_bound() -> None:
    merged, added = merge_lessons("# Memory\n\n- short\n", ["é" * 500], max_bytes=200)
    assert added == 1
    assert len(merged.encode()) <= 200
    (only,) = bullets(merged)
    assert only.endswith("…") and only.startswith("éé")


def test_merge_keeps_a_persons_notes_and_drops_lessons_instead() -> None:
    existing = (
        "# Memory\n\nNotes from Ana: the staging DB is read-only.\n\n"
        "Ask before deploying.\n\n- old one\n- old two\n"
    )
    merged, added = merge_lessons(existing, ["new " + "z" * 40], max_bytes=130)
    assert added == 1
    assert len(merged.encode()) <= 130
    assert merged == (
        "# Memory\n\nNotes from Ana: the staging DB is read-only.\n\nAsk before deploying.\n\n"
        "- new " + "z" * 40 + "\n"
    )


def test_merge_keeps_text_without_the_format() -> None:
    merged, added = merge_lessons("Always answer in French.\n", ["Prefer small commits."])
    assert merged == "# Memory\n\nAlways answer in French.\n\n- Prefer small commits.\n"
    assert added == 1


def test_merge_cuts_notes_only_when_they_alone_are_over_the_bound() -> None:
    merged, added = merge_lessons("notes " * 100, ["a lesson"], max_bytes=200)
    assert len(merged.encode()) <= 200
    assert merged.startswith("# Memory\n\nnotes notes")
    assert added == 0


def test_merge_result_fits_the_default_bound() -> None:
    merged, _ = merge_lessons("", [f"lesson {n} " + "w" * 200 for n in range(200)])
    assert len(merged.encode()) <= MEMORY_MAX_BYTES
    assert bullets(merged)[-1].startswith("lesson 199 ")


# -- memory_summary ----------------------------------------------------------------------------------


def test_summary_of_empty_memory_is_empty() -> None:
    assert memory_summary("") == ""
    assert memory_summary("# Memory\n") == ""


def test_summary_keeps_all_lessons_when_they_fit() -> None:
    assert memory_summary("# Memory\n\n- one\n- two\n") == "- one\n- two"


def test_summary_is_bounded_keeps_the_newest_and_notes_the_rest() -> None:
    text, _ = merge_lessons("", [f"lesson {n:03d} " + "v" * 30 for n in range(100)])
    summary = memory_summary(text, max_chars=500)
    assert len(summary) <= 500
    note, *lines = summary.splitlines()
    kept = [line[2:] for line in lines]
    assert note == f"({100 - len(kept)} older lessons in memory/MEMORY.md)"
    assert kept == bullets(text)[-len(kept) :]
    assert kept[-1].startswith("lesson 099 ")


def test_summary_shows_part_of_a_newest_lesson_too_long_for_it() -> None:
    summary = memory_summary("# Memory\n\n- older\n- " + "u" * 500 + "\n", max_chars=100)
    assert len(summary) <= 100
    assert summary.startswith("(1 older lesson in memory/MEMORY.md)\n- uuu")
    assert summary.endswith("…")


def test_summary_includes_short_notes_and_mentions_long_ones() -> None:
    assert memory_summary("Ask before deploying.\n\n- one\n") == "Ask before deploying.\n- one"
    summary = memory_summary("n" * 300 + "\n\n- one\n", max_chars=200)
    assert summary == "(notes in memory/MEMORY.md)\n- one"


# -- the store ---------------------------------------------------------------------------------------


def test_empty_store_reads_nothing(store: MemoryStore) -> None:
    assert store.read(AGENT) == ""
    assert store.history(AGENT) == []


def test_write_read_history_and_old_versions(store: MemoryStore) -> None:
    first, _ = merge_lessons("", ["one"])
    second, _ = merge_lessons(first, ["two"])
    v1 = store.write(AGENT, first, "lessons from run r1", run_id="r1", lessons_added=1)
    v2 = store.write(AGENT, second, "lessons from run r2", run_id="r2", lessons_added=1)
    assert (v1.version, v2.version) == (1, 2)
    assert store.read(AGENT) == second
    assert store.read_version(AGENT, 1) == first
    history = store.history(AGENT)
    assert [(h.version, h.reason, h.run_id, h.lessons_added) for h in history] == [
        (1, "lessons from run r1", "r1", 1),
        (2, "lessons from run r2", "r2", 1),
    ]
    assert history[1].size == len(second.encode())
    assert history[0].created_at <= history[1].created_at


def test_missing_version_is_a_clear_error(store: MemoryStore) -> None:
    store.write(AGENT, "# Memory\n\n- one\n", "lessons from run r1")
    with pytest.raises(MemoryVersionMissing, match=r"has no version 7: the newest is version 1"):
        store.read_version(AGENT, 7)
    with pytest.raises(MemoryVersionMissing, match="has no versions"):
        store.read_version(MemoryScope(agent="other"), 1)


def test_clear_is_reversible_with_revert(store: MemoryStore) -> None:
    text = "# Memory\n\n- keep me\n"
    store.write(AGENT, text, "lessons from run r1")
    cleared = store.clear(AGENT)
    assert (cleared.version, cleared.reason, cleared.size) == (2, "cleared", 0)
    assert store.read(AGENT) == ""
    reverted = store.revert(AGENT, 1)
    assert (reverted.version, reverted.reason) == (3, "reverted to 1")
    assert store.read(AGENT) == text
    assert [h.reason for h in store.history(AGENT)] == ["lessons from run r1", "cleared", "reverted to 1"]


def test_revert_to_a_missing_version_writes_nothing(store: MemoryStore) -> None:
    store.write(AGENT, "# Memory\n\n- one\n", "lessons from run r1")
    with pytest.raises(MemoryVersionMissing):
        store.revert(AGENT, 5)
    assert len(store.history(AGENT)) == 1


def test_a_keyed_scope_is_separate_from_the_keyless_one(store: MemoryStore) -> None:
    keyed = MemoryScope(agent="coder", key="_")
    other_agent = MemoryScope(agent="coder2")
    store.write(AGENT, "# Memory\n\n- for everyone\n", "lessons from run r1")
    store.write(keyed, "# Memory\n\n- for key _\n", "lessons from run r2")
    assert store.read(AGENT) == "# Memory\n\n- for everyone\n"
    assert store.read(keyed) == "# Memory\n\n- for key _\n"
    assert store.read(other_agent) == ""
    assert [h.version for h in store.history(keyed)] == [1]
    assert AGENT.prefix() == "memory/coder/_/"
    assert keyed.prefix() == "memory/coder/keys/_/"


def test_write_skips_a_number_another_writer_took(store: MemoryStore, objects: LocalDirectoryStore) -> None:
    store.write(AGENT, "# Memory\n\n- one\n", "lessons from run r1")

    class RacingStore(LocalDirectoryStore):
        """Another run writes version 2 between this writer's listing and its put."""

        raced = False

        def exists(self, key: str) -> bool:
            if not self.raced and key.endswith("00000002.json"):
                self.raced = True
                MemoryStore(objects).write(AGENT, "# Memory\n\n- theirs\n", "lessons from run r2")
            return super().exists(key)

    mine = MemoryStore(RacingStore(objects.root)).write(AGENT, "# Memory\n\n- mine\n", "lessons from run r3")
    assert mine.version == 3
    assert store.read_version(AGENT, 2) == "# Memory\n\n- theirs\n"
    assert store.read(AGENT) == "# Memory\n\n- mine\n"


def test_write_moves_on_when_a_racing_put_replaced_its_version(
    store: MemoryStore, objects: LocalDirectoryStore
) -> None:
    class OverwrittenStore(LocalDirectoryStore):
        """Another run's put of the same number lands right after this writer's."""

        raced = False

        def put(self, key: str, data: bytes) -> None:
            super().put(key, data)
            if not self.raced:
                self.raced = True
                document = json.loads(data)
                document["text"], document["writer"] = "# Memory\n\n- theirs\n", "someone-else"
                super().put(key, json.dumps(document).encode())

    mine = MemoryStore(OverwrittenStore(objects.root)).write(AGENT, "# Memory\n\n- mine\n", "r1")
    assert mine.version == 2
    assert store.read_version(AGENT, 1) == "# Memory\n\n- theirs\n"
    assert store.read_version(AGENT, 2) == "# Memory\n\n- mine\n"


def test_write_refuses_text_over_the_bound(store: MemoryStore) -> None:
    with pytest.raises(MemoryTooLarge, match="over the 16000 byte bound"):
        store.write(AGENT, "x" * (MEMORY_MAX_BYTES + 1), "too much")
    assert store.history(AGENT) == []


def test_a_corrupt_version_is_loud(store: MemoryStore, objects: LocalDirectoryStore) -> None:
    store.write(AGENT, "# Memory\n\n- one\n", "lessons from run r1")
    objects.put("memory/coder/_/versions/00000001.json", b"{not json")
    with pytest.raises(MemoryInvalid, match=r"version 1 .* is corrupt"):
        store.read(AGENT)


@pytest.mark.parametrize(
    ("agent", "key"), [("", None), ("a b", None), ("..", None), ("a" * 65, None), ("ok", "x/y"), ("ok", ".")]
)
def test_bad_scope_names_are_refused(agent: str, key: str | None) -> None:
    with pytest.raises(ValidationError):
        MemoryScope(agent=agent, key=key)


def test_round_trip_on_s3(s3_store: S3ObjectStore) -> None:
    store = MemoryStore(s3_store)
    scope = MemoryScope(agent="coder", key="project-7")
    text, added = merge_lessons("", ["Deploys need approval."])
    store.write(scope, text, "lessons from run r1", run_id="r1", lessons_added=added)
    store.clear(scope)
    store.revert(scope, 1)
    assert store.read(scope) == text
    assert store.read(MemoryScope(agent="coder")) == ""
    assert [h.reason for h in store.history(scope)] == ["lessons from run r1", "cleared", "reverted to 1"]
    assert [stored.key for stored in s3_store.list("memory/")] == [
        f"memory/coder/keys/project-7/versions/0000000{n}.json" for n in (1, 2, 3)
    ]


# -- the CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner whose `farline` keeps its memory in a local store under tmp_path."""
    for variable in ("FARLINE_SNAPSHOT_STORE", "FARLINE_SNAPSHOT_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("FARLINE_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def cli_store(tmp_path: Path) -> MemoryStore:
    return MemoryStore(LocalDirectoryStore(tmp_path / "data" / "snapshots"))


def test_cli_show_without_memory(cli: CliRunner) -> None:
    result = cli.invoke(main, ["memory", "show", "coder"])
    assert result.exit_code == 0, result.output
    assert result.output == "No memory for agent coder.\n"
    result = cli.invoke(main, ["memory", "history", "coder", "--key", "alice"])
    assert result.output == "No memory for agent coder (key alice).\n"


def test_cli_show_and_history(cli: CliRunner, tmp_path: Path) -> None:
    store = cli_store(tmp_path)
    first, _ = merge_lessons("", ["one"])
    second, _ = merge_lessons(first, ["two"])
    store.write(AGENT, first, "lessons from run r1", lessons_added=1)
    store.write(AGENT, second, "lessons from run r2", lessons_added=1)

    result = cli.invoke(main, ["memory", "show", "coder"])
    assert result.exit_code == 0, result.output
    assert result.output == second
    assert cli.invoke(main, ["memory", "show", "coder", "--version", "1"]).output == first

    result = cli.invoke(main, ["memory", "history", "coder"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[0] == "1" and " UTC " in lines[0]
    assert lines[0].endswith(f"{len(first.encode())} B  lessons from run r1 (+1)")
    assert lines[1].endswith(f"{len(second.encode())} B  lessons from run r2 (+1)")


def test_cli_clear_then_revert(cli: CliRunner, tmp_path: Path) -> None:
    store = cli_store(tmp_path)
    scope = MemoryScope(agent="coder", key="alice")
    text, _ = merge_lessons("", ["Alice wants short answers."])
    store.write(scope, text, "lessons from run r1")

    result = cli.invoke(main, ["memory", "clear", "coder", "--key", "alice"])
    assert result.exit_code == 0, result.output
    assert "version 2 is empty" in result.output
    assert "Undo with: farline memory revert coder 1 --key alice" in result.output
    assert store.read(scope) == ""
    assert cli.invoke(main, ["memory", "show", "coder", "--key", "alice"]).output == (
        "No memory for agent coder (key alice).\n"
    )

    result = cli.invoke(main, ["memory", "revert", "coder", "1", "--key", "alice"])
    assert result.exit_code == 0, result.output
    assert "is now version 3, a copy of version 1" in result.output
    assert "Undo with: farline memory revert coder 2 --key alice" in result.output
    assert store.read(scope) == text
    assert cli.invoke(main, ["memory", "show", "coder", "--key", "alice"]).output == text


def test_cli_clear_without_memory_writes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(main, ["memory", "clear", "coder"])
    assert result.exit_code == 0, result.output
    assert "Nothing to clear" in result.output
    assert cli_store(tmp_path).history(AGENT) == []


def test_cli_errors_say_what_to_fix(cli: CliRunner, tmp_path: Path) -> None:
    cli_store(tmp_path).write(AGENT, "# Memory\n\n- one\n", "lessons from run r1")
    result = cli.invoke(main, ["memory", "revert", "coder", "9"])
    assert result.exit_code == 1
    assert "has no version 9: the newest is version 1" in result.output
    result = cli.invoke(main, ["memory", "show", "bad name"])
    assert result.exit_code == 1
    assert "bad agent 'bad name': use 1-64 letters, digits" in result.output
    result = cli.invoke(main, ["memory", "show", "coder", "--key", "a/b"])
    assert result.exit_code == 1
    assert "bad key 'a/b': use 1-128 letters" in result.output
