"""Reading the model's lessons at the end of a run: JSON first, bullets as a fallback."""

from __future__ import annotations

from harness.memory_lessons import MAX_LESSON_CHARS, MAX_LESSONS, MEMORY_MARKER, lessons_prompt, parse_lessons


def test_the_prompt_is_marked_and_shows_what_memory_holds() -> None:
    prompt = lessons_prompt("# Memory\n- Use make deps.\n")
    assert prompt.startswith(MEMORY_MARKER)
    assert "- Use make deps." in prompt
    assert "(nothing yet)" in lessons_prompt("")


def test_json_lessons_are_read_even_inside_a_code_fence() -> None:
    answer = 'Here:\n```json\n{"lessons": ["Run  tests\\n with -x.", 7, "", "Prefer rg."]}\n```'
    assert parse_lessons(answer) == ["Run tests with -x.", "Prefer rg."]
    assert parse_lessons('{"lessons": []}') == []


def test_bullets_are_the_fallback_and_everything_is_bounded() -> None:
    assert parse_lessons("Lessons:\n- one\n  * two\nnot a lesson") == ["one", "two"]
    many = "\n".join(f"- lesson {n} " + "x" * 1000 for n in range(30))
    lessons = parse_lessons(many)
    assert len(lessons) == MAX_LESSONS and all(len(lesson) == MAX_LESSON_CHARS for lesson in lessons)
    assert parse_lessons("nothing to keep") == []
