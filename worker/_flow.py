"""The worker's side of flow control (`orchestrator/store/flow.py`): take a slot
before a claim on a limited task queue, give it back when the lease ends, undo
the acquire when the claim is refused.

A queue's limits are read at most every CONFIG_TTL_S per worker (one GetItem),
so an unlimited queue costs nothing per claim and a limit set at run time
holds everywhere within that delay; the acquire's condition reads the limits
stored in the item itself, so a lowered limit holds at once for every claim
that reaches the write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from orchestrator.clock import Clock
from orchestrator.store import flow as f
from orchestrator.store.codec import from_item, run_key
from orchestrator.store.sync import conditional_failed, old_item

log = logging.getLogger("worker")

CONFIG_TTL_S = 5.0
PURGE_EVERY_S = 1.0
DEFAULT_PERIOD_MS = 1000
# A release refused because a duplicate's acquire overwrote the token is tried
# again after these delays: the duplicate's refused claim puts the token back
# within a round trip or two.
RELEASE_RETRIES_S = (0.2, 0.5, 1.0, 2.0)


_UNKNOWN = object()


@dataclass(frozen=True)
class Slot:
    task_queue: str
    run_id: str
    token: str  # the holder this acquire wrote; every removal is conditioned on it
    # The holder this acquire replaced: None if it created the holder; _UNKNOWN if
    # the item already showed this very token (the SDK retried a write whose answer
    # was lost), so what was there before is not known.
    previous: str | int | object | None = None

    @property
    def created(self) -> bool:
        return self.previous is None


class FlowControl:
    def __init__(self, ddb: Any, table: str, clock: Clock, lease_ms: int) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock
        self._lease_ms = lease_ms
        self._config: dict[str, tuple[f.FlowState, float]] = {}
        self._last_purge: dict[str, float] = {}
        self._later: set[asyncio.Task[None]] = set()
        self.refused = 0

    async def _state(self, task_queue: str) -> f.FlowState:
        cached = self._config.get(task_queue)
        if cached is not None and time.monotonic() - cached[1] < CONFIG_TTL_S:
            return cached[0]
        resp = await self._ddb.get_item(TableName=self._table, Key=f.flow_key(task_queue))
        state = f.flow_from_item(task_queue, resp.get("Item"))
        self._config[task_queue] = (state, time.monotonic())
        return state

    async def acquire(self, task_queue: str, run_id: str) -> tuple[bool, Slot | None]:
        """(go ahead?, the slot): (True, None) on a queue without limits; (False,
        None) over a limit. A holder of the run that existed already (the run's
        live owner's, a dead owner's, a parked owner's not yet released) is
        overwritten with this acquire's token and remembered in `previous`."""
        state = await self._state(task_queue)
        if not state.limited:
            return True, None
        new_window = False
        for _ in range(4):
            now = self._clock.now_ms()
            token = f.new_token(now)
            period = state.rate_period_ms or DEFAULT_PERIOD_MS
            try:
                resp = await self._ddb.update_item(
                    **f.acquire(
                        self._table,
                        task_queue,
                        run_id=run_id,
                        token=token,
                        now=now,
                        period_ms=period,
                        new_window=new_window,
                    ),
                    # The item as it was: what this write replaced, if anything.
                    ReturnValues="ALL_OLD",
                )
                prior = from_item(resp.get("Attributes", {}))
                before = (prior.get("holders") or {}).get(run_id)
                if before == token:
                    before = _UNKNOWN
                if (prior.get("oldest_wait") or {}).get("run") == run_id:
                    await self._write(f.clear_waiting(self._table, task_queue, run_id), None)
                return True, Slot(task_queue, run_id, token, before)
            except ClientError as e:
                if not conditional_failed(e):
                    raise
                item = old_item(e)
            old = f.flow_from_item(task_queue, item)
            self._config[task_queue] = (old, time.monotonic())
            if old.holders is None or not old.limited:
                return True, None  # the limits were removed meanwhile
            state = old
            period = old.rate_period_ms or DEFAULT_PERIOD_MS
            window_over = old.window_start <= now - period
            full = old.max_concurrency is not None and old.in_flight >= old.max_concurrency
            if old.rate_limit is not None and window_over and not new_window and not full:
                new_window = True
                continue
            if full and await self._purge(old, now):
                continue
            break
        self.refused += 1
        return False, None

    async def waiting(self, task_queue: str, run_id: str, since: int) -> None:
        """`run_id` was refused a slot and has waited since `since`: record it as
        the queue's oldest waiting run if the item this worker was refused by
        shows none or a younger one (so one write per new oldest, not per refusal)."""
        cached = self._config.get(task_queue)
        oldest = cached[0].oldest_wait if cached is not None else None
        if oldest is not None and (oldest[0] == run_id or oldest[1] <= since):
            return
        await self._write(f.note_waiting(self._table, task_queue, run_id, since), None)

    async def _purge(self, state: f.FlowState, now: int) -> bool:
        """Remove the slots of runs that no longer hold a live lease (a killed
        worker's). True if any was removed."""
        last = self._last_purge.get(state.task_queue, 0.0)
        if time.monotonic() - last < PURGE_EVERY_S:
            return False
        self._last_purge[state.task_queue] = time.monotonic()
        # A slot younger than a lease belongs to a lease that has not expired yet.
        candidates = {
            r: t for r, t in (state.holders or {}).items() if f.taken_at(t) <= now - self._lease_ms
        }
        if not candidates:
            return False
        resp = await self._ddb.batch_get_item(
            RequestItems={
                self._table: {
                    "Keys": [run_key(r) for r in candidates],
                    "ConsistentRead": True,
                    "ProjectionExpression": "id, #st, lease_until",
                    "ExpressionAttributeNames": {"#st": "status"},
                }
            }
        )
        live = set()
        for item in resp.get("Responses", {}).get(self._table, []):
            d = from_item(item)
            if d.get("status") == "running" and (d.get("lease_until") or 0) >= now:
                live.add(d["id"])
        unprocessed = {
            from_item(k)["pk"][3:]
            for k in resp.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
        }
        stale = {r: t for r, t in candidates.items() if r not in live and r not in unprocessed}
        if not stale:
            return False
        try:
            await self._ddb.update_item(**f.purge(self._table, state.task_queue, stale))
        except ClientError as e:
            if conditional_failed(e):
                return True  # someone changed a holder meanwhile: try the acquire again
            raise
        log.info("flow control on %s: purged %d stale slot(s)", state.task_queue, len(stale))
        return True

    async def release(self, slot: Slot) -> None:
        """Give the slot back: the lease ended by this worker's own write. Best
        effort: a slot left behind is purged once its lease has expired.

        Refused when another acquire of the run overwrote the token since: a new
        claim after a park (the slot is now that claim's), or a duplicate message
        whose claim was refused and which is about to put this token back. For the
        second, the release is tried again a few times in the background."""
        if await self._remove(slot) is False:
            task = asyncio.create_task(self._release_later(slot))
            self._later.add(task)
            task.add_done_callback(self._later.discard)

    async def drain(self) -> None:
        """Let the releases still being retried finish (a worker that stops): a
        slot given up here would stay taken until its lease expired and a purge
        removed it. Bounded by the retries' own schedule (a few seconds)."""
        if self._later:
            await asyncio.wait(set(self._later), timeout=sum(RELEASE_RETRIES_S) + 1)

    async def _release_later(self, slot: Slot) -> None:
        for delay in RELEASE_RETRIES_S:
            await asyncio.sleep(delay)
            if await self._remove(slot) is not False:
                return

    async def undo(self, slot: Slot, *, live_owner: bool) -> None:
        """The claim was refused. `live_owner`: the refusal showed the run held by
        a live lease, which may rely on the holder this acquire replaced: put that
        one back (conditioned on this acquire's token). Otherwise no claim relies
        on this holder: remove it (a newer acquire's token makes that fail)."""
        if not live_owner or slot.previous is None:
            await self._remove(slot)
        elif isinstance(slot.previous, str | int):
            req = f.restore(self._table, slot.task_queue, slot.run_id, slot.token, slot.previous)
            await self._write(req, slot)
        # else: what was replaced is unknown; the purge removes it once no lease is live

    async def _remove(self, slot: Slot) -> bool | None:
        req = f.release(self._table, slot.task_queue, slot.run_id, slot.token)
        return await self._write(req, slot)

    async def _write(self, req: dict[str, Any], slot: Slot | None) -> bool | None:
        """True: written; False: its condition failed (for a slot: the holder is
        not this acquire's); None: an error, logged."""
        try:
            await self._ddb.update_item(**req)
            return True
        except ClientError as e:
            if conditional_failed(e):
                return False
            log.warning("flow control: write failed (%s)", slot, exc_info=True)
        except Exception:
            log.warning("flow control: write failed (%s)", slot, exc_info=True)
        return None
