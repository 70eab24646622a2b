"""Workflows of the conformance tier's wait suite (requirements 2-x): `ctx.sleep`.
The durations of 2-4 (one minute) and 2-5 (one hour) are the requirements'.
"""

from __future__ import annotations

from datetime import timedelta

from worker import workflow

from .workflows import PARK


@workflow("wait-2-1")
async def wait_basic(ctx) -> None:
    await ctx.sleep("wait", PARK)


@workflow("wait-2-2")
async def wait_named(ctx) -> None:
    await ctx.sleep("custom_wait_name", PARK)


@workflow("wait-2-3")
async def wait_sequential(ctx) -> dict[str, int]:
    await ctx.sleep("wait-1", PARK)
    await ctx.sleep("wait-2", PARK)
    return {"completedWaits": 2}


@workflow("wait-2-4")
async def wait_minutes(ctx) -> None:
    await ctx.sleep("wait", timedelta(minutes=1))


@workflow("wait-2-5")
async def wait_hours(ctx) -> None:
    await ctx.sleep("wait", timedelta(hours=1))


ALL = [v for v in list(globals().values()) if hasattr(v, "__workflow_definition__")]
