"""Looking up a named agent in the worker's registry (an activity, so the spec enters history once)."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from harness.agents import AgentRegistry, UnknownAgent
from harness.specs import AgentSpec


class AgentActivities:
    def __init__(self, registry: AgentRegistry) -> None:
        self._registry = registry

    @activity.defn(name="resolve_agent")
    async def resolve_agent(self, name: str) -> AgentSpec:
        try:
            return self._registry.get(name)
        except UnknownAgent as error:
            raise ApplicationError(str(error), type="UnknownAgent", non_retryable=True) from None
