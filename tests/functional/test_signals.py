"""Signals: buffered before the wait, racing the park, after a timeout, in
order, exactly once; refused for finished and unknown runs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Client, ConflictError, NotFoundError
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from orchestrator.store.codec import from_item, run_pk, signal_sk, to_item
from tests.helpers import wait_for, wait_status
from tests.workflows import ALL
from worker._store import AsyncStore, Refused


def test_signals_sent_before_the_wait_are_buffered_and_consumed_in_order(
    stack, exec_log: Path
) -> None:
    client = Client(stack.api_url)
    run = client.start("waiter", {"waits": 3})
    for i in range(3):
        assert client.signal(run["id"], "go", {"n": i})["woke"] is False  # nobody waits yet
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        done = wait_status(stack, run["id"], "completed")
    assert json.loads(done.output) == [{"n": 0}, {"n": 1}, {"n": 2}]
    # Each consumed exactly once, and set to expire.
    for seq in (1, 2, 3):
        item = stack.ddb.get_item(
            TableName=stack.settings.table,
            Key=to_item({"pk": run_pk(run["id"]), "sk": signal_sk("go", seq)}),
        )["Item"]
        d = from_item(item)
        assert "consumed_at" in d and d["expires_at"] > time.time()
    waits = [s for s in stack.store.steps(run["id"]) if s.kind == "wait"]
    assert [w.signal_seq for w in waits] == [1, 2, 3]


def test_a_signal_sent_while_the_run_waits_wakes_it(stack, exec_log: Path) -> None:
    client = Client(stack.api_url)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("waiter", {"waits": 1})
        wait_status(stack, run["id"], "waiting")
        assert client.get(run["id"])["waiting_for"] == "go"
        assert client.signal(run["id"], "go", "hello")["woke"] is True
        done = wait_status(stack, run["id"], "completed")
    assert json.loads(done.output) == ["hello"]


def test_a_signal_racing_the_park_is_found_on_the_workers_second_look(
    stack, exec_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real worker, with the signal forced into the gap between its inbox
    check and its park: the park's `signal_seq = seen` condition refuses it, the
    worker looks again, consumes the signal and completes without parking."""
    client = Client(stack.api_url)
    parks: list[str] = []
    real_park_wait = AsyncStore.park_wait

    async def signal_then_park(self: AsyncStore, workflow_id: str, **kw: Any) -> Any:
        if not parks:  # the first park: the inbox was empty a moment ago
            await asyncio.to_thread(stack.service.signal, workflow_id, "go", "raced")
        result = await real_park_wait(self, workflow_id, **kw)
        parks.append("refused" if isinstance(result, Refused) else "parked")
        return result

    monkeypatch.setattr(AsyncStore, "park_wait", signal_then_park)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("waiter", {"waits": 1})
        done = wait_status(stack, run["id"], "completed")
    assert parks == ["refused"]  # the race happened, and the worker never parked
    assert json.loads(done.output) == ["raced"]
    (wait,) = [s for s in stack.store.steps(run["id"]) if s.kind == "wait"]
    assert wait.signal_seq == 1


def test_the_park_is_refused_when_a_signal_arrived_after_the_inbox_check(stack) -> None:
    """The interleaving that loses signals in a naive design, forced step by step."""
    run, _ = stack.service.start("waiter", {})

    async def scenario():
        import aioboto3

        kw = {"region_name": stack.settings.region, "endpoint_url": stack.settings.endpoint_url}
        async with aioboto3.Session().client("dynamodb", **kw) as ddb:
            store = AsyncStore(ddb, None, None, stack.settings)
            now = stack.clock.now_ms()
            claimed = await store.claim(
                run.id, owner="w", now=now, lease_ms=30_000, names=["waiter"]
            )
            assert await store.inbox(run.id, "go") == []  # worker looks: empty
            sig, woke, _ = stack.store.send_signal(run.id, "go", '"x"')  # signal lands now
            assert woke is False  # the run is still running: nothing to wake
            refused = await store.park_wait(
                run.id,
                epoch=claimed.epoch,
                now=now,
                signal="go",
                seen_seq=claimed.signal_seq,
                deadline=None,
            )
            assert isinstance(refused, Refused) and refused.old.signal_seq == sig.seq
            assert [s.seq for s in await store.inbox(run.id, "go")] == [
                sig.seq
            ]  # found on the second look
            # The other order: parked first, then the signal flips the run to pending.
            assert (
                await store.park_wait(
                    run.id,
                    epoch=claimed.epoch,
                    now=now,
                    signal="go",
                    seen_seq=sig.seq,
                    deadline=None,
                )
                is None
            )
            _, woke, _ = stack.store.send_signal(run.id, "go", '"y"')
            return woke

    assert asyncio.run(scenario()) is True
    assert stack.store.get(run.id).status == Status.PENDING


def test_a_signal_after_the_timeout_stays_for_the_next_wait(stack, exec_log: Path) -> None:
    client = Client(stack.api_url)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock) as bw:
        run = client.start("waiter", {"waits": 2, "timeout": 600})
        wait_status(stack, run["id"], "waiting")
    # No worker now. The deadline passes, then the signal arrives.
    stack.clock.advance(601)
    client.signal(run["id"], "go", "late")
    assert bw.worker is not None
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        done = wait_status(stack, run["id"], "completed", timeout=20)
    assert json.loads(done.output) == [None, "late"]
    first = next(s for s in stack.store.steps(run["id"]) if s.kind == "wait")
    assert first.timed_out and first.resolved


def test_a_wait_times_out_through_the_timer_path(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("waiter", {"waits": 1, "timeout": 3 * 86_400})
        wait_status(stack, run.id, "waiting")
        stack.clock.advance(3 * 86_400)
        done = wait_status(stack, run.id, "completed", timeout=20)
    assert json.loads(done.output) == [None]


def test_a_signal_that_wakes_a_wait_deletes_its_timeout_schedule(stack, exec_log: Path) -> None:
    def schedules() -> list[str]:
        group = stack.settings.schedule_group
        return [s["Name"] for s in stack.scheduler.list_schedules(GroupName=group)["Schedules"]]

    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("waiter", {"waits": 1, "timeout": 3 * 86_400})
        parked = wait_status(stack, run.id, "waiting")
        assert parked.timer is not None
        wait_for(lambda: schedules() == [parked.timer])  # created right after the park
        _, woke = stack.service.signal(run.id, "go", {"ok": True})
        assert woke is True
        assert schedules() == []  # no Scheduler invocation, no stray message later
        done = wait_status(stack, run.id, "completed", timeout=20)
    assert json.loads(done.output) == [{"ok": True}] and done.timer is None


def test_signals_to_finished_or_unknown_runs_are_refused(stack, exec_log: Path) -> None:
    client = Client(stack.api_url)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("count", {"steps": 1})
        client.wait(run["id"])
    with pytest.raises(ConflictError, match="completed"):
        client.signal(run["id"], "go", 1)
    with pytest.raises(NotFoundError):
        client.signal("no-such-run", "go", 1)
    assert stack.store.signals(run["id"], "go") == []
