"""One worker on the in-memory store, driven one message at a time (as the
worker's receive loop would): for unit tests that need a worker but no server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestrator.clock import SkippingClock
from orchestrator.model import Run, Status
from orchestrator.settings import Settings
from tests.fakes.memory_store import InMemoryStore
from worker._worker import Worker


class Fleet:
    def __init__(self, worker: Worker, store: InMemoryStore, clock: SkippingClock) -> None:
        self.worker, self.store, self.clock = worker, store, clock
        self.receipts = 0

    def pending(self, run_id: str, name: str, input: Any = None, **changes: Any) -> Run:
        """A pending run stored as the API would store it (`changes` on top)."""
        now = self.clock.now_ms()
        run = Run(
            id=run_id,
            name=name,
            status=Status.PENDING,
            input=json.dumps(input),
            created_at=now,
            updated_at=now,
            **changes,
        )
        self.store.runs[run_id] = run
        return run

    async def deliver(self, run_id: str) -> Run:
        """One message for the run, handled as the worker's receive loop would."""
        self.receipts += 1
        receipt = f"rh-{self.receipts}"
        message = {"Body": json.dumps({"id": run_id}), "ReceiptHandle": receipt}
        await self.worker._claim_and_run(message, run_id, receipt)
        run = await self.store.get_run(run_id)
        assert run is not None
        return run


@contextmanager
def fleet_of(workflows: list[Any]) -> Iterator[Fleet]:
    clock = SkippingClock()
    store = InMemoryStore(Settings(lease_seconds=30, queue_url="http://unused.invalid/q"))
    w = Worker(workflows=workflows, settings=store.settings, clock=clock)
    w._store = store  # type: ignore[assignment]  # the fake in place of AsyncStore
    try:
        yield Fleet(w, store, clock)
    finally:
        w._executor.shutdown(wait=False)
