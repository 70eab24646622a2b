"""The worker's asyncio store: the requests of `orchestrator.store.requests`,
sent through aiobotocore clients. Each owner write returns False (or None)
when its condition failed, which for an owner means: the lease is gone."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from orchestrator import resources as r
from orchestrator.dispatch import (
    message_body,
)
from orchestrator.model import (
    MAX_INPUT_BYTES,
    ClaimFailure,
    ErrorInfo,
    Run,
    Status,
    StepRecord,
)
from orchestrator.payloads import AsyncValues
from orchestrator.settings import Settings
from orchestrator.store import generations
from orchestrator.store import record_requests as rq
from orchestrator.store import requests as q
from orchestrator.store.codec import (
    last_batch_text,
    new_run_item,
    records_from_items,
    records_from_last_batch,
    run_from_item,
    run_key,
    run_pk,
    step_from_item,
    step_sk,
    to_item,
)
from orchestrator.store.conditions import conditional_failed, old_item

from ._deletes import DEFAULT_MAX_WAIT, DeleteBatcher
from ._store_inbox import _InboxRequests
from ._store_queue import _QueueRequests

log = logging.getLogger("worker")

# The owner's own view of its lease, for the DynamoDB requests a run's task makes
# (set by the workflow context around each store call). Checked right before every
# HTTP attempt is sent, SDK retries included: an owner paused or slowed past its
# lease (a GC pause, latency, the SDK's backoff) sends nothing after waking, so a
# step record, which no condition fences, cannot land after a newer claim.
OWNER_LEASE: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "owner_lease", default=None
)


# The ended generation's TTL puts (`expire_generation`) in flight at once: the
# round trips of the BatchWriteItem per 25 they replace, and room left in the
# client's connection pool (20 at least) for heartbeats and claims.
EXPIRE_CONCURRENCY = 16


class LeaseExpiredBeforeSend(Exception):
    """The owner's lease view expired before this request was sent; it was not sent."""


def _check_lease_before_send(**_: Any) -> None:
    valid = OWNER_LEASE.get()
    if valid is not None and not valid():
        raise LeaseExpiredBeforeSend("the lease expired before the request was sent")


@dataclass(frozen=True)
class Refused:
    """A conditional write lost; `old` is the item as it was (None: no item)."""

    old: Run | None


class AsyncStore(_InboxRequests, _QueueRequests):
    def __init__(
        self,
        ddb: Any,
        sqs: Any,
        scheduler: Any,
        settings: Settings,
        *,
        delete_max_wait: float = DEFAULT_MAX_WAIT,
        values: AsyncValues | None = None,
    ) -> None:
        events = getattr(getattr(ddb, "meta", None), "events", None)
        if events is not None:
            events.register(
                "before-send.dynamodb", _check_lease_before_send, unique_id="owner-lease"
            )
        self._ddb = ddb
        self._sqs = sqs
        self._scheduler = scheduler
        self.settings = settings
        self._table = settings.table
        self._delete_max_wait = delete_max_wait
        # The claim-check codec (orchestrator/payloads.py): every value this store
        # writes goes through `values.put` before its record, every value it reads
        # through `values.get`. Without a bucket nothing is offloaded.
        self.values = values or AsyncValues(None, settings.bucket, settings.offload_bytes)
        # One delete batcher per SQS queue (task queue), made on first use.
        self._deletes: dict[str, DeleteBatcher] = {}
        # Where each message in hand came from (its deletes and visibility changes
        # go back there), and each claimed run's task queue (its timers go there).
        self._receipt_queue: dict[str, str] = {}
        self._run_queue: dict[str, str | None] = {}

    @property
    def ddb(self) -> Any:
        return self._ddb

    # --- runs -------------------------------------------------------------------------
    async def claim(
        self,
        workflow_id: str,
        *,
        owner: str,
        now: int,
        lease_ms: int,
        names: list[str],
        build_id: str | None = None,
        queues: dict[str, list[str]] | None = None,
        pinned_names: list[str] | tuple[str, ...] = (),
    ) -> Run | Refused:
        try:
            resp = await self._ddb.update_item(
                **q.claim(
                    self._table,
                    workflow_id,
                    owner=owner,
                    now=now,
                    lease_ms=lease_ms,
                    names=names,
                    build_id=build_id,
                    queues=queues,
                    pinned_names=pinned_names,
                )
            )
            run = run_from_item(resp["Attributes"])
            self._run_queue[run.id] = run.route
            return run
        except ClientError as e:
            if not conditional_failed(e):
                raise
            item = old_item(e)
            return Refused(run_from_item(item) if item else None)

    async def pin(self, run: Run) -> Run | Refused:
        """Pin a just-claimed run to its build (`requests.pin`): its timers and
        wake-ups go to the build's queue from now on."""
        assert run.build_id is not None
        try:
            resp = await self._ddb.update_item(
                **q.pin(self._table, run.id, epoch=run.epoch, build_id=run.build_id)
            )
        except ClientError as e:
            if not conditional_failed(e):
                raise
            item = old_item(e)
            return Refused(run_from_item(item) if item else None)
        pinned = run_from_item(resp["Attributes"])
        self._run_queue[run.id] = pinned.route
        return pinned

    async def _owner_write(self, req: dict[str, Any]) -> Refused | None:
        """None on success; Refused(old) when the condition failed."""
        try:
            await self._ddb.update_item(**req)
            return None
        except ClientError as e:
            if not conditional_failed(e):
                raise
            item = old_item(e)
            return Refused(run_from_item(item) if item else None)

    async def heartbeat(self, workflow_id: str, *, epoch: int, lease_until: int) -> Run | None:
        return await heartbeat_request(
            self._ddb, self._table, workflow_id, epoch=epoch, lease_until=lease_until
        )

    def queue_of(self, receipt: str) -> str:
        """The queue a message in hand came from (its visibility changes go there)."""
        return self._receipt_queue.get(receipt, self.settings.queue_url)

    async def park_sleep(
        self, workflow_id: str, *, epoch: int, now: int, wake_at: int, timer: str | None = None
    ) -> Refused | None:
        due = wake_at + self.settings.sweep_grace_ms
        req = q.park_sleep(
            self._table, workflow_id, epoch=epoch, now=now, wake_at=wake_at, due_at=due, timer=timer
        )
        return await self._owner_write(req)

    async def park_wait(
        self,
        workflow_id: str,
        *,
        epoch: int,
        now: int,
        signal: str,
        seen_seq: int,
        deadline: int | None,
        timer: str | None = None,
    ) -> Refused | None:
        due = None if deadline is None else deadline + self.settings.sweep_grace_ms
        return await self._owner_write(
            q.park_wait(
                self._table,
                workflow_id,
                epoch=epoch,
                now=now,
                signal=signal,
                seen_seq=seen_seq,
                deadline=deadline,
                due_at=due,
                timer=timer,
            )
        )

    async def finish(
        self,
        workflow_id: str,
        *,
        epoch: int,
        now: int,
        status: Status,
        output: str | None = None,
        error: ErrorInfo | None = None,
        notify_due: int | None = None,
        last_batch: Sequence[StepRecord] = (),
        generation: int = 0,
    ) -> bool:
        """The terminal write; `last_batch` (batched checkpoints): results not yet
        written, carried on the run item (`q.finish`) and read back with the
        history of `generation`. Signals the run left unconsumed get a TTL after
        it (`expire_inbox`). False: the lease is gone, nothing written."""
        # The objects first, then the record that points at them.
        output = await self.values.put(output, what="workflow output")
        text = None
        if last_batch:
            stored = [await self._stored(rec) for rec in last_batch]
            text = last_batch_text(stored, epoch=epoch, generation=generation, now=now)
        req = q.finish(
            self._table,
            workflow_id,
            epoch=epoch,
            now=now,
            status=status,
            output=output,
            error=error,
            notify_due=notify_due,
            last_batch=text,
        )
        # The old values of what it changed: the inbox counters it removes among them.
        req["ReturnValues"] = "UPDATED_OLD"
        try:
            resp = await self._ddb.update_item(**req)
        except ClientError as e:
            if not conditional_failed(e):
                raise
            return False
        left = int((resp.get("Attributes") or {}).get("inbox_count", {}).get("N", "0"))
        if left > 0:
            # Effect after the end: what the run never consumed expires by TTL.
            try:
                await self.expire_inbox(workflow_id, now=now)
            except Exception:
                log.exception("could not expire the inbox of ended run %s", workflow_id)
        return True

    # --- other runs (children, parents) -----------------------------------------------------
    async def get_run(self, workflow_id: str) -> Run | None:
        resp = await self._ddb.get_item(
            TableName=self._table, Key=run_key(workflow_id), ConsistentRead=True
        )
        return await self._resolved(run_from_item(resp["Item"])) if "Item" in resp else None

    async def _resolved(self, run: Run) -> Run:
        if run.output is None:
            return run
        return replace(run, output=await self.values.get(run.output))

    async def create_run(self, run: Run) -> tuple[Run, bool]:
        """Store a new run (a child): (stored run, created). An existing one is
        returned as stored, whatever it holds: the caller decides. Its input goes
        through the codec (an offloaded input's object first); the run returned
        keeps the input as given."""
        text = await self.values.put(run.input, what="a child's input", inline_max=MAX_INPUT_BYTES)
        assert text is not None  # (a text in, a text or its pointer out)
        stored = replace(run, input=text)
        try:
            await self._ddb.put_item(**q.put_new_run(self._table, new_run_item(stored)))
            return run, True
        except ClientError as e:
            if not conditional_failed(e):
                raise
            item = old_item(e)
            existing = run_from_item(item) if item else await self.get_run(run.id)
            assert existing is not None
            return existing, False

    async def transact(self, req: dict[str, Any]) -> str | None:
        """Send a TransactWriteItems: None on success, else the cancellation
        response (a dict with CancellationReasons) for the caller to read."""
        try:
            await self._ddb.transact_write_items(**req)
            return None
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            return json.dumps(dict(e.response).get("CancellationReasons") or [], default=str)

    async def update(self, req: dict[str, Any]) -> Run | None:
        """An UpdateItem with ALL_NEW: the run after it, or None if its condition failed."""
        try:
            resp = await self._ddb.update_item(**req)
            return run_from_item(resp["Attributes"]) if "Attributes" in resp else None
        except ClientError as e:
            if conditional_failed(e):
                return None
            raise

    async def get_runs(self, ids: list[str], *, consistent: bool = False) -> dict[str, Run]:
        """The runs that exist among `ids` (BatchGetItem, 100 keys a request)."""
        found: dict[str, Run] = {}
        for start in range(0, len(ids), 100):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [run_key(i) for i in ids[start : start + 100]],
                    "ConsistentRead": consistent,
                }
            }
            while request:
                resp = await self._ddb.batch_get_item(RequestItems=request)
                for item in resp.get("Responses", {}).get(self._table, []):
                    run = await self._resolved(run_from_item(item))
                    found[run.id] = run
                request = resp.get("UnprocessedKeys") or {}
        return found

    async def send_many(self, ids: list[str], reason: str, task_queue: str | None = None) -> None:
        """One SendMessageBatch per ten runs (all of one task queue)."""
        for start in range(0, len(ids), 10):
            entries = [
                {"Id": str(n), "MessageBody": message_body(wid, reason)}
                for n, wid in enumerate(ids[start : start + 10])
            ]
            resp = await self._sqs.send_message_batch(
                QueueUrl=self.settings.queue_url_for(task_queue), Entries=entries
            )
            for failed in resp.get("Failed", []):
                # The sweeper's walk sends a run still pending after the grace.
                raise RuntimeError(f"a send failed: {failed.get('Message', failed)}")

    async def delete_schedule(self, name: str) -> None:
        try:
            await self._scheduler.delete_schedule(Name=name, GroupName=self.settings.schedule_group)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise

    async def release(self, workflow_id: str, *, epoch: int, now: int) -> bool:
        due = now + self.settings.sweep_grace_ms
        req = q.release(self._table, workflow_id, epoch=epoch, due_at=due)
        return await self._owner_write(req) is None

    async def record_claim_failure(
        self, workflow_id: str, *, epoch: int, now: int, failure: ClaimFailure, retry_at: int
    ) -> bool:
        """Record a claim ended by a non-transient error (`requests.record_claim_failure`):
        the lease is kept until `retry_at`. False if the claim was lost."""
        req = q.record_claim_failure(
            self._table,
            workflow_id,
            epoch=epoch,
            now=now,
            failure=failure,
            retry_at=retry_at,
            due_at=retry_at + self.settings.sweep_grace_ms,
        )
        return await self._owner_write(req) is None

    async def continue_run(
        self,
        workflow_id: str,
        *,
        epoch: int,
        now: int,
        lease_until: int,
        input_text: str,
        generation: int,
    ) -> Run | Refused:
        """Start the run's next generation (continue-as-new); the run as written."""
        what = "continue_as_new input"
        stored = await self.values.put(input_text, what=what, inline_max=MAX_INPUT_BYTES)
        assert stored is not None  # (a text in, a text or its pointer out)
        req = generations.continue_run(
            self._table,
            workflow_id,
            epoch=epoch,
            now=now,
            lease_until=lease_until,
            input_text=stored,
            generation=generation,
        )
        try:
            resp = await self._ddb.update_item(**req)
            return run_from_item(resp["Attributes"])
        except ClientError as e:
            if not conditional_failed(e):
                raise
            item = old_item(e)
            return Refused(run_from_item(item) if item else None)

    async def expire_generation(
        self, workflow_id: str, generation: int, now: int, records: list[StepRecord]
    ) -> None:
        """Give the items of an ended generation (continue-as-new) their TTL: they
        are read again and put back as they are, batch items included. The
        offloaded values among `records` (the generation's, values in hand) are
        PUT again first, so their objects' age restarts and they outlive the
        records that point at them. One PutItem per item, `EXPIRE_CONCURRENCY`
        at a time (the worker policy has no BatchWriteItem: docs/security.md)."""
        for rec in records:
            await self._stored(rec)
        req = rq.query_history(self._table, workflow_id, generation)
        items: list[dict[str, Any]] = []
        while True:
            resp = await self._ddb.query(**req)
            items.extend(resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                break
            req = {**req, "ExclusiveStartKey": resp["LastEvaluatedKey"]}
        puts = generations.expire_items(self._table, items, now=now)
        for i in range(0, len(puts), EXPIRE_CONCURRENCY):
            await asyncio.gather(
                *(self._ddb.put_item(**put) for put in puts[i : i + EXPIRE_CONCURRENCY])
            )

    # --- history --------------------------------------------------------------------------
    async def history(
        self,
        workflow_id: str,
        generation: int = 0,
        *,
        last_batch: str | None = None,
        attempt: int = 0,
    ) -> dict[str, StepRecord]:
        """The records of one generation and run attempt (`records_from_items`);
        `last_batch` is the claimed run's (a redriven run's terminal write may
        carry results, `finish`)."""
        req = rq.query_history(self._table, workflow_id, generation)
        out: dict[str, StepRecord] = {}
        for rec in records_from_last_batch(last_batch, generation):
            out[rec.op_id] = await self._loaded(rec)
        while True:
            resp = await self._ddb.query(**req)
            for rec in records_from_items(resp.get("Items", []), attempt=attempt):
                rec = await self._loaded(rec)
                out[rec.op_id] = rec
            if "LastEvaluatedKey" not in resp:
                return out
            req = {**req, "ExclusiveStartKey": resp["LastEvaluatedKey"]}

    async def put_step(self, workflow_id: str, rec: StepRecord) -> StepRecord:
        """Record `rec` if its position is free; return what is recorded there."""
        stored = await self._stored(rec)  # an offloaded value's object first
        try:
            await self._ddb.put_item(**rq.put_step(self._table, workflow_id, stored))
            return rec
        except ClientError as e:
            if not conditional_failed(e):
                raise
            item = old_item(e)
            if not item:
                return await self.get_step(workflow_id, rec.op_id)
            return await self._loaded(step_from_item(item))

    async def _stored(self, rec: StepRecord) -> StepRecord:
        stored = await self.values.put(rec.result, what=f"result of {rec.name!r}")
        return rec if stored is rec.result else replace(rec, result=stored)

    async def _loaded(self, rec: StepRecord) -> StepRecord:
        text = await self.values.get(rec.result)
        return rec if text is rec.result else replace(rec, result=text)

    async def put_batch(
        self, workflow_id: str, *, epoch: int, now: int, records: list[StepRecord]
    ) -> bool:
        """Record several step results in one item, fenced on the epoch: False
        when the lease is gone (nothing written). A value above the offload
        threshold goes through the codec as in `put_step`: its object is written
        before the batch item, which holds the pointer."""
        records = [await self._stored(rec) for rec in records]
        req = rq.put_batch(self._table, workflow_id, epoch=epoch, now=now, records=records)
        return await self.transact(req) is None

    async def get_step(self, workflow_id: str, op_id: str) -> StepRecord:
        resp = await self._ddb.get_item(
            TableName=self._table,
            Key=to_item({r.PK: run_pk(workflow_id), r.SK: step_sk(op_id)}),
            ConsistentRead=True,
        )
        return await self._loaded(step_from_item(resp["Item"]))

    async def resolve_timeout(
        self, workflow_id: str, *, op_id: str, now: int, attempt: int = 0
    ) -> bool:
        try:
            await self._ddb.update_item(
                **rq.resolve_wait_timeout(
                    self._table, workflow_id, op_id=op_id, now=now, attempt=attempt
                )
            )
            return True
        except ClientError as e:
            if conditional_failed(e):
                return False
            raise


async def heartbeat_request(
    ddb: Any, table: str, workflow_id: str, *, epoch: int, lease_until: int
) -> Run | None:
    """Extend the owner's lease; the run as it now is, or None when the lease is
    gone (worker/_heartbeats.py sends it from its own thread and clients)."""
    try:
        resp = await ddb.update_item(
            **q.heartbeat(table, workflow_id, epoch=epoch, lease_until=lease_until)
        )
        return run_from_item(resp["Attributes"])
    except ClientError as e:
        if conditional_failed(e):
            return None
        raise
