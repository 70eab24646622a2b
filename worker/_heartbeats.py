"""Heartbeats off the runs' event loop.

A workflow's own code runs on the worker's event loop between its durable
calls. Code that holds the loop for seconds (a CPU-bound loop, a blocking
call, a large inline map) would starve a heartbeat that ran there: every run
of the worker would lose its lease, be taken over and run again, and the
worker would show as not live. So the leases and the worker's registry entry
are kept by a thread of their own, with its own event loop and its own
DynamoDB and SQS clients (`Heartbeats`). What a heartbeat brings back (a
cancel request, a moved signal sequence, a refused lease, a passed deadline)
is handed to the runs' loop with `call_soon_threadsafe`; only the owner's own
lease view (`RunState.lease_until`, one int) is written from the thread, so a
run that was held up finds its lease still valid when it goes on.

A loop that is held up for good (an endless loop in a workflow) must not keep
every lease of its worker forever. The thread pings the loop every second; once
the loop has not answered for `stall_seconds` (ORCHESTRATOR_LOOP_STALL_SECONDS,
default 120), it stops renewing the worker's leases and its registry entry and
logs the task that holds the loop. The runs then go to other workers after
their leases, as if the worker had died; if the loop comes back, renewals go
on, and a lease lost meanwhile is found lost at its next heartbeat.

A worker whose store was given to it (the in-memory fake of the unit tests,
which runs on virtual time) keeps its heartbeats on its own loop
(`inline=True`): the same code, without the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from orchestrator.clock import Clock
from orchestrator.model import Run

from ._parking import CANCEL
from ._state import RunState

log = logging.getLogger("worker")

T = TypeVar("T")
PING_INTERVAL_S = 1.0


@dataclass
class Lease:
    """One claim's heartbeat: made by `Heartbeats.start`, ended by `stop`."""

    state: RunState
    receipt: str
    queue_url: str | None  # where the message came from (None: the store knows)
    runner: asyncio.Task[None]
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    stopped: bool = False


class Heartbeats:
    def __init__(
        self,
        *,
        table: str,
        lease_seconds: int,
        clock: Clock,
        stall_seconds: float,
        worker_id: str,
    ) -> None:
        self._table = table
        self._interval = lease_seconds / 3
        self._lease_ms = lease_seconds * 1000
        self._visibility = lease_seconds + 5
        self._clock = clock
        self._stall_s = stall_seconds
        self._worker_id = worker_id
        self._runs_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the heartbeats' own
        self._thread: threading.Thread | None = None
        self._exit: contextlib.AsyncExitStack | None = None
        self._ddb: Any = None
        self._sqs: Any = None
        self._store: Any = None  # inline: the worker's store
        self._pong = time.monotonic()
        self._pinger: asyncio.Task[None] | None = None
        self.stalled = False  # the runs' loop has not answered for stall_seconds

    @property
    def inline(self) -> bool:
        return self._thread is None

    # --- lifecycle --------------------------------------------------------------------
    def open_inline(self, store: Any) -> None:
        """On the runs' own loop, through `store` (its heartbeat and set_visibility)."""
        self._runs_loop = asyncio.get_running_loop()
        self._store = store

    async def open_thread(self, session: Any, client_kwargs: dict[str, Any]) -> None:
        """A thread with its own loop and clients made from `session`."""
        self._runs_loop = asyncio.get_running_loop()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"heartbeats-{self._worker_id}", daemon=True
        )
        self._thread.start()
        try:
            await self.call(self._open_clients(session, client_kwargs))
        except BaseException:
            await self._stop_thread()
            raise

    async def _open_clients(self, session: Any, kw: dict[str, Any]) -> None:
        self._exit = contextlib.AsyncExitStack()
        self._ddb = await self._exit.enter_async_context(session.client("dynamodb", **kw))
        self._sqs = await self._exit.enter_async_context(session.client("sqs", **kw))
        self._pong = time.monotonic()
        self._pinger = asyncio.create_task(self._watch(), name="loop-watch")

    async def close(self) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(Exception):
            await self.call(self._close_clients())
        await self._stop_thread()

    async def _close_clients(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._exit is not None:
            await self._exit.aclose()

    async def _stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)
        if not thread.is_alive():
            loop.close()
        self._thread = None
        self._loop = None

    @property
    def ddb(self) -> Any:
        """The DynamoDB client for coroutines run with `call` (None inline)."""
        return self._ddb

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the heartbeats' loop (inline: here) and wait for it."""
        if self._loop is None:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    # --- the runs' leases -------------------------------------------------------------
    def start(
        self,
        state: RunState,
        receipt: str,
        runner: asyncio.Task[None],
        queue_url: str | None = None,
    ) -> Lease:
        lease = Lease(state, receipt, queue_url, runner)
        if self._loop is None:
            lease.task = asyncio.create_task(self._beat(lease), name=f"beat-{state.workflow_id}")
        else:
            self._loop.call_soon_threadsafe(self._start_there, lease)
        return lease

    def _start_there(self, lease: Lease) -> None:
        if not lease.stopped:
            lease.task = asyncio.create_task(
                self._beat(lease), name=f"beat-{lease.state.workflow_id}"
            )

    async def stop(self, lease: Lease) -> None:
        """Returns once no heartbeat of `lease` is in flight or will be sent: a
        heartbeat landing after a release would extend the lease again."""
        await self.call(self._stop_here(lease))

    async def _stop_here(self, lease: Lease) -> None:
        lease.stopped = True  # one not started yet never starts
        task = lease.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _beat(self, lease: Lease) -> None:
        state = lease.state
        while True:
            await asyncio.sleep(self._interval)
            if state.closing or self.stalled:
                continue
            until = self._clock.now_ms() + self._lease_ms
            try:
                current = await self._renew(state, until)
            except Exception:
                log.exception("heartbeat of %s failed; retrying", state.workflow_id)
                continue
            if current is None:
                # Refused: lost, unless a park or terminal write of the owner's own
                # moved the run (decided on the runs' loop, which moves the claim).
                self._post(_refused, state, lease.runner)
                continue
            state.lease_until = max(state.lease_until, until)
            self._post(_renewed, state, lease.runner, current)
            await self._set_visibility(lease)

    async def _renew(self, state: RunState, until: int) -> Run | None:
        if self._store is not None:
            result: Run | None = await self._store.heartbeat(
                state.workflow_id, epoch=state.epoch, lease_until=until
            )
            return result
        from ._store import heartbeat_request

        return await heartbeat_request(
            self._ddb, self._table, state.workflow_id, epoch=state.epoch, lease_until=until
        )

    async def _set_visibility(self, lease: Lease) -> None:
        if self._store is not None:
            await self._store.set_visibility(lease.receipt, self._visibility)
            return
        with contextlib.suppress(ClientError):
            await self._sqs.change_message_visibility(
                QueueUrl=lease.queue_url,
                ReceiptHandle=lease.receipt,
                VisibilityTimeout=max(0, min(self._visibility, 43_200)),
            )

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` on the runs' loop."""
        if self._loop is None:
            fn(*args)
            return
        assert self._runs_loop is not None
        with contextlib.suppress(RuntimeError):  # the runs' loop closed: nothing to tell
            self._runs_loop.call_soon_threadsafe(fn, *args)

    # --- the runs' loop, watched ------------------------------------------------------
    async def _watch(self) -> None:
        assert self._runs_loop is not None
        runs_loop = self._runs_loop
        while True:
            await asyncio.sleep(PING_INTERVAL_S)
            with contextlib.suppress(RuntimeError):
                runs_loop.call_soon_threadsafe(self._answer)
            held = time.monotonic() - self._pong
            if held > self._stall_s and not self.stalled:
                self.stalled = True
                task = asyncio.current_task(runs_loop)
                log.error(
                    "worker %s: its event loop has not answered for %.0f s (held by task %s); "
                    "its leases and registry entry are no longer renewed, so its runs go to "
                    "other workers (ORCHESTRATOR_LOOP_STALL_SECONDS=%g)",
                    self._worker_id,
                    held,
                    task.get_name() if task is not None else "?",
                    self._stall_s,
                )
            elif held <= self._stall_s and self.stalled:
                self.stalled = False
                log.warning("worker %s: its event loop answers again", self._worker_id)

    def _answer(self) -> None:
        self._pong = time.monotonic()


def _refused(state: RunState, runner: asyncio.Task[None]) -> None:
    if state.closing or state.lost:
        return
    state.lose()
    runner.cancel()


def _renewed(state: RunState, runner: asyncio.Task[None], current: Run) -> None:
    if state.lost:
        return
    if current.cancel_requested and state.cancel_requested is None:
        # Delivered at each task's next durable call, and where branches wait.
        state.cancel_requested = current.cancel_requested
        if state.parker is not None:
            state.parker.resolve(CANCEL)
    if state.parker is not None:
        state.parker.signal_seq_moved(current.signal_seq)
    if state.past_deadline() and not state.closing and not state.timed_out:
        state.timed_out = True  # interrupt whatever the run is awaiting
        runner.cancel()
