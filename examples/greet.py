"""The smallest workflow: one step, pydantic input and output.

orchestrator worker examples.greet
orchestrator start greet --input '{"name": "World"}'
"""

from __future__ import annotations

from pydantic import BaseModel

from worker import workflow


class GreetInput(BaseModel):
    name: str


class GreetOutput(BaseModel):
    greeting: str


def make_greeting(name: str) -> str:
    return f"Hello, {name}!"


@workflow("greet")
async def greet(ctx, input: GreetInput) -> GreetOutput:
    greeting = await ctx.step("greeting", make_greeting, input.name)
    return GreetOutput(greeting=greeting)


WORKFLOWS = [greet]
