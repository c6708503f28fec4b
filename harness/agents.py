"""Agents are declared in Python and registered on the worker; a RunRequest names one."""

from __future__ import annotations

from collections.abc import Iterable

from harness.specs import AgentSpec


class UnknownAgent(LookupError):
    pass


class AgentRegistry:
    """The agents one worker can run, by name."""

    def __init__(self, agents: Iterable[AgentSpec] = ()) -> None:
        self._agents: dict[str, AgentSpec] = {}
        for agent in agents:
            self.register(agent)

    def register(self, agent: AgentSpec) -> AgentSpec:
        if agent.name in self._agents:
            raise ValueError(f"an agent named {agent.name!r} is already registered")
        self._agents[agent.name] = agent
        return agent

    def get(self, name: str) -> AgentSpec:
        try:
            return self._agents[name]
        except KeyError:
            known = ", ".join(sorted(self._agents)) or "none"
            raise UnknownAgent(
                f"no agent named {name!r} is registered on this worker (known: {known})"
            ) from None

    @property
    def names(self) -> list[str]:
        return sorted(self._agents)


DEMO_AGENT = AgentSpec(
    name="demo",
    instructions=(
        "You are Farline's demo agent. You work in a sandboxed Linux workspace at /workspace with no "
        "network. Use the exec_command tool to run shell commands there, look at their output, and "
        "answer the user's task briefly once you are done."
    ),
)


TRACKER_AGENT = AgentSpec(
    name="tracker",
    instructions=(
        "You help run the Conference Launch Desk's task tracker. Use list_tasks, search_assignees, "
        "update_assignee and update_status to move the work along; moving a task to DONE waits for a "
        "person's approval. You also have a sandboxed workspace at /workspace for any drafting."
    ),
    tools=[
        "exec_command",
        "write_stdin",
        "apply_patch",
        "view_image",
        "list_tasks",
        "search_assignees",
        "update_assignee",
        "update_status",
    ],
)


def default_registry() -> AgentRegistry:
    """The agents a plain `python worker.py` serves."""
    return AgentRegistry([DEMO_AGENT, TRACKER_AGENT])
