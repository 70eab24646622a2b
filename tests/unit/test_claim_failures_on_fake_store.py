"""A park refused for good (not a lost lease) is counted like any claim that
fails the same way every time (worker/_claim_failures.py): the run fails after
the limit of claims. A park refused transiently is left as a lost claim, however
often. The worker loop on the in-memory store (tests/fakes/memory_store.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.clock import SkippingClock
from orchestrator.model import Run, Status
from orchestrator.settings import Settings
from tests.fakes.memory_store import InMemoryStore
from tests.unit.test_worker_on_fake_store import CALLS, Harness, sleeper
from worker._worker import Worker

LIMIT = 3


class RefusingParks(InMemoryStore):
    """Every park fails with `error` (an AWS error after the SDK's retries)."""

    def __init__(self, settings: Settings, error: ClientError) -> None:
        super().__init__(settings)
        self.error = error

    async def park_sleep(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


def _error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "UpdateItem",
    )


async def _harness(error: ClientError) -> Harness:
    CALLS.clear()
    settings = Settings(
        lease_seconds=30, queue_url="http://unused.invalid/q", claim_failure_limit=LIMIT
    )
    store = RefusingParks(settings, error)
    clock = SkippingClock()
    w = Worker(workflows=[sleeper], settings=settings, clock=clock)
    w._store = store  # type: ignore[assignment]  # the fake in place of AsyncStore
    return Harness(w, store, clock)


@pytest.fixture
async def refused_for_good() -> AsyncIterator[Harness]:
    h = await _harness(_error("ValidationException", 400))
    yield h
    h.worker._executor.shutdown(wait=False)


@pytest.fixture
async def refused_for_now() -> AsyncIterator[Harness]:
    h = await _harness(_error("InternalServerError", 500))
    yield h
    h.worker._executor.shutdown(wait=False)


async def _deliver_after_the_lease(h: Harness, run: Run) -> Run:
    assert run.lease_until is not None
    h.clock.advance(max(0, run.lease_until - h.clock.now_ms()) / 1000 + 1)
    return await h.deliver(run.id)


async def test_a_park_refused_for_good_fails_the_run_after_the_limit(
    refused_for_good: Harness,
) -> None:
    h = refused_for_good
    await h.start("r1", "fake-sleeper", {})
    run = await h.deliver("r1")
    for count in range(1, LIMIT):
        assert run.status == Status.RUNNING
        assert run.claim_failure is not None and run.claim_failure.count == count
        assert run.claim_failure.type == "ClientError"
        assert "ValidationException" in run.claim_failure.message
        run = await _deliver_after_the_lease(h, run)
    assert run.status == Status.FAILED and run.epoch == LIMIT
    assert run.error is not None and run.error.type == "ClientError"
    assert f"this error ended {LIMIT} claims of the run in a row" in run.error.message
    assert CALLS == ["before"]  # recorded once, replayed by the later claims
    assert run.claim_failure is None


async def test_a_park_refused_transiently_never_fails_the_run(refused_for_now: Harness) -> None:
    h = refused_for_now
    await h.start("r1", "fake-sleeper", {})
    run = await h.deliver("r1")
    for _ in range(LIMIT + 1):
        assert run.status == Status.RUNNING and run.claim_failure is None
        run = await _deliver_after_the_lease(h, run)
    assert run.status == Status.RUNNING and run.epoch == LIMIT + 2
    assert CALLS == ["before"]
