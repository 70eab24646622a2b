"""A workflow that holds its worker's event loop between durable calls (a
CPU-bound loop, a blocking call) costs no lease: the heartbeats run on a
thread of their own (worker/_heartbeats.py). One that holds it past
`loop_stall_seconds` gives its worker's leases up, so its runs go on elsewhere.

The workflow holds the loop until the test lets it go, and the test lets it go
only once it has seen what it checks (the lease renewed in DynamoDB while the
loop was held; another worker's claim): no figure of wall time decides the
outcome, only the lease, which the holds outlast by construction.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from tests.helpers import wait_for, wait_status
from worker import workflow

LEASE_S = 3
HELD = threading.Event()  # set by the workflow once it holds the loop
RELEASE = threading.Event()  # set by the test: the workflow lets the loop go
HOLDS: list[str] = []  # the worker ids that held the loop, in order


def _hold(how: str) -> None:
    HELD.set()
    while not RELEASE.is_set():
        if how == "cpu":
            sum(i * i for i in range(20_000))  # pure Python: holds the GIL between switches
        else:
            time.sleep(0.05)  # a blocking call on the loop


@workflow("busy.hold")
async def hold(ctx: Any, how: str) -> int:
    first = await ctx.step("before", lambda: 1)
    if not HOLDS:  # the first claim only: a takeover goes on without holding
        HOLDS.append(ctx.workflow_id)
        _hold(how)
    second = await ctx.step("after", lambda: 2)
    return first + second


@pytest.fixture(autouse=True)
def _reset() -> Any:
    HELD.clear()
    RELEASE.clear()
    HOLDS.clear()
    yield
    RELEASE.set()  # a failed test never leaves a worker's loop held


@pytest.mark.parametrize("how", ["cpu", "blocking"])
def test_a_run_holding_the_loop_keeps_its_lease_and_so_do_the_others(stack: Any, how: str) -> None:
    settings = stack.settings.with_(lease_seconds=LEASE_S)
    with (
        BackgroundWorker([hold], settings, clock=stack.clock) as a,
        BackgroundWorker([hold], settings, clock=stack.clock) as b,
    ):
        run, _ = stack.service.start("busy.hold", how)
        wait_for(HELD.is_set, timeout=60)
        # The holder's loop is held: its lease is renewed all the same, several
        # leases' worth, and the other worker never claims the run.
        held_since = stack.store.get(run.id)
        assert held_since.epoch == 1 and held_since.lease_until is not None
        try:
            wait_for(
                lambda: (
                    stack.store.get(run.id).lease_until
                    >= held_since.lease_until + 3 * LEASE_S * 1000
                ),
                timeout=120,
            )
            epoch_while_held = stack.store.get(run.id).epoch
        finally:
            RELEASE.set()
        assert epoch_while_held == 1
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
        assert done.status == Status.COMPLETED, done.error
        assert done.output == "3" and done.epoch == 1
        holder, other = (a, b) if a.worker.stats["claimed"] else (b, a)
        # The counter moves just after the store's write the wait above saw.
        wait_for(lambda: holder.worker.stats["completed"] == 1, timeout=30)
        assert holder.worker.stats["claimed"] == 1
        assert holder.worker.stats["lost"] == 0 and other.worker.stats["claimed"] == 0


def test_a_loop_held_past_the_stall_limit_gives_its_leases_to_other_workers(
    stack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = stack.settings.with_(lease_seconds=LEASE_S)
    stalling = settings.with_(loop_stall_seconds=2)
    with BackgroundWorker([hold], stalling, clock=stack.clock, worker_id="stalls") as a:
        # A blocking hold: the GIL is free, so B starts as fast as ever.
        run, _ = stack.service.start("busy.hold", "blocking")
        wait_for(HELD.is_set, timeout=60)
        with BackgroundWorker([hold], settings, clock=stack.clock, worker_id="takes-over") as b:
            # A stops renewing; once its lease has passed, B claims the run and
            # completes it (the hold is the first claim's only).
            try:
                done = wait_status(stack, run.id, "completed", "failed", timeout=120)
                stalled = a.worker._heartbeats().stalled  # A's loop is still held
            finally:
                RELEASE.set()
            assert done.status == Status.COMPLETED, done.error
            assert done.epoch == 2 and stalled
            assert b.worker.stats["claimed"] == 1 and b.worker.stats["completed"] == 1
            # A's loop answers again; its claim of the run is found lost.
            wait_for(lambda: not a.worker._heartbeats().stalled, timeout=60)
            wait_for(lambda: a.worker.stats["lost"] == 1, timeout=60)
    assert any("has not answered for" in r.getMessage() for r in caplog.records)
