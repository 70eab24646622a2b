"""Test your own workflows against the real engine, with time you control.

    from orchestrator.testing import WorkflowTestEnvironment

    def test_reminder():
        with WorkflowTestEnvironment(workflows=[reminder]) as env:
            run = env.client.start("reminder", {"email": "a@example.com"})
            env.wait_for_status(run["id"], "sleeping")
            env.skip(timedelta(days=1))          # a day of workflow time, instantly
            assert env.client.wait(run["id"])["status"] == "completed"

It runs the embedded stack (a moto server over HTTP, the API, the scheduler
emulator, the sweeper) and a worker in this process, all reading one
SkippingClock, so a one-day durable sleep completes in milliseconds of wall
time through the same schedules and messages as in production.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from .client import Client
from .clock import SkippingClock
from .local import LocalStack
from .local.worker_thread import BackgroundWorker
from .settings import Settings, parse_task_queues


class WorkflowTestEnvironment:
    def __init__(
        self,
        *,
        workflows: list[Any],
        max_concurrent_workflows: int = 8,
        lease_seconds: int = 10,
        task_queues: list[str] | None = None,
    ) -> None:
        self.clock = SkippingClock()
        self._workflows = workflows
        self._max = max_concurrent_workflows
        # The deployment's task queues (default is always one); the worker polls
        # the ones its workflows declare, and default.
        queues = parse_task_queues(",".join(task_queues or []))
        self._settings = Settings(
            lease_seconds=lease_seconds, poll_seconds=1, sweep_grace_ms=1000, task_queues=queues
        )
        self.stack: LocalStack | None = None
        self._worker: BackgroundWorker | None = None
        self.client: Client

    def __enter__(self) -> WorkflowTestEnvironment:
        self.stack = LocalStack(
            clock=self.clock, settings=self._settings, background_interval=0.1, allow_reset=True
        ).start()
        # moto keeps its state per process, whichever server serves it: an earlier
        # environment's runs, schedules and registered workers would still be
        # there. Each environment starts from none (one environment at a time
        # per process, then).
        self.stack.reset()
        self._worker = BackgroundWorker(
            self._workflows,
            self.stack.settings,
            clock=self.clock,
            max_concurrent_workflows=self._max,
        ).start()
        self.client = Client(self.stack.api_url)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._worker:
            self._worker.stop(grace=1)
        if self.stack:
            self.stack.stop()

    def skip(self, by: timedelta | float, *, settle_timeout: float = 10.0) -> None:
        """Move workflow time forward; due timers fire within a fraction of a second.

        Recurring schedules are stepped through: the clock stops at each tick on
        the way, the tick is delivered, and the run it started is given up to
        `settle_timeout` seconds to finish or park before time moves on, so a
        week skipped shows a nightly schedule's seven runs, each decided
        against the one before (as the overlap policy would see them live).
        """
        assert self.stack is not None
        seconds = by.total_seconds() if isinstance(by, timedelta) else float(by)
        target = self.clock.now_ms() + int(seconds * 1000)
        emulator = self.stack.emulator
        while True:
            tick = emulator.next_recurring_tick()
            if tick is None or tick > target:
                break
            now = self.clock.now_ms()
            if tick > now:
                self.clock.advance((tick - now) / 1000)
            before = emulator.delivered_total
            emulator.fire_due()
            self._settle(emulator.deliveries_since(before), settle_timeout)
        now = self.clock.now_ms()
        if target > now:
            self.clock.advance((target - now) / 1000)

    def _settle(self, deliveries: list[tuple[str, int, Any]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for _, _, decision in deliveries:
            run_id = getattr(decision, "run_id", None)
            if run_id is None or getattr(decision.outcome, "value", "") != "started":
                continue
            while time.monotonic() < deadline:
                if self.client.get(run_id)["status"] not in ("pending", "running"):
                    break
                time.sleep(0.02)

    def wait_for_status(
        self, workflow_id: str, *statuses: str, timeout: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.client.get(workflow_id)
            if run["status"] in statuses:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {workflow_id} is {run['status']}, not {statuses}, after {timeout}s"
                )
            time.sleep(0.02)
