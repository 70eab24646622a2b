"""Workers on one queue that serve different names must not delay each other
(issue #17, item 1): a message for a name a worker does not serve is handed
back at once to the workers that serve it, never hidden for long."""

from __future__ import annotations

import logging
import re

import pytest

from orchestrator.local.worker_thread import BackgroundWorker
from tests.conftest import TEST_SETTINGS
from tests.helpers import wait_for, wait_status
from tests.workflows import count, failing, sleeper, waiter

RUNS = 8
# A hidden message would be hidden for the queue's visibility timeout (the lease
# + 5 s) and a run not sent again by the sweeper before its grace: both ten
# minutes, so a run completes within a test's wait only if its message was
# handed back (no duration is measured: a loaded machine cannot fail it).
SETTINGS = TEST_SETTINGS.with_(sweep_grace_ms=600_000, lease_seconds=600)


def test_a_second_worker_serving_other_names_does_not_delay_runs(make_stack) -> None:
    # The sweeper's real grace (30 s): it must not be what rescues a hidden message.
    stack = make_stack(settings=SETTINGS)
    with (
        BackgroundWorker([count], stack.settings, clock=stack.clock),
        BackgroundWorker([failing, sleeper, waiter], stack.settings, clock=stack.clock),
    ):
        for i in range(RUNS):
            run, _ = stack.service.start("count", {"steps": 1}, workflow_id=f"shared-{i}")
            wait_status(stack, run.id, "completed", timeout=60)


def test_stopping_a_worker_that_does_not_serve_a_name_does_not_delay_it(make_stack) -> None:
    stack = make_stack(settings=SETTINGS)
    with BackgroundWorker([count], stack.settings, clock=stack.clock):
        # A long poll still open at stop must not swallow the next message: SQS
        # would hide it from everyone for the whole visibility timeout.
        # (Before the fix, about one try in three was hidden for the whole visibility.)
        for i in range(3):
            other = BackgroundWorker([failing], stack.settings.with_(poll_seconds=2)).start()
            wait_for(lambda w=other: w.worker._receiving)  # its long poll is waiting
            other.stop()
            run, _ = stack.service.start("count", {"steps": 1}, workflow_id=f"after-stop-{i}")
            wait_status(stack, run.id, "completed", timeout=60)


def test_runs_start_soon_after_a_worker_for_their_name_appears(
    make_stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack(settings=SETTINGS)
    caplog.set_level(logging.DEBUG, logger="worker")  # each hand-off's line
    with BackgroundWorker([failing], stack.settings, clock=stack.clock):
        ids = [stack.service.start("count", {"steps": 1})[0].id for _ in range(4)]
        # The other worker sees them, twice each, and no one serves them.
        wait_for(lambda: all(_handed_back(caplog, run_id) >= 2 for run_id in ids), timeout=60)
        with BackgroundWorker([count], stack.settings, clock=stack.clock):
            for run_id in ids:
                wait_status(stack, run_id, "completed", timeout=60)


def _handed_back(caplog: pytest.LogCaptureFixture, run_id: str) -> int:
    """How many times a worker handed the run's message back (worker/_refusals.py)."""
    line = re.compile(rf"run {re.escape(run_id)} \(\w+\), receive \d+: visible")
    return sum(1 for r in list(caplog.records) if line.match(r.getMessage()))
