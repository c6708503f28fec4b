"""Asking the model, at the end of a run, for the lessons worth keeping, and reading its answer."""

from __future__ import annotations

import json
import re

MEMORY_MARKER = "[farline:remember]"
MAX_LESSONS = 12
MAX_LESSON_CHARS = 400


def lessons_prompt(existing: str) -> str:
    known = existing.strip() or "(nothing yet)"
    return f"""{MEMORY_MARKER} This run is over. Write down what a future run of this agent should know:
durable lessons about the environment, the tools, the user's preferences and the pitfalls met,
stated so they hold beyond this one task. Leave out this task's details and anything already in
memory. At most {MAX_LESSONS} lessons, one sentence each. Answer with JSON only, in the form
{{"lessons": ["...", "..."]}}; {{"lessons": []}} when nothing is worth keeping. Do not call tools.

Already in memory:
{known}"""


def parse_lessons(text: str) -> list[str]:
    """The lessons in the model's answer: its JSON, or failing that its bullet lines."""
    lessons = _json_lessons(text)
    if lessons is None:
        lessons = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith(("- ", "* "))]
    kept = [" ".join(lesson.split())[:MAX_LESSON_CHARS] for lesson in lessons if isinstance(lesson, str)]
    return [lesson for lesson in kept if lesson][:MAX_LESSONS]


def _json_lessons(text: str) -> list[object] | None:
    match = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if match is None:
        return None
    try:
        document = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if isinstance(document, dict) and isinstance(document.get("lessons"), list):
        return document["lessons"]
    return None
