"""The model's context as the workflow holds it, and its compaction.

Workflow code (deterministic). By reference (every run since contexts went by
reference) the workflow holds the id of the stored context and the items that
are new since; older runs hold and send the whole list. When the context nears
the model's window, a compaction activity replaces it with a handoff summary.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.compaction import CompactionRequest, CompactionResult
    from harness.compaction import estimate_tokens
    from harness.conversation import CompactionItem, ConversationItem, ModelTurn, since_last_compaction
    from harness.specs import CompactionSettings, ModelSettings

COMPACTION_TIMEOUT = timedelta(minutes=15)
COMPACTION_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
    non_retryable_error_types=["ModelRequestRejected", "ContextMissing", "CompactionFailed"],
)


class Conversation:
    def __init__(
        self,
        by_reference: bool,
        context: str | None = None,
        pending: list[ConversationItem] | None = None,
        length: int = 0,
        context_tokens: int = 0,
    ) -> None:
        self.by_reference = by_reference
        self.context = context
        # by reference: the items not yet in the stored context; otherwise: every item
        self.items: list[ConversationItem] = list(pending or [])
        # items in the stored context (for the web UI's counts)
        self.stored_length = length
        # tokens of the context after the last model call
        self.context_tokens = context_tokens

    @property
    def length(self) -> int:
        return self.stored_length + len(self.items) if self.by_reference else len(self.items)

    def add(self, *items: ConversationItem) -> None:
        self.items.extend(items)

    def request_items(self) -> list[ConversationItem]:
        return self.items

    def after_turn(self, turn: ModelTurn) -> None:
        """Take a model turn in (a server-side compaction in it restarts the context)."""
        self.context_tokens = turn.context_tokens
        compacted = any(isinstance(item, CompactionItem) for item in turn.items)
        if not self.by_reference:
            self.items = since_last_compaction([*self.items, *turn.items])
            return
        if compacted:
            self.stored_length = len(since_last_compaction(turn.items))
        else:
            self.stored_length += len(self.items) + len(turn.items)
        self.context = turn.context
        self.items = []

    def needs_compaction(self, settings: CompactionSettings) -> bool:
        """Whether Farline must compact before the next call (never in 'server' mode)."""
        if not self.by_reference or settings.mode != "farline":
            return False
        return self.context_tokens + estimate_tokens(self.items) >= settings.threshold

    async def compact(
        self,
        settings: ModelSettings,
        instructions: str,
        compaction: CompactionSettings,
        number: int,
        turns: int,
    ) -> CompactionResult:
        result = await workflow.execute_activity(
            "compact_context",
            CompactionRequest(
                settings=settings,
                instructions=instructions,
                context=self.context,
                items=self.items,
                compaction=number,
                turns_replaced=turns,
                context_window=compaction.context_window,
                recent_user_tokens=compaction.recent_user_tokens,
            ),
            result_type=CompactionResult,
            start_to_close_timeout=COMPACTION_TIMEOUT,
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=COMPACTION_RETRY_POLICY,
            summary=f"compaction {number}: about {self.context_tokens + estimate_tokens(self.items)} tokens",
        )
        self.context, self.items = result.context, []
        self.stored_length, self.context_tokens = result.items, result.tokens_after
        return result
