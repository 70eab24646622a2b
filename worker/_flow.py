"""The worker's side of flow control (`orchestrator/store/flow.py`): take a slot
before a claim on a limited task queue, give it back when the lease ends.

A queue's limits are read at most every CONFIG_TTL_S per worker (one GetItem),
so an unlimited queue costs nothing per claim and a limit set at run time
holds everywhere within that delay; the acquire's condition reads the limits
stored in the item itself, so a lowered limit holds at once for every claim
that reaches the write.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Slot:
    task_queue: str
    run_id: str
    taken_at: int  # the holder's value, which the release is conditioned on
    created: bool  # this acquire created it (else: it was the run's already)


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
        None) over a limit. A slot that existed already (`created` False) is the
        run's owner's, or a dead owner's that a takeover inherits."""
        state = await self._state(task_queue)
        if not state.limited:
            return True, None
        new_window = False
        for _ in range(4):
            now = self._clock.now_ms()
            period = state.rate_period_ms or DEFAULT_PERIOD_MS
            try:
                resp = await self._ddb.update_item(
                    **f.acquire(
                        self._table,
                        task_queue,
                        run_id=run_id,
                        now=now,
                        period_ms=period,
                        new_window=new_window,
                    ),
                    ReturnValues="UPDATED_NEW",
                )
                holders = from_item(resp.get("Attributes", {})).get("holders") or {}
                taken = int(holders.get(run_id, now))
                return True, Slot(task_queue, run_id, taken, created=taken == now)
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

    async def _purge(self, state: f.FlowState, now: int) -> bool:
        """Remove the slots of runs that no longer hold a live lease (a killed
        worker's). True if any was removed."""
        last = self._last_purge.get(state.task_queue, 0.0)
        if time.monotonic() - last < PURGE_EVERY_S:
            return False
        self._last_purge[state.task_queue] = time.monotonic()
        # A slot younger than a lease belongs to a lease that has not expired yet.
        candidates = {r: t for r, t in (state.holders or {}).items() if t <= now - self._lease_ms}
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
        """Give the slot back (the lease ended, or the claim was refused). Best
        effort: a slot left behind is purged once its lease has expired."""
        try:
            await self._ddb.update_item(
                **f.release(self._table, slot.task_queue, slot.run_id, slot.taken_at)
            )
        except ClientError as e:
            if not conditional_failed(e):
                log.warning("flow control: could not release %s's slot", slot.run_id, exc_info=True)
        except Exception:
            log.warning("flow control: could not release %s's slot", slot.run_id, exc_info=True)
