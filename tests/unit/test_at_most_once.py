"""At-most-once steps (`semantics=AT_MOST_ONCE_PER_RETRY`) on the in-memory
store: each attempt's start is recorded before the function runs, and of two
writers that reach one attempt only the one that recorded its start runs it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from orchestrator.model import Status, StepRecord
from tests.unit._fake_worker import fleet_of
from worker import AT_MOST_ONCE_PER_RETRY, NO_RETRY, RetryPolicy, StepInterruptedError, workflow

CALLS: list[str] = []
RETRY = RetryPolicy(max_attempts=3, initial_interval=timedelta(seconds=0.01), jitter=0.0)


def charge(order: str) -> str:
    CALLS.append(order)
    return f"charged {order}"


@workflow("once")
async def once(ctx: Any, order: str) -> str:
    return await ctx.step("charge", charge, order, semantics=AT_MOST_ONCE_PER_RETRY, retry=RETRY)


async def test_the_start_is_recorded_before_the_function_runs() -> None:
    CALLS.clear()
    with fleet_of([once]) as fleet:
        seen: list[StepRecord] = []
        put = fleet.store.put_step

        async def spy(workflow_id: str, rec: StepRecord) -> StepRecord:
            seen.append(rec)
            assert CALLS == [] or rec.resolved  # nothing ran before the marker
            return await put(workflow_id, rec)

        fleet.store.put_step = spy  # type: ignore[method-assign]
        fleet.pending("r1", "once", "o-1")
        run = await fleet.deliver("r1")
    assert (run.status, run.output) == (Status.COMPLETED, '"charged o-1"')
    marker, done = seen
    assert not marker.resolved and marker.retry_at is None
    assert marker.attempts == [{"attempt": 1, "started_at": marker.recorded_at}]
    assert done.resolved and [a["attempt"] for a in done.attempts] == [1]
    assert CALLS == ["o-1"]


async def test_an_attempt_another_writer_started_is_counted_as_interrupted() -> None:
    """A stale owner recorded attempt 1's start a moment before this worker: this
    worker's marker is refused, attempt 1 counts as interrupted (never run here),
    and attempt 2 runs once."""
    CALLS.clear()
    with fleet_of([once]) as fleet:
        put = fleet.store.put_step
        raced: list[StepRecord] = []

        async def race(workflow_id: str, rec: StepRecord) -> StepRecord:
            if not raced and not rec.resolved and rec.retry_at is None:
                raced.append(replace(rec, epoch=rec.epoch - 1, recorded_at=rec.recorded_at - 1))
                await put(workflow_id, raced[0])  # the other writer gets there first
            return await put(workflow_id, rec)

        fleet.store.put_step = race  # type: ignore[method-assign]
        fleet.pending("r1", "once", "o-2")
        run = await fleet.deliver("r1")
    assert (run.status, run.output) == (Status.COMPLETED, '"charged o-2"')
    rec = fleet.store.steps["r1"]["0"]
    assert [a["attempt"] for a in rec.attempts] == [1, 2]
    assert rec.attempts[0]["error"]["type"] == "StepInterruptedError"
    assert CALLS == ["o-2"]  # attempt 2 only


async def test_an_interrupted_attempt_with_no_retry_left_fails_the_step() -> None:
    CALLS.clear()

    @workflow("once-no-retry")
    async def once_no_retry(ctx: Any, order: str) -> str:
        return await ctx.step(
            "charge", charge, order, semantics=AT_MOST_ONCE_PER_RETRY, retry=NO_RETRY
        )

    with fleet_of([once_no_retry]) as fleet:
        fleet.pending("r1", "once-no-retry", "o-3")
        started = StepRecord(
            "0", "charge", "step", 1, 5, started_at=5, attempts=[{"attempt": 1, "started_at": 5}]
        )  # type: ignore[arg-type]
        await fleet.store.put_step("r1", started)  # a worker that died inside attempt 1
        run = await fleet.deliver("r1")
    assert run.status == Status.FAILED and run.error is not None
    assert run.error.type == "StepFailedError"
    assert fleet.store.steps["r1"]["0"].error.type == "StepInterruptedError"
    assert CALLS == []


async def test_an_interrupted_attempt_can_end_the_step_while_errors_are_retried() -> None:
    """`non_retryable=[StepInterruptedError]`: never a second attempt after an
    interruption, though the policy retries ordinary errors."""
    CALLS.clear()
    policy = RetryPolicy(max_attempts=3, non_retryable=[StepInterruptedError])

    @workflow("once-strict")
    async def once_strict(ctx: Any, order: str) -> str:
        return await ctx.step(
            "charge", charge, order, semantics=AT_MOST_ONCE_PER_RETRY, retry=policy
        )

    with fleet_of([once_strict]) as fleet:
        fleet.pending("r1", "once-strict", "o-4")
        started = StepRecord(
            "0", "charge", "step", 1, 5, started_at=5, attempts=[{"attempt": 1, "started_at": 5}]
        )  # type: ignore[arg-type]
        await fleet.store.put_step("r1", started)
        run = await fleet.deliver("r1")
    assert run.status == Status.FAILED
    rec = fleet.store.steps["r1"]["0"]
    assert rec.error is not None and rec.error.type == "StepInterruptedError"
    assert len(rec.attempts) == 1 and CALLS == []
