"""`nesting="nested"` (worker/operations/nesting.py) on the in-memory store:
what the per-branch records buy. A map whose results together are too large
for its decision record (no value bucket: 200 KB inline) keeps only the
decision, and a replay runs its items again to rebuild the results; nested,
each item's own record (3 KB, small enough) is returned instead."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from orchestrator.model import Status, StepKind
from tests.unit._fake_worker import fleet_of
from worker import workflow

ITEMS = 100
RAN: Counter[tuple[str, int]] = Counter()
_lock = threading.Lock()


async def pad(ctx: Any, item: int, index: int) -> str:
    with _lock:
        RAN[(ctx.workflow_id, index)] += 1
    return f"{item:04d}" * 750  # 3,000 bytes; 100 of them exceed a record


def _map_then_sleep(nesting: str) -> Any:
    @workflow(f"pad-{nesting}")
    async def run(ctx: Any, n: int) -> int:
        batch = await ctx.map("pad", list(range(n)), pad, nesting=nesting)
        await ctx.sleep("after", timedelta(hours=1))
        return sum(len(r) for r in batch.get_results())

    return run


@pytest.mark.parametrize(("nesting", "runs_per_item"), [("flat", 2), ("nested", 1)])
async def test_a_nested_map_replays_its_items_from_their_records(
    nesting: str, runs_per_item: int
) -> None:
    rid = f"r-{nesting}"
    with fleet_of([_map_then_sleep(nesting)]) as fleet:
        fleet.pending(rid, f"pad-{nesting}", ITEMS)
        assert (await fleet.deliver(rid)).status == Status.SLEEPING
        decision = fleet.store.steps[rid]["0"]
        assert decision.replay_children  # too large: the decision keeps no results
        fleet.clock.advance(timedelta(hours=2))
        run = await fleet.deliver(rid)
        assert (run.status, run.output) == (Status.COMPLETED, str(ITEMS * 3000))
        branches = [s for s in fleet.store.steps[rid].values() if s.kind == StepKind.BRANCH]
    assert len(branches) == (ITEMS if nesting == "nested" else 0)
    assert {RAN[(rid, i)] for i in range(ITEMS)} == {runs_per_item}
