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
from .settings import Settings


class WorkflowTestEnvironment:
    def __init__(
        self,
        *,
        workflows: list[Any],
        max_concurrent_workflows: int = 8,
        lease_seconds: int = 10,
    ) -> None:
        self.clock = SkippingClock()
        self._workflows = workflows
        self._max = max_concurrent_workflows
        self._settings = Settings(lease_seconds=lease_seconds, poll_seconds=1, sweep_grace_ms=1000)
        self.stack: LocalStack | None = None
        self._worker: BackgroundWorker | None = None
        self.client: Client

    def __enter__(self) -> WorkflowTestEnvironment:
        self.stack = LocalStack(
            clock=self.clock, settings=self._settings, background_interval=0.1
        ).start()
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

    def skip(self, by: timedelta | float) -> None:
        """Move workflow time forward; due timers fire within a fraction of a second."""
        self.clock.advance(by)

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
