"""The worker's own entry in the registry (`orchestrator/store/registry.py`):
written at start, every REGISTRY_INTERVAL_S, and marked stopped at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from orchestrator.clock import Clock
from orchestrator.store.registry import REGISTRY_INTERVAL_S, WorkerInfo, put_worker

log = logging.getLogger("worker")


class Presence:
    def __init__(
        self,
        ddb: Any,
        table: str,
        clock: Clock,
        *,
        worker_id: str,
        names: list[str],
        concurrency: int,
        busy: Callable[[], int],
        task_queues: list[str] | None = None,
        served: list[str] | None = None,
        build_id: str | None = None,
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock
        self._busy = busy
        self._paused = paused  # the worker's loop is held: not live (worker/_heartbeats.py)
        self._started = clock.now_ms()
        self._id = worker_id
        self._names = names
        self._concurrency = concurrency
        self._task_queues = task_queues or ["default"]
        self._served = served or []
        self._build_id = build_id
        self._task: asyncio.Task[None] | None = None

    def _info(self, *, stopped: bool = False) -> WorkerInfo:
        return WorkerInfo(
            id=self._id,
            host=socket.gethostname(),
            pid=os.getpid(),
            names=self._names,
            concurrency=self._concurrency,
            busy=self._busy(),
            started_at=self._started,
            last_seen=self._clock.now_ms(),
            stopped=stopped,
            task_queues=self._task_queues,
            served=self._served,
            build_id=self._build_id,
        )

    async def beat(self, *, stopped: bool = False) -> None:
        await self._ddb.put_item(**put_worker(self._table, self._info(stopped=stopped)))

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            await self.beat()
        self._task = asyncio.create_task(self._loop(), name="presence")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(REGISTRY_INTERVAL_S)
            if self._paused():
                continue
            try:
                await self.beat()
            except Exception:
                log.warning("could not update the worker registry; retrying", exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.beat(stopped=True)
