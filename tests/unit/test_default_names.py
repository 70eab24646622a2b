"""Default operation names (worker/_names.py): an operation called without a
name is recorded under its function's qualified name, and a replay checks that
name as it checks a given one. On the in-memory store: a run parks after its
map, and the next claim runs a changed version of the code."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orchestrator.clock import SkippingClock
from orchestrator.model import Status
from tests.fakes.memory_store import InMemoryStore
from tests.unit._fake_worker import Fleet, fleet_of
from worker import workflow
from worker._names import default_name
from worker._worker import Worker


async def charge(ctx: Any, item: int, index: int) -> int:
    return item


async def refund(ctx: Any, item: int, index: int) -> int:
    return -item


def version(fn: Any) -> Any:
    @workflow("names")
    async def names(ctx: Any, items: list[int]) -> list[int]:
        batch = await ctx.map(items, fn)
        await ctx.sleep("after", timedelta(hours=1))
        return batch.get_results()

    return names


def _next_version(old: Fleet, fn: Any) -> Fleet:
    """A worker running another version of the code, on the same store and clock."""
    store: InMemoryStore = old.store
    clock: SkippingClock = old.clock
    w = Worker(workflows=[version(fn)], settings=store.settings, clock=clock)
    w._store = store  # type: ignore[assignment]
    return Fleet(w, store, clock)


async def _parked_after(fn: Any) -> Fleet:
    with fleet_of([version(fn)]) as fleet:
        fleet.pending("r1", "names", [1, 2])
        run = await fleet.deliver("r1")
        assert run.status == Status.SLEEPING
        fleet.clock.advance(timedelta(hours=2))
        return fleet


def test_default_names_come_from_the_qualified_name_or_the_kind() -> None:
    assert default_name(charge, "map") == "charge"
    assert default_name(lambda c, i, n: i, "map") == "map"
    assert default_name(version, "map") == "version"

    def inner() -> None: ...

    assert default_name(inner, "x").endswith("<locals>.inner")


async def test_the_same_function_replays_and_a_changed_one_is_refused() -> None:
    fleet = await _parked_after(charge)
    (rec,) = [s for s in fleet.store.steps["r1"].values() if s.op_id == "0"]
    assert (rec.kind.value, rec.name) == ("map", "charge")
    run = await _next_version(fleet, charge).deliver("r1")
    assert (run.status, run.output) == (Status.COMPLETED, "[1,2]")

    changed = await _parked_after(charge)
    run = await _next_version(changed, refund).deliver("r1")
    assert run.status == Status.FAILED and run.error is not None
    assert run.error.type == "NonDeterminismError"
    assert "'charge'" in run.error.message and "'refund'" in run.error.message


async def test_two_lambdas_share_the_kind_as_name_and_the_check_cannot_tell_them_apart() -> None:
    """The documented limit: a lambda has no name, so a changed lambda at the
    same place replays the record as two operations given one name would."""
    fleet = await _parked_after(lambda c, item, i: item)
    run = await _next_version(fleet, lambda c, item, i: -item).deliver("r1")
    assert (run.status, run.output) == (Status.COMPLETED, "[1,2]")  # the recorded results
