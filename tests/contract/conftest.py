"""The `backend` fixture: each contract case runs once on the in-memory fake
and once on `AsyncStore` against the moto server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aioboto3
import pytest

from tests.contract.backends import Backend, FakeProbe, MotoProbe
from tests.fakes.memory_store import InMemoryStore
from worker._store import AsyncStore


@pytest.fixture(params=["fake", "moto"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "fake":
        fake = InMemoryStore()
        now = 10**12

        def deliver_fake(i: str, n: str, p: str) -> bool:
            return fake.deliver_signal(i, n, p, now=now)

        yield Backend("fake", fake, deliver_fake, now, FakeProbe(fake))
        return
    stack = request.getfixturevalue("stack")
    s = stack.settings
    kw = {"region_name": s.region, "endpoint_url": s.endpoint_url}
    session = aioboto3.Session()
    async with (
        session.client("dynamodb", **kw) as ddb,
        session.client("sqs", **kw) as sqs,
        session.client("scheduler", **kw) as scheduler,
    ):
        store = AsyncStore(ddb, sqs, scheduler, s, delete_max_wait=0.05)

        def deliver(i: str, n: str, p: str) -> bool:
            return bool(stack.store.send_signal(i, n, p)[1])

        yield Backend("moto", store, deliver, stack.clock.now_ms(), MotoProbe(store, scheduler))
        await store.close()
