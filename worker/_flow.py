"""The worker's side of flow control (`orchestrator/store/flow.py`): take a slot
before a claim on a limited task queue, give it back when the lease ends or
when the claim is refused. Each acquire adds a token of its own to the run's
entry and gives back only that token, so the handlers of one run (its owner,
duplicates, the next claim after a park) never remove each other's slot.

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
from orchestrator.store.conditions import conditional_failed, old_item

log = logging.getLogger("worker")

CONFIG_TTL_S = 5.0
PURGE_EVERY_S = 1.0
DEFAULT_PERIOD_MS = 1000


@dataclass(frozen=True)
class Slot:
    task_queue: str
    run_id: str
    token: str  # this acquire's key in the run's entry; the release removes it


class FlowControl:
    def __init__(self, ddb: Any, table: str, clock: Clock, lease_ms: int) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock
        self._lease_ms = lease_ms
        self._config: dict[str, tuple[f.FlowState, float]] = {}
        self._last_purge: dict[str, float] = {}
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
        None) over a limit. A run that holds a slot already (its live owner, a
        dead owner, a parked owner not yet released, another copy of its
        message) gets this acquire's token added to its entry."""
        state = await self._state(task_queue)
        if not state.limited:
            return True, None
        token = f.new_token()
        new_window = False
        join = False
        for _ in range(6):
            now = self._clock.now_ms()
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
                        join=join,
                    ),
                    # The item as it was: whether this run was the oldest waiting.
                    ReturnValues="ALL_OLD",
                )
                prior = from_item(resp.get("Attributes", {}))
                if (prior.get("oldest_wait") or {}).get("run") == run_id:
                    await self._write(f.clear_waiting(self._table, task_queue, run_id), None)
                return True, Slot(task_queue, run_id, token)
            except ClientError as e:
                if not conditional_failed(e):
                    raise
                item = old_item(e)
            except asyncio.CancelledError:
                # A stop with this write in flight: it may have been applied.
                await self.release(Slot(task_queue, run_id, token))
                raise
            old = f.flow_from_item(task_queue, item)
            self._config[task_queue] = (old, time.monotonic())
            if old.holders is None or not old.limited:
                return True, None  # the limits were removed meanwhile
            state = old
            period = old.rate_period_ms or DEFAULT_PERIOD_MS
            entry = old.holders.get(run_id)
            if isinstance(entry, dict) and token in entry:
                # This acquire's own write, applied once already (the SDK sent it
                # again after a lost answer): the slot is taken.
                return True, Slot(task_queue, run_id, token)
            if isinstance(entry, str | int):
                break  # a holder an older version wrote: its writer or the purge removes it
            # Each failed try was refused by a change made since the last one: follow it.
            if old.rate_limit is not None:
                if old.window_start <= now - period:
                    new_window = True  # the window is over: start the next one
                elif old.window_count >= old.rate_limit:
                    break  # over the rate limit in this window
                else:
                    new_window = False  # another worker started the window meanwhile
            limit = old.max_concurrency
            full = entry is None and limit is not None and old.in_flight >= limit
            if full and not await self._purge(old, now):
                break  # over the concurrency limit
            join = entry is not None  # the run's entry appeared, or went, meanwhile
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
        # An entry with a token younger than a lease may belong to a lease that has
        # not expired yet, or to a handler between its acquire and its claim.
        candidates = {
            r: e for r, e in (state.holders or {}).items() if f.taken_at(e) <= now - self._lease_ms
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
        stale = {r: e for r, e in candidates.items() if r not in live and r not in unprocessed}
        if not stale:
            return False
        try:
            await self._ddb.update_item(**f.purge(self._table, state.task_queue, stale))
        except ClientError as e:
            if conditional_failed(e):
                return True  # someone changed an entry meanwhile: try the acquire again
            raise
        log.info("flow control on %s: purged %d stale slot(s)", state.task_queue, len(stale))
        return True

    async def release(self, slot: Slot) -> None:
        """Give the slot's token back: the claim was refused, or the lease ended by
        this worker's own write. The run's entry goes with its last token; while
        another handler of the run holds a token, the slot stays for it. Best
        effort: a token left behind (an error) is purged once no lease is live."""
        last = True
        for _ in range(4):
            req = f.release(self._table, slot.task_queue, slot.run_id, slot.token, last=last)
            try:
                await self._ddb.update_item(**req)
                return
            except ClientError as e:
                if not conditional_failed(e):
                    log.warning("flow control: release failed (%s)", slot, exc_info=True)
                    return
                item = old_item(e)
            except Exception:
                log.warning("flow control: release failed (%s)", slot, exc_info=True)
                return
            entry = f.flow_from_item(slot.task_queue, item).holders or {}
            tokens = entry.get(slot.run_id)
            if not isinstance(tokens, dict) or slot.token not in tokens:
                return  # already gone: purged, or this release applied once already
            last = len(tokens) == 1  # another handler took or gave back a token meanwhile
        log.warning("flow control: %s still held after 4 tries; the purge removes it", slot)

    async def _write(self, req: dict[str, Any], slot: Slot | None) -> bool | None:
        """True: written; False: its condition failed; None: an error, logged."""
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
