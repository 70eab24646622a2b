"""Late records on the in-memory store (held to DynamoDB's conditions by
tests/contract/): an old owner's put that lands after a takeover is replayed
by every later claim as recorded (harmless: first at its position); one that
lands after a redrive belongs to an earlier run attempt and is never replayed.
The moto-server versions are in tests/functional/test_late_records.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from orchestrator.model import Status, StepKind, StepRecord
from tests.unit._fake_worker import Fleet, fleet_of
from worker import workflow

RAN: list[str] = []


def _run(name: str, value: str) -> str:
    RAN.append(name)
    return value


@workflow("fake-late-three")
async def three(ctx: Any) -> list[str]:
    return [await ctx.step(n, _run, n, f"{n}-fresh") for n in ("a", "b", "c")]


def _late(fleet: Fleet, op_id: str, name: str, *, epoch: int, run_attempt: int = 0) -> StepRecord:
    return StepRecord(
        op_id,
        name,
        StepKind.STEP,
        epoch,
        fleet.clock.now_ms(),
        result=json.dumps(f"{name}-late"),
        resolved=True,
        run_attempt=run_attempt,
    )


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    RAN.clear()
    with fleet_of([three]) as f:
        yield f


async def test_a_late_put_after_a_takeover_is_replayed_as_recorded(fleet: Fleet) -> None:
    # Epoch 1's owner recorded a; epoch 2 took over; epoch 1's put of b lands now.
    store = fleet.store
    fleet.pending("r1", "fake-late-three", epoch=1)
    store.steps["r1"] = {"0": replace(_late(fleet, "0", "a", epoch=1), result='"a-fresh"')}
    assert await store.put_step("r1", _late(fleet, "1", "b", epoch=1)) is not None
    run = await fleet.deliver("r1")
    assert run.status == Status.COMPLETED, run.error
    # The same code computed it: the new owner replays it, as every later claim would.
    assert json.loads(run.output or "") == ["a-fresh", "b-late", "c-fresh"]
    assert RAN == ["c"]


async def test_a_late_put_after_a_redrive_is_never_replayed(fleet: Fleet) -> None:
    # Attempt 0 recorded a and failed at b; the redrive deleted b's failure and
    # carried a over to attempt 1. Then attempt 0's owner's puts of b and c land.
    store = fleet.store
    fleet.pending("r1", "fake-late-three", epoch=3, redrive_count=1)
    a = replace(_late(fleet, "0", "a", epoch=1, run_attempt=1), result='"a-fresh"')
    store.steps["r1"] = {"0": a}
    for op, name in (("1", "b"), ("2", "c")):
        await store.put_step("r1", _late(fleet, op, name, epoch=2))
    assert list(await store.history("r1", attempt=1)) == ["0"]
    run = await fleet.deliver("r1")
    assert run.status == Status.COMPLETED, run.error
    assert json.loads(run.output or "") == ["a-fresh", "b-fresh", "c-fresh"]
    assert RAN == ["b", "c"]
    assert {rec.run_attempt for rec in store.steps["r1"].values()} == {1}
    # And attempt 0's owner, later still: refused, the new records stay.
    kept = await store.put_step("r1", _late(fleet, "1", "b", epoch=2))
    assert kept.result == '"b-fresh"' and kept.run_attempt == 1
