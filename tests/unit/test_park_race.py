"""A wake time that passes while the park's write is in flight does not let the
branch go on in the claim being parked (worker/_parking.py): the park resolves
it. Before, the timer woke the branch, which ran the code after the sleep (a
log line, a step function) in a claim that then parked, and the next claim ran
it again."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrator.model import Status
from tests.unit._fake_worker import fleet_of
from worker import workflow

AFTER: list[str] = []


def note(label: str) -> str:
    AFTER.append(label)
    return label


@workflow("short-nap")
async def short_nap(ctx: Any) -> str:
    await ctx.sleep("nap", 0.05)
    return await ctx.step("after", note, ctx.workflow_id)


async def test_a_wake_during_the_parks_write_waits_for_the_park() -> None:
    AFTER.clear()
    with fleet_of([short_nap]) as fleet:
        park = fleet.store.park_sleep

        async def slow_park(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0.3)  # the nap's 50 ms pass during the write
            return await park(*args, **kwargs)

        fleet.store.park_sleep = slow_park  # type: ignore[method-assign]
        fleet.pending("r1", "short-nap")
        parked = await fleet.deliver("r1")
        assert parked.status == Status.SLEEPING
        assert AFTER == []  # nothing after the sleep ran in the parked claim
        done = await fleet.deliver("r1")
    assert (done.status, done.output) == (Status.COMPLETED, '"r1"')
    assert AFTER == ["r1"]
