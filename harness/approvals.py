"""Approval gates: the shapes people and the workflow exchange about a call that waits."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class PendingApproval(BaseModel):
    """A function call waiting for a person (answer of the `pending_approvals` query)."""

    call_id: str
    tool: str
    arguments: str
    since: datetime
    # when the call is declined on its own, if nobody answers
    timeout_at: datetime | None = None


class ApprovalDecision(BaseModel):
    """Input of the `approve` and `decline` signals and of the `decide` update."""

    call_id: str = Field(min_length=1)
    approved: bool = True
    reason: str | None = None


class UserMessage(BaseModel):
    """Input of the `user_message` signal: a person's message for the agent's next turn."""

    text: str = Field(min_length=1)
