"""Batched SQS deletes: a worker's message deletes go out as DeleteMessageBatch
calls of up to 10 receipts instead of one DeleteMessage each.

`add` queues a receipt handle and returns at once. A background task sends a
batch when 10 receipts are pending, or when the oldest pending one has waited
`max_wait` seconds; `close` sends everything still pending.

Why a late delete is safe: a receipt is queued only after the run's state
change is written (the finish, the park) or after the claim decided the
message is a duplicate, so the message is no longer needed. The worker keeps
each message it holds invisible for at least the lease (`lease_seconds + 5`
at receive, renewed by the heartbeat), seconds to minutes, so a delete sent
within `max_wait` (0.5 s by default) plus a few retries lands while the
receipt is still current.

Why a lost delete is harmless: the message becomes visible again, a worker
receives it, and the claim finds the run terminal, parked or owned and drops
it as a duplicate (effects are idempotent; see `Worker._refused`). So entries
that keep failing are dropped after `MAX_TRIES` sends, stale-receipt
failures are dropped at once, and a crash that loses the pending receipts
costs one redelivery each, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("worker.deletes")

MAX_BATCH = 10  # DeleteMessageBatch takes at most 10 entries
MAX_TRIES = 3  # sends per receipt before it is dropped (the message comes back: harmless)
MAX_IN_FLIGHT = 4  # concurrent batch calls: one slow call does not hold up every delete
DEFAULT_MAX_WAIT = 0.5  # seconds; far below the visibility the worker keeps (>= the lease)
# Sender faults that mean the receipt is stale (the message was redelivered, or
# already deleted): retrying cannot help and the redelivered copy is dropped as a
# duplicate by whoever receives it.
STALE_RECEIPT = frozenset({"ReceiptHandleIsInvalid", "InvalidParameterValue"})


@dataclass
class _Entry:
    receipt: str
    since: float  # loop time it was queued (or re-queued after a failed send)
    tries: int = 0


class DeleteBatcher:
    """Deletes messages from one queue in batches, in the background."""

    def __init__(self, sqs: Any, queue_url: str, *, max_wait: float = DEFAULT_MAX_WAIT) -> None:
        if max_wait < 0:
            raise ValueError("max_wait must be at least 0 seconds")
        self._sqs = sqs
        self._queue_url = queue_url
        self.max_wait = max_wait
        self._pending: deque[_Entry] = deque()
        self._queued: set[str] = set()  # receipts in _pending (a copy delivered twice in
        # one response carries the same receipt: one delete is enough)
        self._changed = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._sending: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False

    @property
    def pending(self) -> int:
        """Receipts queued or in a call not answered yet."""
        return len(self._pending) + self._in_flight

    def add(self, receipt: str) -> None:
        """Queue a delete; it is sent within `max_wait` seconds (or at `close`)."""
        if self._closed:
            log.warning("delete after close dropped; the message comes back and is dropped then")
            return
        if receipt in self._queued:
            return
        loop = asyncio.get_running_loop()
        self._pending.append(_Entry(receipt, loop.time()))
        self._queued.add(receipt)
        if self._task is None:
            self._task = loop.create_task(self._run(), name="sqs-deletes")
        self._changed.set()

    async def close(self, timeout: float = 10.0) -> None:
        """Send everything pending (a failed entry is retried at once, up to
        MAX_TRIES) and wait for the calls in flight, for at most `timeout`
        seconds; then stop. Call it before the SQS client closes."""
        self._closing = True
        self._changed.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                log.warning("%d deletes not sent at close; those messages come back", self.pending)
                for t in [task, *self._sending]:
                    t.cancel()
                await asyncio.gather(task, *self._sending, return_exceptions=True)
        self._closed = True

    # --- the background task ----------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    if not self._sending:
                        return
                    await asyncio.wait(set(self._sending))  # failures may be re-queued
                    continue
                self._changed.clear()
                await self._changed.wait()
                continue
            wait = self._pending[0].since + self.max_wait - loop.time()
            if not self._closing and len(self._pending) < MAX_BATCH and wait > 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
                continue
            await self._slots.acquire()
            batch = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
            for e in batch:
                self._queued.discard(e.receipt)
            task = loop.create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Entry]) -> None:
        self._in_flight += len(batch)
        try:
            retry = await self._delete(batch)
        finally:
            self._in_flight -= len(batch)
            self._slots.release()
        now = asyncio.get_running_loop().time()
        for e in retry:
            e.tries += 1
            if e.tries >= MAX_TRIES:
                log.warning("delete of a message failed %d times; dropped (it comes back)", e.tries)
                continue
            # Re-queued as new: it goes out with the next batch, at most max_wait later.
            e.since = now
            if e.receipt not in self._queued:
                self._pending.append(e)
                self._queued.add(e.receipt)
        if retry:
            self._changed.set()

    async def _delete(self, batch: list[_Entry]) -> list[_Entry]:
        """One DeleteMessageBatch call; returns the entries worth another try."""
        by_id = {str(i): e for i, e in enumerate(batch)}  # Ids unique within the call
        try:
            resp = await self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": i, "ReceiptHandle": e.receipt} for i, e in by_id.items()],
            )
        except Exception as exc:  # throttled past the SDK's retries, connection lost, ...
            log.info("DeleteMessageBatch of %d failed (%s); retrying", len(batch), exc)
            return batch
        retry: list[_Entry] = []
        for failed in resp.get("Failed") or []:
            entry = by_id.get(str(failed.get("Id")))
            if entry is None:
                continue
            code = failed.get("Code")
            if code in STALE_RECEIPT:
                log.debug("delete refused (%s): a stale receipt; the message comes back", code)
            else:
                retry.append(entry)
        return retry
