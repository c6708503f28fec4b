"""Sub-agents: the tools an agent uses to run other agents as child workflows, and what it sees of them.

A sub-agent is a child AgentRun with its own sandbox. Its workspace is a fork
of the parent's (the parent's newest snapshot: content-addressed, nothing is
copied), empty (only its own agent's manifest), or shared (the parent's live
sandbox). When it completes, its final message and its `output/` files are
delivered into the parent's workspace under `handoffs/<agent id>/`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.specs import ParentLink, SubagentLimits
from harness.tools import ToolDefinition, spec_for

__all__ = ["ParentLink", "SubagentLimits"]

HANDOFFS_DIR = "handoffs"
# what a sub-agent hands back from its workspace
OUTPUT_DIR = "output"
RESULT_FILE = "RESULT.md"
MAX_MESSAGE_SHOWN = 4_000


class SubagentState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CLOSED = "closed"

    @property
    def finished(self) -> bool:
        return self in (SubagentState.COMPLETED, SubagentState.FAILED, SubagentState.CLOSED)


class Subagent(BaseModel):
    """One sub-agent as its parent knows it (the `agents` query, list_agents, wait_agents)."""

    agent_id: str
    agent: str
    task: str
    workspace: str
    workflow_id: str
    state: SubagentState = SubagentState.PENDING
    waiting_on: str | None = None
    final_message: str | None = None
    error: str | None = None
    # the child's newest snapshot when it ended, and where its results landed in the parent's workspace
    snapshot_id: str | None = None
    delivered_to: str | None = None

    def report(self) -> dict[str, object]:
        """What the model is shown of this sub-agent."""
        shown: dict[str, object] = {
            "agent_id": self.agent_id,
            "agent": self.agent,
            "status": self.state.value,
        }
        if self.waiting_on:
            shown["waiting_on"] = self.waiting_on
        if self.final_message is not None:
            message = self.final_message
            if len(message) > MAX_MESSAGE_SHOWN:
                message = (
                    message[:MAX_MESSAGE_SHOWN] + f"... (the rest is in {self.delivered_to}/{RESULT_FILE})"
                )
            shown["final_message"] = message
        if self.error:
            shown["error"] = self.error
        if self.delivered_to:
            shown["results_in"] = self.delivered_to
        return shown


class SubagentUpdate(BaseModel):
    """A child telling its parent (by signal) that it waits for a person, or no longer does."""

    agent_id: str
    state: SubagentState
    waiting_on: str | None = None


class SpawnAgentArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, description="Which agent to start (one of those you may spawn).")
    task: str = Field(min_length=1, description="Its task, complete: it sees nothing of your conversation.")
    workspace: Literal["fork", "empty", "shared"] = Field(
        default="fork",
        description="'fork': a copy of your workspace as it is now (default); 'empty': a fresh workspace; "
        "'shared': your own live workspace (coordinate who writes where).",
    )


class SendInputArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1)
    message: str = Field(min_length=1, description="Delivered as a user message before its next model call.")


class WaitAgentsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_ids: list[str] | None = Field(
        default=None, description="Whom to wait for; default every sub-agent still running."
    )
    timeout_s: float = Field(default=600, gt=0, le=86_400, description="Give up waiting after this long.")


class ListAgentsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CloseAgentArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1, description="The sub-agent to stop (its own sub-agents stop too).")


SPAWN_AGENT = ToolDefinition(
    spec=spec_for(
        "spawn_agent",
        "Start another agent on a task of its own, in its own sandbox; it runs while you go on. Returns "
        f"its agent_id. When it completes, its final message and its {OUTPUT_DIR}/ files are placed in "
        f"your workspace under {HANDOFFS_DIR}/<agent_id>/ (see wait_agents).",
        SpawnAgentArgs,
    ),
    arguments_model=SpawnAgentArgs,
)
SEND_INPUT = ToolDefinition(
    spec=spec_for("send_input", "Send a message to a running sub-agent.", SendInputArgs),
    arguments_model=SendInputArgs,
)
WAIT_AGENTS = ToolDefinition(
    spec=spec_for(
        "wait_agents",
        "Wait until the given sub-agents (default: all running ones) have finished, or the timeout; returns "
        "each one's status, final message and where its results are.",
        WaitAgentsArgs,
    ),
    arguments_model=WaitAgentsArgs,
)
LIST_AGENTS = ToolDefinition(
    spec=spec_for("list_agents", "List your sub-agents and their status.", ListAgentsArgs),
    arguments_model=ListAgentsArgs,
)
CLOSE_AGENT = ToolDefinition(
    spec=spec_for("close_agent", "Stop a sub-agent and its own sub-agents.", CloseAgentArgs),
    arguments_model=CloseAgentArgs,
)


class HandoffArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, description="The agent to hand the conversation to.")
    message: str = Field(
        default="", description="What it should know or do first (it sees the whole conversation)."
    )


HANDOFF = ToolDefinition(
    spec=spec_for(
        "handoff",
        "Hand this conversation, the workspace and the sandbox over to another agent, which goes on from "
        "here with its own instructions and tools; you stop.",
        HandoffArgs,
    ),
    arguments_model=HandoffArgs,
)
SUBAGENT_TOOLS: dict[str, ToolDefinition] = {
    tool.spec.name: tool for tool in (SPAWN_AGENT, SEND_INPUT, WAIT_AGENTS, LIST_AGENTS, CLOSE_AGENT)
}
