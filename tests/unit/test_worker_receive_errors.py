"""A worker pointed at a dead endpoint (issue #17, item 7): one traceback, then
a line a minute, not a traceback every second forever."""

from __future__ import annotations

import asyncio
import logging

from botocore.exceptions import EndpointConnectionError

from orchestrator.settings import Settings
from tests.workflows import count
from worker import Worker


class _DeadStore:
    async def receive(self, *_: object) -> list[dict[str, object]]:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


async def test_a_dead_endpoint_logs_one_traceback_then_a_line_a_minute(caplog, monkeypatch) -> None:
    w = Worker(workflows=[count], settings=Settings(queue_url="http://127.0.0.1:1/q"))
    w._store = _DeadStore()  # type: ignore[assignment]
    real_sleep = asyncio.sleep
    monkeypatch.setattr(asyncio, "sleep", lambda *_: real_sleep(0))  # a second is a tick here
    caplog.set_level(logging.INFO, logger="worker")
    poller = asyncio.create_task(w._poll_loop())
    for _ in range(400):
        await real_sleep(0)
    w._stopping = True
    poller.cancel()
    records = [r for r in caplog.records if "receive" in r.getMessage()]
    assert len(records) >= 2  # it kept retrying
    assert sum(1 for r in records if r.exc_info) == 1
    assert len(records) < 20
