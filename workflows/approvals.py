"""The workflow's side of approval gates: pending calls, decisions, waiting for them.

Deterministic state only. A call that needs approval is registered as pending;
a person's decision (signal or update) resolves it; the workflow waits for it
durably (through worker restarts, for days) or until the tool's approval timeout.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from harness.approvals import ApprovalDecision, PendingApproval
    from harness.telemetry import count_approval_decided, count_approval_requested


class ApprovalBook:
    def __init__(self) -> None:
        self.pending: dict[str, PendingApproval] = {}
        self.decisions: dict[str, ApprovalDecision] = {}

    def request(self, call_id: str, tool: str, arguments: str, timeout_s: float | None) -> None:
        now = workflow.now()
        self.pending[call_id] = PendingApproval(
            call_id=call_id,
            tool=tool,
            arguments=arguments,
            since=now,
            timeout_at=now + timedelta(seconds=timeout_s) if timeout_s else None,
        )
        count_approval_requested(tool)

    def refusal(self, decision: ApprovalDecision) -> str | None:
        """Why `decision` cannot be taken (for the update's validator), or None."""
        if decision.call_id in self.decisions:
            taken = "approved" if self.decisions[decision.call_id].approved else "declined"
            return f"call {decision.call_id} was already {taken}"
        if decision.call_id not in self.pending:
            waiting = ", ".join(sorted(self.pending)) or "none"
            return f"no call {decision.call_id!r} is waiting for approval (waiting: {waiting})"
        return None

    def decide(self, decision: ApprovalDecision) -> None:
        """Record a decision; signals for unknown or decided calls are ignored (and logged)."""
        refusal = self.refusal(decision)
        if refusal is not None:
            workflow.logger.warning("approval decision ignored", extra={"reason": refusal})
            return
        self.decisions[decision.call_id] = decision
        outcome = "approved" if decision.approved else "declined"
        count_approval_decided(self.pending.pop(decision.call_id).tool, outcome)

    async def wait_for(self, call_id: str) -> ApprovalDecision:
        """The decision on a pending call; a timed-out wait is a decline that says so."""
        approval = self.pending[call_id]
        timeout = approval.timeout_at - workflow.now() if approval.timeout_at else None
        try:
            await workflow.wait_condition(lambda: call_id in self.decisions, timeout=timeout)
        except TimeoutError:
            seconds = (approval.timeout_at - approval.since).total_seconds() if approval.timeout_at else 0
            self.decide(
                ApprovalDecision(
                    call_id=call_id, approved=False, reason=f"nobody answered within {seconds:g} seconds"
                )
            )
        except asyncio.CancelledError:
            # the run is cancelled: its calls stop waiting, undecided
            for waiting in self.pending.values():
                count_approval_decided(waiting.tool, "cancelled")
            raise
        return self.decisions[call_id]
