"""Workflows the tests run, in-process and in worker subprocesses.

Step functions append "<run id>:<step>" to the file named by TEST_EXEC_LOG
each time they actually execute, so tests can count executions across
processes (a replayed step must not appear twice)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from worker import workflow


def _log(entry: str) -> None:
    path = os.environ.get("TEST_EXEC_LOG")
    if path:
        with open(path, "a") as f:
            f.write(entry + "\n")
            f.flush()


def record(run_id: str, step: str, value: Any = None) -> Any:
    _log(f"{run_id}:{step}")
    return value


def slow(run_id: str, step: str, seconds: float, marker: str | None = None) -> str:
    _log(f"{run_id}:{step}:start")
    if marker:
        Path(marker).write_text("started")
    time.sleep(seconds)
    _log(f"{run_id}:{step}")
    return f"{step} done"


def boom(run_id: str) -> None:
    _log(f"{run_id}:boom")
    raise ValueError("boom")


class CountInput(BaseModel):
    steps: int = 3
    pause: float = 0.0  # seconds the middle step blocks
    marker: str | None = None


@workflow("count")
async def count(ctx, input: CountInput) -> dict[str, Any]:
    results = []
    for i in range(input.steps):
        if input.pause and i == input.steps // 2:
            results.append(
                await ctx.step(f"s{i}", slow, ctx.workflow_id, f"s{i}", input.pause, input.marker)
            )
        else:
            results.append(await ctx.step(f"s{i}", record, ctx.workflow_id, f"s{i}", i))
    return {"results": results}


@workflow("failing")
async def failing(ctx, input: dict[str, Any]) -> None:
    await ctx.step("ok", record, ctx.workflow_id, "ok")
    await ctx.step("boom", boom, ctx.workflow_id)


@workflow("caught")
async def caught(ctx, input: dict[str, Any]) -> str:
    from worker import StepFailedError

    try:
        await ctx.step("boom", boom, ctx.workflow_id)
    except StepFailedError as e:
        return f"caught {e.error_type}: {e.error_message}"
    return "not reached"


_flip: dict[str, int] = {}


@workflow("drifting")
async def drifting(ctx, input: dict[str, Any]) -> None:
    """Non-deterministic on purpose: the step name changes between executions."""
    n = _flip.get(ctx.workflow_id, 0)
    _flip[ctx.workflow_id] = n + 1
    await ctx.step(f"step-v{n}", record, ctx.workflow_id, "x")
    await ctx.sleep("nap", 0.5)


class SleepInput(BaseModel):
    seconds: float


@workflow("sleeper")
async def sleeper(ctx, input: SleepInput) -> str:
    await ctx.step("before", record, ctx.workflow_id, "before")
    await ctx.sleep("nap", timedelta(seconds=input.seconds))
    await ctx.step("after", record, ctx.workflow_id, "after")
    return "awake"


class WaitInput(BaseModel):
    waits: int = 1
    timeout: float | None = None
    signal: str = "go"


@workflow("waiter")
async def waiter(ctx, input: WaitInput) -> list[Any]:
    got = []
    for i in range(input.waits):
        got.append(await ctx.wait_for_signal(f"wait-{i}", input.signal, timeout=input.timeout))
        await ctx.step(f"after-{i}", record, ctx.workflow_id, f"after-{i}")
    return got


def sleeps_inside(ctx: Any) -> None:
    import asyncio

    asyncio.run(ctx.sleep("inner", 1))


@workflow("misuse")
async def misuse(ctx, input: dict[str, Any]) -> None:
    await ctx.step("bad", sleeps_inside, ctx)


ALL = [count, failing, caught, drifting, sleeper, waiter, misuse]
WORKFLOWS = ALL
