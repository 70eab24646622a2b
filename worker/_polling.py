"""The worker's receivers (a part of `Worker`, worker/_worker.py): one long
poll per task queue, asking SQS for at most as many messages as there are free
slots, each message handled in a task of its own. A message for a name this
worker does not serve (known from its hint or an earlier refusal) is handed
back by the receiver itself before it polls again (worker/_handoff.py): no
poll of this worker is open when the message becomes visible again.
Internal to the worker."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from orchestrator.clock import Clock
from orchestrator.settings import Settings

from ._metrics import WorkerMetrics
from ._store import AsyncStore

log = logging.getLogger("worker")


class _Polling:
    """The receiving half of Worker. The attributes below are Worker's."""

    settings: Settings
    clock: Clock
    metrics: WorkerMetrics
    poll_queues: tuple[str, ...]
    _store: AsyncStore | None
    _max: int
    _tasks: set[asyncio.Task[None]]
    _reserved: int
    _receiving: int
    _receive_errors: int
    _slot_freed: asyncio.Event
    _stopping: bool
    _yield_until: float

    if TYPE_CHECKING:

        async def _handle(self, message: dict[str, Any], task_queue: str = ...) -> None: ...

        def _foreign(self, message: dict[str, Any], queue_key: str) -> tuple[str, str] | None: ...

        async def _hand_off(
            self, message: dict[str, Any], workflow_id: str, name: str, task_queue: str
        ) -> None: ...

    # --- receiving --------------------------------------------------------------------------
    async def _poll_all(self) -> None:
        """One long-poll receiver per task queue (and per pinned build queue); they
        share the worker's slots."""
        await asyncio.gather(*(self._poll_loop(q) for q in self.poll_queues))

    async def _poll_loop(self, task_queue: str = "default") -> None:
        assert self._store is not None
        visibility = self.settings.lease_seconds + 5
        share = -(-self._max // len(self.poll_queues))  # a fair share of the slots per queue
        while not self._stopping:
            free = min(share, self._max - len(self._tasks) - self._reserved)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            pause = self._yield_until - asyncio.get_running_loop().time()
            if pause > 0:
                await asyncio.sleep(pause)  # a message handed back: let its worker take it
                continue
            self._receiving += 1
            self._reserved += free
            try:
                messages = await self._store.receive(
                    free, self.settings.poll_seconds, visibility, task_queue
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self._stopping:
                    return
                self._receive_failed(e)
                await asyncio.sleep(1)
                continue
            finally:
                self._receiving -= 1
                self._reserved -= free
                self._slot_freed.set()
            if self._receive_errors:
                log.info("receiving again after %d failed attempt(s)", self._receive_errors)
                self._receive_errors = 0
            if self._stopping:
                for m in messages:  # stopping: another worker takes them now
                    await self._store.set_visibility(m["ReceiptHandle"], 0)
                return
            now = self.clock.now_ms()
            foreign = []
            for m in messages:
                theirs = self._foreign(m, task_queue)
                if theirs is not None:
                    foreign.append(self._hand_back(m, *theirs, task_queue))
                    continue
                sent = m.get("Attributes", {}).get("SentTimestamp")
                if sent:
                    self.metrics.observe(
                        "orchestrator_queue_wait_seconds", max(0, now - int(sent)) / 1000
                    )
                task = asyncio.create_task(self._handle(m, task_queue))
                self._tasks.add(task)
                task.add_done_callback(self._done)
            if foreign:
                await asyncio.gather(*foreign)  # before the next receive (see the docstring)

    async def _hand_back(
        self, message: dict[str, Any], workflow_id: str, name: str, task_queue: str
    ) -> None:
        """Hand a message of another fleet back without a claim. A failure leaves
        it in flight: it comes back after the visibility timeout."""
        assert self._store is not None
        try:
            await self._hand_off(message, workflow_id, name, task_queue)
        except Exception:
            log.warning("could not hand back the message of run %s", workflow_id, exc_info=True)
        finally:
            self._store.forget(message["ReceiptHandle"])

    def _receive_failed(self, e: Exception) -> None:
        """One traceback for the first failure, then a line every minute: a dead
        endpoint must not print a traceback every second forever."""
        self._receive_errors += 1
        if self._receive_errors == 1:
            log.exception("receive failed; retrying every second")
        elif self._receive_errors % 60 == 0:
            log.warning(
                "receive still failing after %d attempts: %s: %s",
                self._receive_errors,
                type(e).__name__,
                e,
            )

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()
        self.metrics.set_gauge("orchestrator_runs_in_flight", len(self._tasks))
