"""Compaction: when a context nears the model's window, a handoff summary replaces it.

Pure functions shared by the compaction activity, the workflow and the scripted
model: the prompt, token estimates, and the compacted context (the task, the
most recent user messages up to a budget, and the summary).
"""

from __future__ import annotations

import re

from harness.conversation import ConversationItem, MessageItem

# the last user message of a compaction request starts with this (the scripted model keys on it)
COMPACTION_MARKER = "[farline:compact]"
COMPACTION_PROMPT = f"""{COMPACTION_MARKER} Your context is nearly full. Write a handoff summary that lets
you (or another agent) continue this work with nothing else to go on. Use these sections:
Goal; Progress so far; Decisions and why; Constraints; Next steps; Critical data (exact paths,
commands, identifiers, values, errors). Be complete and specific; do not call tools."""
# how the summary says how many model turns it replaces (the scripted model counts on it)
_REPLACED = re.compile(r"\(this summary replaces the first (\d+) model turns\)")
# bytes per token, for servers that report no usage
BYTES_PER_TOKEN = 4


def estimate_tokens(items: list[ConversationItem]) -> int:
    return sum(len(item.model_dump_json()) for item in items) // BYTES_PER_TOKEN


def compacted_context(
    items: list[ConversationItem], summary: str, turns_replaced: int, compaction: int, recent_user_tokens: int
) -> list[ConversationItem]:
    """The context after a compaction: the task, the latest user messages within budget, the summary."""
    users = [item for item in items if isinstance(item, MessageItem) and item.role == "user"]
    first = next((item for item in users if not item.content.startswith("[farline")), None)
    kept: list[ConversationItem] = []
    budget = recent_user_tokens
    for item in reversed(users):
        if item is first or item.content.startswith(COMPACTION_MARKER) or _REPLACED.search(item.content):
            continue
        cost = len(item.content) // BYTES_PER_TOKEN
        if cost > budget:
            break
        budget -= cost
        kept.insert(0, item)
    head: list[ConversationItem] = [first] if first is not None else []
    note = MessageItem(
        role="user",
        content=f"[farline] Compaction {compaction} (this summary replaces the first {turns_replaced} model "
        f"turns). Handoff summary of the work so far:\n\n{summary}",
    )
    return [*head, *kept, note]


def turns_replaced(texts: list[str]) -> int:
    """How many model turns earlier compactions replaced, from the summaries in a context."""
    return max((int(match.group(1)) for text in texts for match in _REPLACED.finditer(text)), default=0)
