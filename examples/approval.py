"""Wait for a person: the run parks until the "approved" signal arrives (it may
arrive before the wait; signals are buffered) or until the timeout.

    orchestrator start approval --input '{"user": "ada", "timeout_seconds": 259200}'
    orchestrator signal <id> approved --payload '{"approved": true}'
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from worker import workflow


class ApprovalInput(BaseModel):
    user: str
    timeout_seconds: float = 3 * 24 * 3600


def send_approval_email(user: str) -> str:
    return f"approval requested for {user}"


def provision_access(user: str) -> str:
    return f"access granted to {user}"


@workflow("approval")
async def approval(ctx, input: ApprovalInput) -> str:
    await ctx.step("request-approval", send_approval_email, input.user)
    decision = await ctx.wait_for_signal(
        "approval-decision", "approved", timeout=timedelta(seconds=input.timeout_seconds)
    )
    if decision is None:  # timed out
        return "expired"
    if decision.get("approved"):
        await ctx.step("provision", provision_access, input.user)
        return "done"
    return "rejected"


WORKFLOWS = [approval]
