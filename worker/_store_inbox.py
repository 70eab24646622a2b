"""The worker's requests on a run's inbox (a part of `AsyncStore`,
worker/_store.py): reading the unconsumed signals of a name, consuming one, and
expiring what an ended run left unconsumed (an effect after its terminal write)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from orchestrator import resources as r
from orchestrator.model import Signal, StepRecord
from orchestrator.payloads import AsyncValues
from orchestrator.store import record_requests as rq
from orchestrator.store.codec import signal_from_item
from orchestrator.store.conditions import conditional_failed
from orchestrator.store.sync import SIGNAL_TTL_SECONDS

log = logging.getLogger("worker")

EXPIRE_CONCURRENCY = 10  # expiring an ended run's leftovers: requests in flight at once


class _InboxRequests:
    """The inbox half of AsyncStore. The attributes below are AsyncStore's."""

    _ddb: Any
    _table: str
    values: AsyncValues

    async def inbox(self, workflow_id: str, name: str) -> list[Signal]:
        req = rq.query_inbox(self._table, workflow_id, name)
        out: list[Signal] = []
        while True:
            resp = await self._ddb.query(**req)
            for item in resp.get("Items", []):
                sig = signal_from_item(item)
                # Signals and callback completions are size-limited at the API and
                # stored inline; read through the codec anyway, so that a pointer
                # never reaches workflow code whoever stored the payload.
                payload = await self.values.get(sig.payload)
                out.append(sig if payload is sig.payload else replace(sig, payload=payload or ""))
            if "LastEvaluatedKey" not in resp:
                return out
            req = {**req, "ExclusiveStartKey": resp["LastEvaluatedKey"]}

    async def consume(
        self, workflow_id: str, *, wait: StepRecord, signal: Signal, now: int
    ) -> bool:
        try:
            await self._ddb.transact_write_items(
                **rq.consume_signal(
                    self._table,
                    workflow_id,
                    wait=wait,
                    signal=signal,
                    now=now,
                    ttl_s=SIGNAL_TTL_SECONDS,
                )
            )
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                return False
            raise

    async def expire_inbox(self, workflow_id: str, *, now: int) -> int:
        """Give the signals an ended run left unconsumed a TTL (`SIGNAL_TTL_SECONDS`
        after `now`, ms), as `Store.expire_inbox` does: at most
        `EXPIRE_CONCURRENCY` writes at once. Safe to repeat. Returns how many it
        expired."""
        expires_at = now // 1000 + SIGNAL_TTL_SECONDS
        req = rq.query_leftover_signals(self._table, workflow_id)
        keys: list[str] = []
        while True:
            resp = await self._ddb.query(**req)
            keys += [item[r.SK]["S"] for item in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                break
            req = {**req, "ExclusiveStartKey": resp["LastEvaluatedKey"]}
        gate = asyncio.Semaphore(EXPIRE_CONCURRENCY)

        async def expire(key: str) -> bool:
            async with gate:
                try:
                    await self._ddb.update_item(
                        **rq.expire_signal(self._table, workflow_id, key, expires_at=expires_at)
                    )
                    return True
                except ClientError as e:
                    if conditional_failed(e):
                        return False  # consumed or gone meanwhile
                    raise

        return sum(await asyncio.gather(*(expire(k) for k in keys)))
