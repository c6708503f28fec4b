"""A model's context by reference: a chain of content-addressed segments.

Each model call stores one segment, {parent, items}: the items that were new
in its request plus the items the model answered. The segment's id (sha256 of
its canonical JSON) names the whole context up to it, so the next call sends
that id and only what is new since. Every item thus enters the workflow's
history once, and history grows with the run's new work, not with the square of
the number of turns.

Segments live in the run store (the snapshot store's directory or bucket, under
`context/`); a worker keeps the contexts it built last in memory, and rebuilds
any other by walking the chain from the store.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import zstandard
from pydantic import BaseModel, ValidationError

from harness.conversation import ConversationItem
from harness.object_store import ObjectMissing, ObjectStore

# contexts kept in memory per worker (each a list of references to items)
CACHED_CONTEXTS = 64


class ContextMissing(Exception):
    """A context segment a request refers to is not in the store (or is corrupt)."""


class ContextSegment(BaseModel):
    parent: str | None
    items: list[ConversationItem]


class ContextStore:
    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self._cache: OrderedDict[str, list[ConversationItem]] = OrderedDict()
        self._lock = threading.Lock()

    def append(self, parent: str | None, items: list[ConversationItem]) -> str:
        """Store the segment {parent, items}; its id names the context parent + items."""
        segment = ContextSegment(parent=parent, items=items)
        raw = segment.model_dump_json().encode()
        segment_id = hashlib.sha256(raw).hexdigest()
        key = f"context/{segment_id[:2]}/{segment_id}"
        if not self.objects.exists(key):
            self.objects.put(key, zstandard.ZstdCompressor(level=3).compress(raw))
        before = self._cached(parent) if parent is not None else []
        if before is not None:
            self._remember(segment_id, [*before, *items])
        return segment_id

    def items(self, head: str | None) -> list[ConversationItem]:
        """The whole context a head id names, oldest item first."""
        if head is None:
            return []
        cached = self._cached(head)
        if cached is not None:
            return list(cached)
        # walk back to a context this worker knows (or the start), then forward
        segments: list[list[ConversationItem]] = []
        base: list[ConversationItem] = []
        cursor: str | None = head
        while cursor is not None:
            known = self._cached(cursor)
            if known is not None:
                base = known
                break
            segment = self._load(cursor)
            segments.append(segment.items)
            cursor = segment.parent
        context = list(base)
        for items in reversed(segments):
            context.extend(items)
        self._remember(head, context)
        return list(context)

    def _load(self, segment_id: str) -> ContextSegment:
        try:
            raw = zstandard.ZstdDecompressor().decompress(
                self.objects.get(f"context/{segment_id[:2]}/{segment_id}")
            )
        except ObjectMissing:
            raise ContextMissing(
                f"context segment {segment_id} is missing from {self.objects.describe()}"
            ) from None
        except zstandard.ZstdError as error:
            raise ContextMissing(f"context segment {segment_id} is corrupt: {error}") from None
        if hashlib.sha256(raw).hexdigest() != segment_id:
            raise ContextMissing(f"context segment {segment_id} is corrupt: its content hash differs")
        try:
            return ContextSegment.model_validate_json(raw)
        except ValidationError as error:
            raise ContextMissing(f"context segment {segment_id} is unreadable: {error}") from None

    def _cached(self, head: str) -> list[ConversationItem] | None:
        with self._lock:
            found = self._cache.get(head)
            if found is not None:
                self._cache.move_to_end(head)
            return found

    def _remember(self, head: str, context: list[ConversationItem]) -> None:
        with self._lock:
            self._cache[head] = context
            self._cache.move_to_end(head)
            while len(self._cache) > CACHED_CONTEXTS:
                self._cache.popitem(last=False)
