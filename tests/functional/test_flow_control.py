"""Flow control per task queue: a concurrency limit that holds across every
worker, a rate limit, limits changed at run time, and slots that a killed
worker leaves behind coming back after its lease."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.client import Client
from orchestrator.local import LocalStack
from orchestrator.local.worker_thread import BackgroundWorker
from tests.conftest import executions
from tests.helpers import WorkerProcess, wait_for
from tests.workflows import ALL


def _held(path: Path) -> list[tuple[float, float]]:
    """(start, end) of every step that ran to its end."""
    out = []
    for line in executions(path):
        parts = line.split(":")
        if parts[1] == "held":
            out.append((float(parts[2]), float(parts[3])))
    return out


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = peak = 0
    for _, delta in events:  # an end sorts before a start at the same instant
        level += delta
        peak = max(peak, level)
    return peak


def _all_done(client: Client, ids: list[str]) -> bool:
    return all(client.get(i)["status"] == "completed" for i in ids)


def _started(path: Path) -> list[str]:
    """The runs whose held step has started."""
    return [line.split(":")[0] for line in executions(path) if ":held-start:" in line]


def test_max_concurrency_holds_across_four_workers(
    stack: LocalStack, exec_log: Path, tmp_path: Path
) -> None:
    """A backlog of nine runs on a queue limited to three, over four workers with
    room for sixteen. The runs that get a slot hold it until the test opens a
    gate, so the limit binds: three hold and the others are refused, again and
    again, while they hold. Then the peak overlap of the held steps is the limit
    itself, and nothing ever ran above it."""
    limit, n = 3, 9
    client = Client(stack.api_url)
    queue = client.set_queue_limits("default", max_concurrency=limit)
    assert queue["max_concurrency"] == limit and queue["in_flight"] == 0
    gate = tmp_path / "gate"
    # A lease far longer than the test: no load can break one, so no takeover runs
    # a step a second time (which would add an interval of its own).
    settings = stack.settings.with_(lease_seconds=600)
    workers = [
        BackgroundWorker(ALL, settings, clock=stack.clock, max_concurrent_workflows=4).start()
        for _ in range(4)
    ]

    def refusals() -> int:
        return sum(w.worker._flow.refused for w in workers)

    try:
        ids = [client.start("limited", {"gate": str(gate)})["id"] for _ in range(n)]
        wait_for(lambda: len(_started(exec_log)) >= limit, timeout=60)
        # Each waiting run has a message or two in hand now (the sweeper re-sends
        # a run still pending after its grace); a refusal beyond two each is an
        # acquire decided while `limit` runs held their slot.
        seen = refusals()
        wait_for(
            lambda: refusals() > seen + 2 * (n - limit) or len(_started(exec_log)) > limit,
            timeout=60,
        )
        in_flight = client.queues()[0]["in_flight"]
        wait_for(lambda: len(_started(exec_log)) >= in_flight, timeout=60)
        assert (len(_started(exec_log)), in_flight) == (limit, limit)
        gate.touch()
        wait_for(lambda: _all_done(client, ids), timeout=120, interval=0.5)
    finally:
        gate.touch()  # a failed check must not leave the held steps waiting
        for w in workers:
            w.stop(grace=1)
    held = _held(exec_log)
    assert sorted(
        line.split(":")[0] for line in executions(exec_log) if ":held:" in line
    ) == sorted(ids)
    assert _max_overlap(held) == limit  # reached, and never exceeded
    assert client.queues()[0]["in_flight"] == 0  # every slot given back


class _StoppedClock:
    """Stands still until the test moves it: the rate limit's windows (of the
    worker's clock) turn only then, however long the claims take on a loaded
    machine. Leases taken on it never run out."""

    def __init__(self) -> None:
        self._now = int(time.time()) * 1000

    def now_ms(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1000)


def test_a_rate_limit_spaces_claims_and_drops_nothing(stack: LocalStack, exec_log: Path) -> None:
    from orchestrator.store.flow import flow_from_item, flow_key

    def window_full() -> bool:
        """The window of the clock's present time has taken its five claims."""
        item = stack.ddb.get_item(TableName=stack.settings.table, Key=flow_key("default"))
        flow = flow_from_item("default", item.get("Item"))
        return flow.window_start == clock.now_ms() and flow.window_count >= 5

    client = Client(stack.api_url)
    client.set_queue_limits("default", rate_limit=5, rate_period=1)
    clock = _StoppedClock()
    windows = 1
    with BackgroundWorker(ALL, stack.settings, clock=clock, max_concurrent_workflows=8):
        ids = [client.start("limited", {"seconds": 0})["id"] for _ in range(15)]
        while not _all_done(client, ids):
            # The window fills (a copy of a message takes a claim too), then the next.
            wait_for(lambda: _all_done(client, ids) or window_full(), timeout=60)
            assert len(_held(exec_log)) <= 5 * windows  # at most five runs a window
            if not _all_done(client, ids):
                clock.advance(1)
                windows += 1
    assert len(_held(exec_log)) == 15  # nothing dropped, each run once
    assert windows >= 3  # 15 runs at five a window


def test_limits_change_at_run_time_and_unknown_queues_are_refused(stack: LocalStack) -> None:
    client = Client(stack.api_url)
    client.set_queue_limits("default", max_concurrency=2, rate_limit=100, rate_period=60)
    (q,) = client.queues()
    assert (q["max_concurrency"], q["rate_limit"], q["rate_period_seconds"]) == (2, 100, 60)
    client.set_queue_limits("default")  # every limit removed
    (q,) = client.queues()
    assert q["max_concurrency"] is None and q["rate_limit"] is None
    from orchestrator.errors import BadInputError, NotFoundError

    with pytest.raises(NotFoundError):
        client.set_queue_limits("gpu", max_concurrency=1)
    with pytest.raises(BadInputError):
        client.set_queue_limits("default", max_concurrency=0)


class _SecondsClock:
    """Wall time floored to the second: every acquire within one second gets the
    same `now`, as two handlers of one receive batch may within one millisecond."""

    def now_ms(self) -> int:
        return int(time.time()) * 1000


def test_a_duplicate_message_does_not_give_back_a_running_runs_slot(
    stack: LocalStack, exec_log: Path
) -> None:
    """A run's message delivered twice (the sweeper re-sends a run still pending
    after its grace, so a slow-starting worker receives both): the refused
    duplicate must leave the owner's slot alone, or a second run starts beside it."""
    client = Client(stack.api_url)
    client.set_queue_limits("default", max_concurrency=1)
    slow = client.start("limited", {"seconds": 2})["id"]
    stack.dispatcher.send(slow, "duplicate")  # both in the queue before the first receive
    url = stack.settings.queue_url_for(None)

    def queue_counts() -> tuple[int, int]:
        a = stack.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(
            a["ApproximateNumberOfMessagesNotVisible"]
        )

    with BackgroundWorker(ALL, stack.settings, clock=_SecondsClock()):
        wait_for(lambda: any(":held-start:" in x for x in executions(exec_log)), timeout=30)
        # The duplicate was refused and deleted: only the owner's message is left.
        wait_for(lambda: queue_counts() == (0, 1), timeout=30, interval=0.1)
        assert client.queues()[0]["in_flight"] == 1  # the owner's slot is still held
        fast = client.start("limited", {"seconds": 0})["id"]
        wait_for(lambda: _all_done(client, [slow, fast]), timeout=60, interval=0.3)
    held = _held(exec_log)
    assert len(held) == 2 and _max_overlap(held) == 1, held


def test_queues_show_how_long_the_oldest_run_has_waited_for_a_slot(
    stack: LocalStack,
    exec_log: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from orchestrator import resources as r
    from orchestrator.cli import main

    client = Client(stack.api_url)
    client.set_queue_limits("default", max_concurrency=1)
    holder = client.start("limited", {"seconds": 3})["id"]
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        wait_for(lambda: any(":held-start:" in x for x in executions(exec_log)), timeout=30)
        first = client.start("limited", {"seconds": 0})["id"]
        second = client.start("limited", {"seconds": 0})["id"]

        def oldest() -> tuple[str | None, float | None]:
            q = client.queues()[0]
            return q["oldest_waiting_run"], q["oldest_wait_seconds"]

        # Both are refused while the holder runs; the older wait is the one shown
        # (whichever of the two was refused first), and it grows while it waits.
        wait_for(lambda: oldest()[0] in (first, second), timeout=30, interval=0.1)
        run_id, waited = oldest()
        assert waited is not None and waited >= 0
        wait_for(lambda: (oldest()[1] or 0) > waited or oldest()[0] != run_id, timeout=30)
        monkeypatch.setenv(r.ENV_API_URL, stack.api_url)
        assert main(["queues"]) == 0
        out = capsys.readouterr().out
        assert "oldest wait" in out and "default" in out
        wait_for(lambda: _all_done(client, [holder, first, second]), timeout=60, interval=0.3)
    # Nobody waits any more: the last waiter cleared it when it got its slot.
    assert oldest() == (None, None)


def _killed_holder(stack: LocalStack, exec_log: Path) -> tuple[float, list[float], str]:
    """A worker killed while its run holds the only slot (max_concurrency=1), then
    another run on a live worker: (the dead owner's lease end, the start times of
    the held steps, the dead owner's run id)."""
    import os

    client = Client(stack.api_url)
    client.set_queue_limits("default", max_concurrency=1)
    env = {**stack.exports(), "TEST_EXEC_LOG": str(exec_log), "PYTHONPATH": str(Path.cwd())}
    env = {**os.environ, **env}
    slow = client.start("limited", {"seconds": 30})["id"]
    with WorkerProcess(env) as first:
        wait_for(lambda: any(":held-start:" in x for x in executions(exec_log)), timeout=30)
        first.kill()
    # The dead owner's lease runs to its last heartbeat plus the lease (not from the
    # kill): the slot may come back no sooner than that recorded time.
    lease_until = (stack.store.get(slow).lease_until or 0) / 1000
    fast = client.start("limited", {"seconds": 0})["id"]
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        wait_for(lambda: client.get(fast)["status"] == "completed", timeout=60, interval=0.3)
    assert client.get(slow)["status"] in ("pending", "running", "completed")
    return lease_until, [s for s, _ in _held(exec_log)], slow


def test_a_killed_worker_holds_its_slot_no_longer_than_its_lease(
    stack: LocalStack, exec_log: Path
) -> None:
    """The slot of a SIGKILLed owner is not leaked (the waiting run gets it), and
    comes back no sooner than the dead owner's recorded lease ends. Both times
    are wall-clock readings on this machine (the worker process's system clock
    and the step's time.time()); 0.5 s allows for the step thread's start."""
    lease_until, done, _ = _killed_holder(stack, exec_log)
    assert done and min(done) >= lease_until - 0.5, (done, lease_until)


def _intervals_with_kills(path: Path, killed_at: float) -> list[tuple[float, float]]:
    """Every step's (start, end); a step whose worker was killed ends at the kill."""
    ended = {}
    started = []
    for line in executions(path):
        parts = line.split(":")
        if parts[1] == "held-start":
            started.append(float(parts[2]))
        elif parts[1] == "held":
            ended[float(parts[2])] = float(parts[3])
    return [(s, ended.get(s, killed_at)) for s in started]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_200_runs_four_worker_processes_one_killed_never_exceed_three(
    stack: LocalStack, exec_log: Path
) -> None:
    import os

    client = Client(stack.api_url)
    client.set_queue_limits("default", max_concurrency=3)
    env = {**os.environ, **stack.exports(), "TEST_EXEC_LOG": str(exec_log)}
    ids = [client.start("limited", {"seconds": 0.05})["id"] for _ in range(200)]
    workers = [WorkerProcess(env) for _ in range(4)]
    try:
        wait_for(lambda: len(_held(exec_log)) >= 40, timeout=120, interval=0.2)
        workers[0].kill()
        killed_at = time.time()
        workers[0] = WorkerProcess(env)
        wait_for(lambda: _all_done(client, ids), timeout=600, interval=1)
    finally:
        for w in workers:
            w.kill()
    assert _max_overlap(_intervals_with_kills(exec_log, killed_at)) <= 3


@pytest.mark.slow
def test_100_starts_at_ten_per_second_take_about_ten_seconds(
    stack: LocalStack, exec_log: Path
) -> None:
    client = Client(stack.api_url)
    client.set_queue_limits("default", rate_limit=10, rate_period=1)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock, max_concurrent_workflows=20):
        ids = [client.start("limited", {"seconds": 0})["id"] for _ in range(100)]
        wait_for(lambda: _all_done(client, ids), timeout=300, interval=0.5)
    starts = sorted(s for s, _ in _held(exec_log))
    assert len(starts) == 100  # nothing dropped
    assert 8.0 <= starts[-1] - starts[0] <= 30.0  # about ten windows of ten claims
