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


# the talk's example: two people of the Conference Launch Desk are agents; assigning a task to one
# in the tracker starts its run on the assigning run's workspace (harness/agent_dispatch.py)
PROGRAM_EDITOR_AGENT = AgentSpec(
    name="program-editor",
    instructions=(
        "You are the Program Editor of the Conference Launch Desk. Refine the documents in /workspace "
        "(working/ holds drafts). When a document is ready, assign its task to the person who produces "
        "the assets (search_assignees finds them, update_assignee assigns): their run starts on your "
        "workspace."
    ),
    tools=["exec_command", "apply_patch", "list_tasks", "search_assignees", "update_assignee"],
)
ASSET_PRODUCER_AGENT = AgentSpec(
    name="asset-producer",
    instructions=(
        "You are the Asset Producer of the Conference Launch Desk. Your workspace starts as the Program "
        "Editor left it: read the refined documents in working/ and put what you produce in output/."
    ),
    tools=["exec_command", "apply_patch", "list_tasks", "update_status"],
)
# a person of the tracker -> the agent that works as them
AGENTS_FOR_PEOPLE = {"Program Editor": PROGRAM_EDITOR_AGENT.name, "Asset Producer": ASSET_PRODUCER_AGENT.name}


def default_registry() -> AgentRegistry:
    """The agents a plain `python worker.py` serves."""
    return AgentRegistry([DEMO_AGENT, TRACKER_AGENT, PROGRAM_EDITOR_AGENT, ASSET_PRODUCER_AGENT])
