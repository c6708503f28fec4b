"""The extract_memory activity: at a run's end, the model's durable lessons merged into MEMORY.md."""

from __future__ import annotations

import asyncio

import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.compaction import fit_to_window
from activities.model import HEARTBEAT_INTERVAL_S, heartbeat_every, model_turn
from harness.config import FarlineConfig
from harness.context_chain import ContextMissing, ContextStore
from harness.conversation import ConversationItem, MessageItem, ModelRequest
from harness.memory import MemoryScope, MemoryStore, merge_lessons
from harness.memory_lessons import lessons_prompt, parse_lessons
from harness.specs import ModelSettings, Usage

log = structlog.get_logger(__name__)


class MemoryRequest(BaseModel):
    scope: MemoryScope
    settings: ModelSettings
    instructions: str
    # the run's context as a model request carries it: the stored id and what is new since
    context: str | None
    items: list[ConversationItem]
    context_window: int


class MemoryUpdate(BaseModel):
    lessons: list[str]
    added: int
    # the memory's new version (None when nothing new was learned) and its size
    version: int | None
    size: int
    usage: Usage


class MemoryActivities:
    def __init__(self, config: FarlineConfig, contexts: ContextStore, memories: MemoryStore) -> None:
        self._config = config
        self._contexts = contexts
        self._memories = memories

    @activity.defn(name="extract_memory")
    async def extract_memory(self, request: MemoryRequest) -> MemoryUpdate:
        heartbeats = asyncio.create_task(heartbeat_every(HEARTBEAT_INTERVAL_S))
        try:
            return await self._extract(request)
        finally:
            heartbeats.cancel()

    async def _extract(self, request: MemoryRequest) -> MemoryUpdate:
        try:
            before = await asyncio.to_thread(self._contexts.items, request.context)
        except ContextMissing as error:
            raise ApplicationError(str(error), type="ContextMissing", non_retryable=True) from None
        existing = await asyncio.to_thread(self._memories.read, request.scope)
        items = fit_to_window([*before, *request.items], int(request.context_window * 0.7))
        turn = await model_turn(
            self._config,
            ModelRequest(
                settings=request.settings,
                instructions=request.instructions,
                items=[*items, MessageItem(role="user", content=lessons_prompt(existing))],
            ),
        )
        lessons = parse_lessons(turn.text)
        merged, added = merge_lessons(existing, lessons)
        version = None
        if added:
            run_id = activity.info().workflow_id
            written = await asyncio.to_thread(
                self._memories.write,
                request.scope,
                merged,
                f"lessons from run {run_id}",
                run_id,
                added,
            )
            version = written.version
        log.info(
            "memory.extracted",
            agent=request.scope.agent,
            key=request.scope.key,
            lessons=len(lessons),
            added=added,
            version=version,
        )
        return MemoryUpdate(
            lessons=lessons, added=added, version=version, size=len(merged.encode()), usage=turn.usage
        )
