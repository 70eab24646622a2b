"""Run a `Worker` on its own event loop in a background thread, so synchronous
code (the demo, tests, notebooks) can drive runs with the blocking Client."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ..clock import Clock
from ..settings import Settings


class BackgroundWorker:
    def __init__(
        self,
        workflows: list[Any],
        settings: Settings,
        *,
        clock: Clock | None = None,
        **options: Any,
    ) -> None:
        self._workflows = workflows
        self._settings = settings
        self._clock = clock
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="worker")
        self.worker: Any = None

    def start(self) -> BackgroundWorker:
        from worker import Worker

        self._thread.start()

        async def make() -> Any:
            w = Worker(
                workflows=self._workflows,
                settings=self._settings,
                clock=self._clock,
                **self._options,
            )
            await w.start()
            return w

        self.worker = asyncio.run_coroutine_threadsafe(make(), self._loop).result(timeout=30)
        return self

    def stop(self, grace: float | None = None) -> None:
        if self.worker is not None:
            asyncio.run_coroutine_threadsafe(self.worker.stop(grace), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> BackgroundWorker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
