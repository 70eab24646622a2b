"""Batched checkpoints: several step results written in one item.

`@workflow(..., checkpoint="batched")` batches every successful step of the
run; `ctx.map(..., checkpoint="batched")` batches those under the map's id.
A result is kept in the owner's buffer (and in its history, so the run goes on
with it at once) and written with others in one item (`record_requests.put_batch`)

- before its entry would take the buffer past `BATCH_MAX_BYTES`;
- before any record that is not batched (a failure, a retry state, a sleep, a
  map's decision, a cancel marker), so that what is durable is always a prefix
  of what the run did in each branch: no recorded operation depends on a result
  that was not written;
- before the run parks or continues as new, so a parked run has everything
  recorded; when it ends, the terminal write itself carries the buffer
  (`take_last`, the run item's `last_batch`): that write is fenced already, so
  a run that never parks pays no write of its own for its batch;
- at most `flush_ms` after the first buffered result (a timer), so a crash
  loses at most that much work.

A flush is fenced on the owner's epoch and the status running (a transaction
with a condition check on the run item). A refused flush means the lease is
gone: the run unwinds as after a refused heartbeat and writes nothing more.

What a crash costs: the operations whose results were in the buffer run again
on the next claim (steps are at-least-once already); every result that was
flushed replays. Replay finds a batched result at its operation id like any
other (`codec.records_from_items` expands a batch into per-operation records),
so the replay is the one of a run recorded step by step.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging

from orchestrator.model import (
    BATCH_MAX_BYTES,
    LAST_BATCH_ITEM_BUDGET,
    StepKind,
    StepRecord,
    op_parent,
)
from orchestrator.store.codec import batch_entry_bytes

from ._state import LeaseLost, RunState

log = logging.getLogger("worker")


class Checkpoints:
    """The owner's buffer of step results not yet written (one per claim)."""

    def __init__(
        self,
        s: RunState,
        *,
        whole_run: bool,
        flush_ms: int,
        max_bytes: int = BATCH_MAX_BYTES,
        carry_last: bool = True,
        input_bytes: int = 0,
    ) -> None:
        self._s = s
        self.whole_run = whole_run
        # Whether the terminal write may carry the last batch: not when the run
        # item holds one already (a redriven run's earlier end), which it would
        # overwrite.
        self.carry_last = carry_last
        self.input_bytes = input_bytes  # the run item's input (`take_last`)
        self.scopes: set[str] = set()  # ids of maps declared checkpoint="batched"
        self.flush_ms = flush_ms
        self.max_bytes = max_bytes
        self.pending: list[StepRecord] = []
        self.size = 0
        self.flushes = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None

    def batches(self, rec: StepRecord) -> bool:
        """Whether `rec` goes into the buffer: a step's success with one attempt,
        small enough for a batch, in a batched run or under a batched map."""
        if rec.kind != StepKind.STEP or not rec.resolved or rec.error is not None:
            return False
        if rec.attempts or batch_entry_bytes(rec) > self.max_bytes:
            return False
        if self.whole_run:
            return True
        parent = op_parent(rec.op_id)
        while parent is not None:
            if parent in self.scopes:
                return True
            parent = op_parent(parent)
        return False

    async def add(self, rec: StepRecord) -> None:
        from . import _core

        n = batch_entry_bytes(rec)
        if self.pending and self.size + n > self.max_bytes:
            await self.flush()
        _core.check_lease(self._s)
        self.pending.append(rec)
        self.size += n
        self._s.history[rec.op_id] = rec
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.flush_ms / 1000, self._on_timer)

    async def flush(self) -> None:
        """Write the buffer (from workflow code: a refusal unwinds the run)."""
        from . import _core

        async with self._lock:
            if not self.pending:
                return
            s = self._s
            if s.lost:  # a flush before this one failed: a lost claim writes nothing more
                _core.unwind(s, LeaseLost())
            records, self.pending, self.size = self.pending, [], 0
            self._cancel_timer()
            ok = await _core.io(
                s,
                s.store.put_batch(
                    s.workflow_id, epoch=s.epoch, now=s.clock.now_ms(), records=records
                ),
            )
            if not ok:
                log.warning("run %s: batch refused (lease lost); abandoned", s.workflow_id)
                s.lose()
                _core.unwind(s, LeaseLost())
            self.flushes += 1

    async def take_last(self, value_bytes: int) -> tuple[bool, list[StepRecord]]:
        """Before the terminal write: (written, records it is to carry). The
        buffer goes with that write when it fits the run item (with its input and
        `value_bytes`, the output and error the write sets); otherwise it is
        flushed here. `written` is False (and the run marked lost) when a flush
        could not be written."""
        async with self._lock:  # a timed flush in flight lands first
            self._cancel_timer()
            fits = self.input_bytes + value_bytes + self.size <= LAST_BATCH_ITEM_BUDGET
            if self.carry_last and fits:
                records, self.pending, self.size = self.pending, [], 0
                return True, records
        return await self.close(), []

    async def close(self) -> bool:
        """Flush before a park, a continue-as-new or the end: False (and the run
        marked lost) when the flush could not be written."""
        try:
            await self.flush()
            # A timed flush that failed before this one took the lock lost the
            # claim, and its records with it: nothing may be written after it.
            return not self._s.lost
        except (Exception, LeaseLost) as e:  # StoreUnavailable is a LeaseLost
            if not isinstance(e, LeaseLost):
                log.warning("run %s: flush failed (%s)", self._s.workflow_id, e)
            self._s.lose()
            return False

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.pending and not self._s.closing and self._s.unwinding is None:
            # An empty context: the task is not one of the run's (the parker does
            # not wait for it; the flush counts as busy while it is in flight).
            loop = asyncio.get_running_loop()
            self._flusher = loop.create_task(self._timed_flush(), context=contextvars.Context())

    async def _timed_flush(self) -> None:
        if not await self.close():
            s = self._s
            if s.unwinding is None:
                s.unwinding = LeaseLost()
            if s.parker is not None:
                s.parker.fail_all(s.unwinding)
