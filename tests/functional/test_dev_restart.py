"""`orchestrator dev --state-dir`: what the snapshot keeps beyond the table's items
and the timers (tests/functional/test_dev_state.py): large values (the bucket's
objects), recurring schedules, callbacks, a pinned build's queue. Each test
saves a stack, empties moto (a new stack on the shared test server, reset), and
restores into the new one, as a restart of `orchestrator dev` does."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator import resources as r
from orchestrator.api import callbacks
from orchestrator.api.schedules import ScheduleRequest
from orchestrator.clock import SkippingClock
from orchestrator.local import LocalStack
from orchestrator.local.snapshot import VALUES_DIR, restore, save
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Overlap, TickOutcome
from tests.conftest import TEST_SETTINGS, executions
from tests.helpers import finish_through_sleeps, wait_for, wait_status
from tests.pinned import make
from tests.workflows import count
from tests.workflows_large import LARGE, _value
from worker import workflow

HOUR = 3600


def _restart(make_stack: Callable[..., LocalStack], clock: SkippingClock, path: Path) -> Any:
    """Save the stack as `orchestrator dev` does at stop, then a new, empty stack
    with the state restored; (the new stack, what restore reported)."""
    second = make_stack(clock=clock)  # resets the shared moto server: nothing left
    restored = restore(second, path)
    assert restored is not None
    return second, restored


def _objects(stack: LocalStack) -> list[str]:
    resp = stack.s3.list_objects_v2(Bucket=stack.settings.bucket, Prefix=r.VALUE_KEY_PREFIX)
    return [o["Key"] for o in resp.get("Contents", [])]


def test_a_large_value_survives_a_restart(
    make_stack: Callable[..., LocalStack], tmp_path: Path, exec_log: Path
) -> None:
    clock = SkippingClock()
    first = make_stack(clock=clock)
    with BackgroundWorker(LARGE, first.settings, clock=clock):
        run, _ = first.service.start("large.waiter", {"size": 50 * 1024})
        wait_status(first, run.id, "waiting", timeout=60)
    kept = _objects(first)
    assert len(kept) == 1  # the 50 KB step result, offloaded
    saved = save(first, tmp_path / "state.json")
    assert saved["values"] == 1
    assert [f.name for f in (tmp_path / VALUES_DIR).iterdir()] == [
        kept[0].removeprefix(r.VALUE_KEY_PREFIX)
    ]

    second = make_stack(clock=clock)  # resets the shared moto server
    assert _objects(second) == []
    assert restore(second, tmp_path / "state.json") == saved
    assert _objects(second) == kept
    with BackgroundWorker(LARGE, second.settings, clock=clock):
        second.service.signal(run.id, "go", None)
        done = wait_status(second, run.id, "completed", "failed", timeout=60)
    assert done.status.value == "completed", done.error
    rows = _value(50 * 1024, "w")["rows"]
    assert json.loads(done.output or "null") == hashlib.sha256("|".join(rows).encode()).hexdigest()
    # The value was read back from the restored object, not made again.
    assert executions(exec_log).count(f"{run.id}:make") == 1
    assert second.store.get(run.id).epoch <= 3  # claimed a few times, not in a loop


def test_a_value_the_bucket_dropped_is_dropped_from_the_state_dir(
    make_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    stack = make_stack()
    data = b'{"a": "' + b"x" * 2000 + b'"}'
    digest = hashlib.sha256(data).hexdigest()
    stack.s3.put_object(Bucket=stack.settings.bucket, Key=r.VALUE_KEY_PREFIX + digest, Body=data)
    save(stack, tmp_path / "state.json")
    assert (tmp_path / VALUES_DIR / digest).read_bytes() == data
    stack.s3.delete_object(Bucket=stack.settings.bucket, Key=r.VALUE_KEY_PREFIX + digest)
    assert save(stack, tmp_path / "state.json")["values"] == 0
    assert not (tmp_path / VALUES_DIR / digest).exists()


def test_a_recurring_schedule_ticks_on_time_after_a_restart(
    make_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    clock = SkippingClock()
    first = make_stack(clock=clock)
    first.service.schedules.create(
        ScheduleRequest(
            name="hourly",
            workflow="count",
            input={"steps": 1},
            expression="rate(1 hour)",
            overlap=Overlap.ALLOW_ALL,  # the catch-up's run may still be open at the tick
        )
    )
    saved = save(first, tmp_path / "state.json")
    assert saved["recurring"] == 1
    clock.advance(3 * HOUR + 60)  # the stack is "stopped" over three ticks

    # A grace of a minute: the sweeper's catch-up takes a tick only once it is a
    # minute overdue, so the tick below is the emulator's to deliver even when a
    # loaded machine delivers it seconds late (the catch-up would start it first,
    # and the delivery would then find it started).
    second = make_stack(clock=clock, settings=TEST_SETTINGS.with_(sweep_grace_ms=60_000))
    restored = restore(second, tmp_path / "state.json")
    assert restored is not None and restored["recurring"] == 1
    emulator = second.emulator
    before = emulator.delivered_total
    due = emulator.next_recurring_tick()
    # The next tick after the restore, not one of those that fell while stopped
    # (the sweeper's catch-up fires the latest of those, once).
    assert due is not None and clock.now_ms() < due <= clock.now_ms() + HOUR * 1000
    with BackgroundWorker([count], second.settings, clock=clock):
        clock.advance((due - clock.now_ms()) / 1000)
        wait_for(lambda: emulator.deliveries_since(before))
        delivered = emulator.deliveries_since(before)
        assert [(name, tick) for name, tick, _ in delivered] == [("hourly", due)]
        decision = delivered[0][2]
        assert decision.outcome == TickOutcome.STARTED, decision
        started = decision.run_id
        wait_status(second, started, "completed")


@workflow("restart.approval")
async def approval(ctx: Any, input: Any = None) -> Any:
    cb = await ctx.create_callback("approval", timeout=HOUR)
    return {"ok": await cb.result()}


def test_a_callback_completes_after_a_restart(
    make_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    clock = SkippingClock()
    first = make_stack(clock=clock)
    with BackgroundWorker([approval], first.settings, clock=clock):
        run, _ = first.service.start("restart.approval", {})
        wait_status(first, run.id, "waiting")
    token = next(s.callback_id for s in first.store.steps(run.id) if s.callback_id)
    save(first, tmp_path / "state.json")

    second, _ = _restart(make_stack, clock, tmp_path / "state.json")
    callbacks.complete(second.service, token, {"ok": True, "result": {"yes": 1}})
    with BackgroundWorker([approval], second.settings, clock=clock):
        done = wait_status(second, run.id, "completed", "failed")
    assert json.loads(done.output or "null") == {"ok": {"yes": 1}}, done.error


def test_a_pinned_run_keeps_its_build_queue_across_a_restart(
    make_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    build = "2026.11.1"
    clock = SkippingClock()
    first = make_stack(clock=clock)
    with BackgroundWorker([make("A")], first.settings, clock=clock, build_id=build):
        first.service.start("ledger", {}, "pinned-1")
        parked = wait_status(first, "pinned-1", "sleeping")
    route = parked.route
    assert route == f"default@{build}"
    save(first, tmp_path / "state.json")

    second, _ = _restart(make_stack, clock, tmp_path / "state.json")
    assert second.dispatcher.queue_exists(route)  # no worker of the build started yet
    clock.advance(HOUR + 1)  # its timer fires into the build's queue, not the shared one

    def depth(key: str | None) -> int:
        attrs = second.sqs.get_queue_attributes(
            QueueUrl=second.settings.queue_url_for(key),
            AttributeNames=["ApproximateNumberOfMessages"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])

    wait_for(lambda: depth(route) >= 1)
    assert depth(None) == 0
    restored = second.store.get("pinned-1")
    assert (restored.build_id, restored.pinned) == (build, True)
    with BackgroundWorker([make("A")], second.settings, clock=clock, build_id=build):
        assert finish_through_sleeps(second, "pinned-1") == {"open": "A", "close": "A"}


def test_a_snapshot_of_the_first_format_still_restores(
    make_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    """A state dir written before values, recurring schedules and queues were
    kept: its items and timers come back, the rest starts empty."""
    clock = SkippingClock()
    first = make_stack(clock=clock)
    first.service.start("count", {"steps": 1}, "old-format")
    save(first, tmp_path / "state.json")
    state = json.loads((tmp_path / "state.json").read_text())
    old = {k: state[k] for k in ("saved_at", "items", "schedules")}
    (tmp_path / "state.json").write_text(json.dumps({"format": 1, **old}))

    second, restored = _restart(make_stack, clock, tmp_path / "state.json")
    assert (restored["runs"], restored["values"], restored["recurring"]) == (1, 0, 0)
    with BackgroundWorker([count], second.settings, clock=clock):
        wait_status(second, "old-format", "completed")
