"""What a run carries into its next incarnation when it continues as new.

The new run starts from this instead of from the request: no agent resolution,
no first message, the same sandbox, snapshot, exec sessions, inbox and counters;
the model's context by reference (its stored id, possibly just compacted).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from harness.conversation import ConversationItem
from harness.specs import AgentSpec, RunRequest, RunStatus
from harness.subagent_tools import Subagent
from workflows.sandbox_keeper import KeeperState
from workflows.workspace_tools import ExecSession


class CarriedState(BaseModel):
    agent: AgentSpec
    status: RunStatus
    search_attributes: bool
    inbox: list[str] = Field(default_factory=list)
    pause_requested: bool = False
    # the model's context: its stored id, the items not yet in it, counts
    context: str | None
    pending: list[ConversationItem] = Field(default_factory=list)
    context_length: int
    context_tokens: int
    keeper: KeeperState
    sessions: dict[int, ExecSession] = Field(default_factory=dict)
    next_session_id: int = 1
    # sub-agents that finished before (a run continues as new only when none is running)
    subagents: list[Subagent] = Field(default_factory=list)
    next_agent: int = 1
    workspace_notes: str | None = None


class ContinuedRun(BaseModel):
    """The input of a run that continued as new: the original request and the carried state."""

    request: RunRequest
    carried: CarriedState
