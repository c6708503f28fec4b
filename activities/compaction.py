"""The compaction activity: a model call writes a handoff summary that replaces the context."""

from __future__ import annotations

import asyncio

import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.model import HEARTBEAT_INTERVAL_S, REJECTED_ERROR_TYPE, heartbeat_every, model_turn
from harness.compaction import COMPACTION_PROMPT, compacted_context, estimate_tokens
from harness.config import FarlineConfig
from harness.context_chain import ContextMissing, ContextStore
from harness.conversation import ConversationItem, FunctionCallOutputItem, MessageItem, ModelRequest
from harness.specs import ModelSettings, Usage

log = structlog.get_logger(__name__)

# how often the summary request is retried with fewer items after it overflowed the window
OVERFLOW_RETRIES = 6
_OVERFLOW_WORDS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "too long",
    "too many tokens",
)


class CompactionRequest(BaseModel):
    settings: ModelSettings
    instructions: str
    # the stored context and what is new since (as a model request carries them)
    context: str | None
    items: list[ConversationItem]
    # this compaction's number in the run, and the model turns taken so far
    compaction: int
    turns_replaced: int
    context_window: int
    recent_user_tokens: int


class CompactionResult(BaseModel):
    context: str
    items: int
    summary: str
    tokens_before: int
    tokens_after: int
    # oldest items left out of the summary request because it overflowed the window
    dropped_items: int
    usage: Usage


class CompactionActivities:
    def __init__(self, config: FarlineConfig, contexts: ContextStore) -> None:
        self._config = config
        self._contexts = contexts

    @activity.defn(name="compact_context")
    async def compact_context(self, request: CompactionRequest) -> CompactionResult:
        heartbeats = asyncio.create_task(heartbeat_every(HEARTBEAT_INTERVAL_S))
        try:
            return await self._compact(request)
        finally:
            heartbeats.cancel()

    async def _compact(self, request: CompactionRequest) -> CompactionResult:
        try:
            before = await asyncio.to_thread(self._contexts.items, request.context)
        except ContextMissing as error:
            raise ApplicationError(str(error), type="ContextMissing", non_retryable=True) from None
        items = [*before, *request.items]
        tokens_before = estimate_tokens(items)
        # the summary request must itself fit: leave room for the prompt and the answer
        working = fit_to_window(items, int(request.context_window * 0.8))
        for _attempt in range(OVERFLOW_RETRIES):
            summary_request = ModelRequest(
                settings=request.settings,
                instructions=request.instructions,
                items=[*working, MessageItem(role="user", content=COMPACTION_PROMPT)],
            )
            try:
                turn = await model_turn(self._config, summary_request)
                break
            except ApplicationError as error:
                if error.type != REJECTED_ERROR_TYPE or not _overflowed(str(error)) or len(working) < 2:
                    raise
                working = _without_oldest(working, max(1, len(working) // 4))
        else:
            raise ApplicationError(
                f"the summary request still overflowed the model's window after {OVERFLOW_RETRIES} tries",
                type="CompactionFailed",
                non_retryable=True,
            )
        summary = turn.text.strip() or "(the model wrote no summary)"
        compacted = compacted_context(
            items, summary, request.turns_replaced, request.compaction, request.recent_user_tokens
        )
        head = await asyncio.to_thread(self._contexts.append, None, compacted)
        result = CompactionResult(
            context=head,
            items=len(compacted),
            summary=summary,
            tokens_before=tokens_before,
            tokens_after=estimate_tokens(compacted),
            dropped_items=len(items) - len(working),
            usage=turn.usage,
        )
        log.info(
            "context compacted",
            workflow_id=activity.info().workflow_id,
            compaction=request.compaction,
            **result.model_dump(include={"items", "tokens_before", "tokens_after", "dropped_items"}),
        )
        return result


def _overflowed(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in _OVERFLOW_WORDS)


def fit_to_window(items: list[ConversationItem], budget: int) -> list[ConversationItem]:
    working = list(items)
    while len(working) > 1 and estimate_tokens(working) > budget:
        working = _without_oldest(working, max(1, len(working) // 10))
    return working


def _without_oldest(items: list[ConversationItem], count: int) -> list[ConversationItem]:
    """Drop the `count` oldest items, and any tool output left without its call."""
    rest = items[count:]
    while len(rest) > 1 and isinstance(rest[0], FunctionCallOutputItem):
        rest = rest[1:]
    return rest
