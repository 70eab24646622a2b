"""An inline map has a stated item limit (`model.MAX_INLINE_MAP_ITEMS`): past
it the map is refused before any item runs, with an error that names the limit
and points to the distributed map. A million-item inline map took its worker
to 2.4 GB and cost it its lease."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.model import MAX_INLINE_MAP_ITEMS, Status
from tests.unit._fake_worker import Fleet, fleet_of
from worker import workflow
from worker.operations import batch

RAN: list[int] = []


def _one(i: int) -> int:
    RAN.append(i)
    return i


@workflow("fake-wide-map")
async def wide(ctx: Any, n: int) -> int:
    async def item(c: Any, x: int, i: int) -> int:
        return int(await c.step("one", _one, x))

    return sum((await ctx.map("wide", range(n), item)).get_results())


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    RAN.clear()
    monkeypatch.setattr(batch, "MAX_INLINE_MAP_ITEMS", 3)  # the boundary, cheaply
    with fleet_of([wide]) as f:
        yield f


async def test_a_map_at_its_limit_runs(fleet: Fleet) -> None:
    fleet.pending("r1", "fake-wide-map", 3)
    run = await fleet.deliver("r1")
    assert run.status == Status.COMPLETED, run.error
    assert sorted(RAN) == [0, 1, 2]


async def test_a_map_past_its_limit_is_refused_before_any_item_runs(fleet: Fleet) -> None:
    fleet.pending("r1", "fake-wide-map", 4)
    run = await fleet.deliver("r1")
    assert run.status == Status.FAILED and run.error is not None
    assert "at most 3 items, not 4" in run.error.message
    assert "workflow=" in run.error.message  # where to go instead
    assert RAN == [] and fleet.store.steps.get("r1", {}) == {}


def test_the_stated_limit_is_the_one_enforced_and_documented() -> None:
    from pathlib import Path

    assert batch.MAX_INLINE_MAP_ITEMS == MAX_INLINE_MAP_ITEMS == 10_000
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    assert "| inline map items | 10,000" in doc
