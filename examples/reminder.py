"""A durable sleep between two steps. The sleep parks the run: no worker slot is
held while it waits, and a worker restart does not move the wake time.

    orchestrator start reminder --input '{"email": "a@example.com", "delay_seconds": 86400}'
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from worker import workflow


class ReminderInput(BaseModel):
    email: str
    delay_seconds: float = 86_400


def send_email(to: str, text: str) -> dict[str, str]:
    # A real step would call a mail service; its result is recorded once.
    return {"to": to, "text": text, "status": "sent"}


@workflow("reminder")
async def reminder(ctx, input: ReminderInput) -> dict[str, str]:
    await ctx.step("send-welcome", send_email, input.email, "Welcome!")
    await ctx.sleep("followup-delay", timedelta(seconds=input.delay_seconds))
    return await ctx.step("send-followup", send_email, input.email, "How's it going?")


WORKFLOWS = [reminder]
