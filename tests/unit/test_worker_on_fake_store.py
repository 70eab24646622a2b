"""The worker's claim-and-run loop and the workflow context, unit-tested against
the in-memory store (tests/fakes/memory_store.py, held to DynamoDB's conditions
by tests/contract/). No moto, no SQS: each test drives one message through
`Worker._claim_and_run` and reads the store's state after it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.clock import SkippingClock
from orchestrator.model import Run, Status, StepKind, StepRecord
from orchestrator.settings import Settings
from tests.fakes.memory_store import InMemoryStore
from tests.unit._fake_worker import Fleet
from worker import workflow
from worker._checkpoints import Checkpoints
from worker._worker import Worker

CALLS: list[str] = []


def _note(name: str, value: Any) -> Any:
    CALLS.append(name)
    return value


@workflow("fake-two-steps")
async def two_steps(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    a = await ctx.step("a", _note, "a", input["x"])
    b = await ctx.step("b", _note, "b", a + 1)
    return {"sum": a + b}


@workflow("fake-sleeper")
async def sleeper(ctx: Any, input: dict[str, Any]) -> str:
    before = await ctx.step("before", _note, "before", 1)
    await ctx.sleep("nap", timedelta(hours=2))
    after = await ctx.step("after", _note, "after", before + 1)
    return f"{before}-{after}"


@workflow("fake-waiter")
async def waiter(ctx: Any, input: dict[str, Any]) -> Any:
    got = await ctx.wait_for_signal("w", "go", timeout=timedelta(minutes=5))
    return {"got": got}


@workflow("fake-renamed")
async def renamed(ctx: Any, input: dict[str, Any]) -> int:
    return int(await ctx.step("a-new-name", _note, "x", 1))


@workflow("fake-raises")
async def raises(ctx: Any, input: dict[str, Any]) -> None:
    await ctx.step("ok", _note, "ok", 1)
    raise ValueError("bad order")


@workflow("fake-batched", checkpoint="batched")
async def batched(ctx: Any, input: dict[str, Any]) -> str:
    for i in range(3):
        await ctx.step(f"s{i}", _note, f"s{i}", i)
    return "x" * input.get("output_bytes", 1)


class Gates:
    """Barriers that order a test's interleaving (no sleep stands for an event)."""

    def __init__(self) -> None:
        self.flushing = threading.Event()  # the first flush is in flight (for a step's thread)
        self.flushing_here = asyncio.Event()  # the same, for workflow code
        self.parking = asyncio.Event()  # the workflow is about to sleep, and so to park
        self.ending = asyncio.Event()  # the run's end waits for the buffer (take_last)

    def flush_started(self) -> None:
        self.flushing.set()
        self.flushing_here.set()


GATES: dict[str, Gates] = {}


@workflow("fake-batched-slow", checkpoint="batched")
async def batched_slow(ctx: Any, input: dict[str, Any]) -> str:
    await ctx.step("s0", _note, "s0", 0)
    await ctx.step("s1", _note_while_flushing, "s1", 1)  # the timed flush of s0 starts meanwhile
    await ctx.step("s2", _note, "s2", 2)
    return "done"


@workflow("fake-batched-parks", checkpoint="batched")
async def batched_parks(ctx: Any, input: dict[str, Any]) -> str:
    await ctx.step("s0", _note, "s0", 0)
    await ctx.step("s1", _note_while_flushing, "s1", 1)  # the timed flush of s0 starts meanwhile
    GATES["g"].parking.set()  # nothing suspends from here to the sleep's flush waiting
    await ctx.sleep("nap", timedelta(hours=1))
    return "done"


@workflow("fake-batched-parks-empty", checkpoint="batched")
async def batched_parks_empty(ctx: Any, input: dict[str, Any]) -> str:
    await ctx.step("s0", _note, "s0", 0)
    await GATES["g"].flushing_here.wait()  # the timed flush took s0: the buffer is empty
    GATES["g"].parking.set()
    await ctx.sleep("nap", timedelta(hours=1))
    return "done"


def _note_while_flushing(name: str, value: Any) -> Any:
    """A step (in a thread) that returns once the buffer's timed flush is in flight."""
    assert GATES["g"].flushing.wait(timeout=60), "the timed flush never started"
    return _note(name, value)


THIEF: dict[str, Any] = {}


def _stall_then_lose(value: int) -> int:
    """Stands for an owner stalled past its lease while another worker claims."""
    h = THIEF["h"]
    h.clock.advance(timedelta(seconds=31))
    now = h.clock.now_ms()
    taken = h.store.runs["r1"]
    assert taken.lease_until is not None and taken.lease_until < now
    h.store.runs["r1"] = replace(
        taken, owner="thief", epoch=taken.epoch + 1, lease_until=now + 30_000
    )
    return value


@workflow("fake-stalls")
async def stalls(ctx: Any, input: dict[str, Any]) -> int:
    v = await ctx.step("stall", _stall_then_lose, 1)
    return int(await ctx.step("next", _note, "next", v))


class Harness(Fleet):
    """The shared one-worker harness (tests/unit/_fake_worker.py), with starts
    that go through the store as the API's do."""

    async def start(self, run_id: str, name: str, input: dict[str, Any]) -> None:
        now = self.clock.now_ms()
        run = Run(
            id=run_id,
            name=name,
            status=Status.PENDING,
            input=json.dumps(input),
            created_at=now,
            updated_at=now,
        )
        await self.store.create_run(run)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    CALLS.clear()
    clock = SkippingClock()
    store = InMemoryStore(Settings(lease_seconds=30, queue_url="http://unused.invalid/q"))
    w = Worker(
        workflows=[
            two_steps,
            sleeper,
            waiter,
            renamed,
            raises,
            stalls,
            batched,
            batched_slow,
            batched_parks,
            batched_parks_empty,
        ],
        settings=store.settings,
        clock=clock,
    )
    w._store = store  # type: ignore[assignment]  # the fake in place of AsyncStore
    THIEF["h"] = harness = Harness(w, store, clock)
    try:
        yield harness
    finally:
        w._executor.shutdown(wait=False)


def _recorded_step(name: str, result: str) -> StepRecord:
    return StepRecord(
        op_id="0",
        name=name,
        kind=StepKind.STEP,
        epoch=1,
        recorded_at=1,
        result=result,
        resolved=True,
    )


async def test_a_run_completes_and_records_each_step_once(h: Harness) -> None:
    await h.start("r1", "fake-two-steps", {"x": 4})
    run = await h.deliver("r1")
    assert run.status == Status.COMPLETED, run.error
    assert json.loads(run.output or "") == {"sum": 9}
    assert CALLS == ["a", "b"]
    history = await h.store.history("r1")
    assert [(r.name, r.result) for r in history.values()] == [("a", "4"), ("b", "5")]
    assert h.store.deleted_messages == ["rh-1"]  # the message goes once the run ended


async def test_a_duplicate_message_after_the_end_runs_nothing(h: Harness) -> None:
    await h.start("r1", "fake-two-steps", {"x": 1})
    await h.deliver("r1")
    run = await h.deliver("r1")  # refused: terminal, the message is dropped
    assert run.epoch == 1 and CALLS == ["a", "b"]
    assert h.store.deleted_messages == ["rh-1", "rh-2"]


async def test_a_sleep_parks_the_run_and_its_replay_skips_recorded_steps(h: Harness) -> None:
    await h.start("r1", "fake-sleeper", {})
    run = await h.deliver("r1")
    assert run.status == Status.SLEEPING and run.wake_at is not None
    assert CALLS == ["before"]
    assert [t[1] for t in h.store.timers] == ["1"]  # the sleep's timer, at its op id
    early = await h.deliver("r1")  # its time has not come: refused, nothing runs
    assert early.status == Status.SLEEPING and CALLS == ["before"]
    h.clock.advance(timedelta(hours=2))
    done = await h.deliver("r1")
    assert done.status == Status.COMPLETED and json.loads(done.output or "") == "1-2"
    assert CALLS == ["before", "after"]  # "before" replayed from its record
    assert done.epoch == 2


async def test_a_signal_wait_parks_and_a_delivered_signal_resumes_it(h: Harness) -> None:
    await h.start("r1", "fake-waiter", {})
    run = await h.deliver("r1")
    assert (run.status, run.wait_signal) == (Status.WAITING, "go")
    assert h.store.deliver_signal("r1", "go", '{"ok": 1}', now=h.clock.now_ms())
    done = await h.deliver("r1")
    assert done.status == Status.COMPLETED
    assert json.loads(done.output or "") == {"got": {"ok": 1}}
    (wait,) = (r for r in (await h.store.history("r1")).values() if r.kind == StepKind.WAIT)
    assert wait.resolved and wait.signal_seq == 1
    assert await h.store.inbox("r1", "go") == []  # consumed


async def test_a_signal_sent_before_the_wait_is_taken_without_parking(h: Harness) -> None:
    await h.start("r1", "fake-waiter", {})
    h.store.deliver_signal("r1", "go", '"early"', now=h.clock.now_ms())
    run = await h.deliver("r1")
    assert run.status == Status.COMPLETED and json.loads(run.output or "") == {"got": "early"}


async def test_a_signal_wait_times_out_durably(h: Harness) -> None:
    await h.start("r1", "fake-waiter", {})
    parked = await h.deliver("r1")
    assert parked.wake_at is not None  # the deadline is the parked run's wake time
    h.clock.advance(timedelta(minutes=5, seconds=1))
    done = await h.deliver("r1")
    assert done.status == Status.COMPLETED and json.loads(done.output or "") == {"got": None}
    (wait,) = (await h.store.history("r1")).values()
    assert wait.timed_out and wait.resolved
    with pytest.raises(ValueError):  # the run has ended: it takes no more signals
        h.store.deliver_signal("r1", "go", '"late"', now=h.clock.now_ms())


async def test_a_batched_run_ends_with_its_results_on_the_terminal_write(h: Harness) -> None:
    await h.start("r1", "fake-batched", {})
    run = await h.deliver("r1")
    assert run.status == Status.COMPLETED, run.error
    assert "r1" not in h.store.steps  # no flush: nothing written before the end
    assert run.last_batch is not None
    history = await h.store.history("r1", last_batch=run.last_batch)
    assert [(r.name, r.result) for r in history.values()] == [("s0", "0"), ("s1", "1"), ("s2", "2")]


async def test_a_batch_that_would_overfill_the_run_item_is_flushed_before_the_end(
    h: Harness,
) -> None:
    # 120 KB of input and 190 KB of output leave no room under the 300 KB budget.
    await h.start("r1", "fake-batched", {"output_bytes": 190_000, "pad": "p" * 120_000})
    run = await h.deliver("r1")
    assert run.status == Status.COMPLETED, run.error
    assert run.last_batch is None
    assert [r.name for r in h.store.steps["r1"].values()] == ["s0", "s1", "s2"]


async def test_a_timed_flush_that_fails_as_the_run_ends_stops_the_terminal_write(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush timer fires during s1 and its write fails transiently after the
    workflow has returned: the end waits for that flush, whose records left the
    buffer with it. Before the fix the run then completed without them (seen in
    the chaos campaign: a completed run whose history lacked its last step)."""
    monkeypatch.setattr(h.worker, "settings", h.worker.settings.with_(checkpoint_flush_ms=10))
    GATES["g"] = gates = Gates()
    take_last = Checkpoints.take_last

    async def ending(self: Checkpoints, value_bytes: int) -> Any:
        gates.ending.set()
        return await take_last(self, value_bytes)  # waits on the flush's lock at once

    monkeypatch.setattr(Checkpoints, "take_last", ending)
    real, flushes = h.store.put_batch, []

    async def first_throttled(workflow_id: str, *, epoch: int, **k: Any) -> bool:
        flushes.append((epoch, [r.name for r in k["records"]]))
        if len(flushes) == 1:
            gates.flush_started()
            await gates.ending.wait()  # still in flight when the workflow has returned
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "TransactWriteItems")
        return await real(workflow_id, epoch=epoch, **k)

    monkeypatch.setattr(h.store, "put_batch", first_throttled)
    await h.start("r1", "fake-batched-slow", {})
    run = await h.deliver("r1")
    assert CALLS == ["s0", "s1", "s2"]  # the workflow returned before the flush failed
    assert (run.status, run.owner, run.epoch) == (Status.RUNNING, h.worker.id, 1)
    assert run.last_batch is None and "r1" not in h.store.steps  # no write after the loss
    assert h.store.deleted_messages == []  # the message comes back: the next claim's
    h.clock.advance(timedelta(seconds=31))  # past the abandoned lease
    run = await h.deliver("r1")
    assert (run.status, run.epoch) == (Status.COMPLETED, 2)
    history = await h.store.history("r1", last_batch=run.last_batch)
    assert sorted((r.op_id, r.name, r.epoch) for r in history.values()) == [
        ("0", "s0", 2),
        ("1", "s1", 2),
        ("2", "s2", 2),
    ]
    # The lost claim wrote nothing after its failed flush: the timer's flush of s1
    # and s2, waiting behind it, did not go out (every later flush is epoch 2's).
    assert flushes[0] == (1, ["s0"]) and all(e == 2 for e, _ in flushes[1:]), flushes


async def test_a_timed_flush_that_fails_before_a_park_stops_every_later_write(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s0's timed flush fails while the run goes on to park with s1 buffered: the
    park's flush must not write s1 (a record after an unrecorded s0 would break
    the prefix rule), and the park itself must not go out."""
    monkeypatch.setattr(h.worker, "settings", h.worker.settings.with_(checkpoint_flush_ms=10))
    real, flushes = h.store.put_batch, []

    async def first_throttled(workflow_id: str, *, epoch: int, **k: Any) -> bool:
        flushes.append((epoch, [r.name for r in k["records"]]))
        if len(flushes) == 1:
            GATES["g"].flush_started()
            await GATES["g"].parking.wait()  # still in flight when the run parks
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "TransactWriteItems")
        return await real(workflow_id, epoch=epoch, **k)

    monkeypatch.setattr(h.store, "put_batch", first_throttled)
    GATES["g"] = Gates()
    await h.start("r1", "fake-batched-parks", {})
    run = await h.deliver("r1")
    assert CALLS == ["s0", "s1"]
    assert (run.status, run.epoch, run.wake_at) == (Status.RUNNING, 1, None)  # no park
    assert flushes == [(1, ["s0"])] and "r1" not in h.store.steps  # nothing after the loss
    # The same with nothing left in the buffer when the run parks.
    flushes.clear()
    GATES["g"] = Gates()
    await h.start("r2", "fake-batched-parks-empty", {})
    run = await h.deliver("r2")
    assert (run.status, run.epoch, run.wake_at) == (Status.RUNNING, 1, None)
    assert flushes == [(1, ["s0"])]  # (the fake has no before-send lease check: the
    # sleep's own record, which AsyncStore would withhold, is not asserted here)


async def test_a_history_that_no_longer_matches_the_code_fails_the_run(h: Harness) -> None:
    await h.start("r1", "fake-renamed", {})
    # An owner running an older version recorded op 0 as "a", then died.
    now = h.clock.now_ms()
    await h.store.claim("r1", owner="old", now=now, lease_ms=1000, names=["fake-renamed"])
    await h.store.put_step("r1", _recorded_step("a", "1"))
    h.clock.advance(timedelta(seconds=2))
    run = await h.deliver("r1")
    assert run.status == Status.FAILED and run.error is not None
    assert run.error.type == "NonDeterminismError"
    assert CALLS == []  # nothing ran


async def test_a_workflow_exception_fails_the_run_after_its_recorded_steps(h: Harness) -> None:
    await h.start("r1", "fake-raises", {})
    run = await h.deliver("r1")
    assert run.status == Status.FAILED and run.error is not None
    assert (run.error.type, run.error.message) == ("ValueError", "bad order")
    assert CALLS == ["ok"]


async def test_a_run_held_by_a_live_owner_is_left_to_it(h: Harness) -> None:
    await h.start("r1", "fake-two-steps", {"x": 1})
    now = h.clock.now_ms()
    held = await h.store.claim(
        "r1", owner="other", now=now, lease_ms=30_000, names=["fake-two-steps"]
    )
    assert isinstance(held, Run)
    run = await h.deliver("r1")
    assert (run.owner, run.epoch, run.status) == ("other", 1, Status.RUNNING)
    assert CALLS == []


async def test_an_owner_that_lost_its_lease_writes_nothing_more(h: Harness) -> None:
    await h.start("r1", "fake-stalls", {})
    run = await h.deliver("r1")
    assert (run.owner, run.epoch, run.status) == ("thief", 2, Status.RUNNING)
    assert CALLS == []  # the next step never ran
    assert await h.store.history("r1") == {}  # nor was the stalled step's outcome recorded
    assert h.store.deleted_messages == []  # the message stays: the new owner's backstop
