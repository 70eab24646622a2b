"""The synchronous store over boto3: what the API, the sweeper and tests use.

Writes first, reads only on conflict: a conditional write that fails returns
the stored item (ALL_OLD), which is all the caller needs to decide.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from .. import resources as r
from .. import safejson
from ..children import cancel_request
from ..clock import Clock
from ..errors import BadInputError, ConflictError, InboxFullError, NotFoundError
from ..model import (
    MAX_INBOX_BYTES,
    MAX_INBOX_SIGNALS,
    Run,
    Signal,
    Status,
    StepRecord,
    inbox_refusal,
)
from . import endings
from . import record_requests as rq
from . import requests as q
from .codec import (
    list_sk,
    new_run_item,
    records_from_items,
    run_from_item,
    run_key,
    run_pk,
    signal_from_item,
    to_attr,
    to_item,
    with_last_batch,
)
from .conditions import conditional_failed, old_item
from .pages import _PageRequests
from .sync_sweeper import _SweeperRequests

log = logging.getLogger(__name__)

MAX_LIST_LIMIT = 200
MAX_LIST_ROUNDS = 10
MAX_LIST_EXAMINED = 400  # runs one list call may read (at least `limit`)


def tag_pk(key: str, value: str) -> str:
    """The partition of one tag value's index entries: `TAG#<key>=<value>`, one
    item per run, sort key `<created ms>#<id>` (as in `by_created`)."""
    return f"{r.TAG_PK_PREFIX}{key}={value}"


# Consumed signals, and those a run left unconsumed when it ended, are kept a week, then expire.
SIGNAL_TTL_SECONDS = 7 * 24 * 3600
EXPIRE_THREADS = 8  # expiring an ended run's leftovers: writes in flight at once


@dataclass(frozen=True)
class Page:
    runs: list[Run]
    cursor: str | None


def list_rounds(limit: int) -> int:
    """Index rounds one list call may read: the bound on its cost."""
    return max(1, min(MAX_LIST_ROUNDS, MAX_LIST_EXAMINED // limit))


def encode_cursor(before: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"b": before}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = safejson.loads(base64.urlsafe_b64decode(padded.encode()), what="cursor")["b"]
        if not isinstance(value, str) or len(value) > 200:
            raise ValueError
        return value
    except (BadInputError, ValueError, KeyError, TypeError, binascii.Error) as e:
        raise BadInputError("cursor is not one this API returned") from e


class Store(_PageRequests, _SweeperRequests):
    def __init__(self, client: Any, table: str, clock: Clock) -> None:
        self._ddb = client
        self._table = table
        self._clock = clock

    @property
    def ddb(self) -> Any:
        return self._ddb

    @property
    def table(self) -> str:
        return self._table

    @property
    def clock(self) -> Clock:
        return self._clock

    # --- runs -------------------------------------------------------------------------
    def create(self, run: Run) -> tuple[Run, bool]:
        """Store a new run. Returns (run, created). The same id with the same name
        and input returns the stored run (idempotent start); different → ConflictError.

        Its tags' index entries are written first: a crash after them leaves an
        entry without a run (skipped when listed), never a run missing from its
        tag's list."""
        for key, value in run.tags.items():
            self._ddb.put_item(
                TableName=self._table,
                Item=to_item(
                    {
                        r.PK: tag_pk(key, value),
                        r.SK: list_sk(run.created_at, run.id),
                        "id": run.id,
                    }
                ),
            )
        try:
            self._ddb.put_item(**q.put_new_run(self._table, new_run_item(run)))
            return run, True
        except ClientError as e:
            if not conditional_failed(e):
                raise
            existing = run_from_item(old_item(e) or self._get_item(run.id))
        if existing.name != run.name or json.loads(existing.input) != json.loads(run.input):
            raise ConflictError(
                f"workflow id {run.id!r} is already used by a run of {existing.name!r} "
                "with a different input"
            )
        return existing, False

    def list_by_tag(
        self, key: str, value: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """Runs started with tag key=value, newest first: one Query of the tag's
        partition and one BatchGetItem. An entry whose run does not carry the tag
        (its start was refused as a conflicting id) is skipped."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadInputError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        cond = "#pk = :pk" + (" AND #sk < :before" if cursor else "")
        values: dict[str, Any] = {":pk": to_attr(tag_pk(key, value))}
        names = {"#pk": r.PK}
        if cursor:
            values[":before"] = to_attr(decode_cursor(cursor))
            names["#sk"] = r.SK
        resp = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression=cond,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
            Limit=limit,
        )
        keys = [(i[r.SK]["S"], i["id"]["S"]) for i in resp.get("Items", [])]
        runs = self._batch_get([wid for _, wid in keys])
        found = [runs[wid] for _, wid in keys if wid in runs and runs[wid].tags.get(key) == value]
        more = "LastEvaluatedKey" in resp and keys
        return Page(found, encode_cursor(keys[-1][0]) if more else None)

    def _get_item(self, workflow_id: str) -> dict[str, Any]:
        resp = self._ddb.get_item(
            TableName=self._table, Key=run_key(workflow_id), ConsistentRead=True
        )
        if "Item" not in resp:
            raise NotFoundError(f"no workflow run with id {workflow_id!r}")
        return resp["Item"]

    def get(self, workflow_id: str) -> Run:
        return run_from_item(self._get_item(workflow_id))

    def steps(self, workflow_id: str, generation: int | None = None) -> list[StepRecord]:
        """The records of the run's current generation (continue-as-new), or of
        `generation`."""
        run = self.get(workflow_id)  # unknown id → NotFoundError
        gen = run.generation if generation is None else generation
        req = rq.query_history(self._table, workflow_id, gen)
        items = self._query_all(req)
        # A redrive reopens the current generation only: an ended one's records
        # all stay what they were (none of a later attempt can land there).
        attempt = run.redrive_count if gen == run.generation else 0
        records = records_from_items(items, attempt=attempt)
        return with_last_batch(records, run.last_batch, gen)

    def signals(self, workflow_id: str, name: str) -> list[Signal]:
        return [
            signal_from_item(i)
            for i in self._query_all(rq.query_inbox(self._table, workflow_id, name))
        ]

    def inbox(self, workflow_id: str) -> list[Signal]:
        """Every buffered (not yet consumed) signal of a run, by arrival (seq)."""
        self.get(workflow_id)  # unknown id → NotFoundError
        req = {
            **rq.query_inbox(self._table, workflow_id, ""),
            "ExpressionAttributeValues": {
                ":pk": to_attr(run_pk(workflow_id)),
                ":prefix": to_attr(r.SIGNAL_SK_PREFIX),
            },
        }
        found = [signal_from_item(i) for i in self._query_all(req)]
        return sorted(found, key=lambda sig: sig.seq)

    def _query_all(self, req: dict[str, Any]) -> list[dict[str, Any]]:
        pages = self._ddb.get_paginator("query").paginate(**req)
        return [item for page in pages for item in page.get("Items", [])]

    def list_runs(
        self,
        *,
        status: Status | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        build_id: str | None = None,
    ) -> Page:
        """Newest first, merged across the index shards. `build_id` filters like
        `status` (after the read): the build that first claimed the run.

        The cursor is the sort key of the last run examined; every shard is
        queried for keys below it. A call examines at most
        max(limit, MAX_LIST_EXAMINED) runs (`list_rounds`): with a status filter
        a page may come back short, with a cursor to go on. Worst case per call:
        rounds x LIST_SHARDS Queries (each at most `limit` index items) and
        rounds x ceil(limit / 100) BatchGetItem calls (docs/security.md).
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadInputError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        before = decode_cursor(cursor) if cursor else None
        out: list[Run] = []
        for _ in range(list_rounds(limit)):
            keys, more = self._index_page(before=before, name=name, limit=limit)
            if not keys:
                return Page(out, None)
            runs = self._batch_get([wid for _, wid in keys])
            for sort_key, wid in keys:
                before = sort_key
                run = runs.get(wid)
                if run is None or (status is not None and run.status != status):
                    continue
                if build_id is not None and run.build_id != build_id:
                    continue
                out.append(run)
                if len(out) == limit:
                    return Page(out, encode_cursor(before))
            if not more:
                return Page(out, None)
        return Page(out, encode_cursor(before) if before else None)

    def _index_page(
        self, *, before: str | None, name: str | None, limit: int
    ) -> tuple[list[tuple[str, str]], bool]:
        """Up to `limit` (sort key, id) rows below `before`, newest first, merged
        from every shard; whether there may be more.

        Each shard's Query examines at most `limit` index items, and a name
        filter may keep fewer. A shard that stopped early (its LastEvaluatedKey)
        was examined only down to that key, so no row below the highest such key
        is returned this time: it could come before rows of that shard not yet
        read. When the rows above it are fewer than the page, a row with no id at
        that key ends the page, so the next one starts below it."""
        per_shard: list[list[tuple[str, str]]] = []
        frontier: str | None = None  # the highest key a shard that stopped early reached
        for shard in range(r.LIST_SHARDS):
            cond = "#lp = :lp" + (" AND #ls < :before" if before else "")
            values: dict[str, Any] = {":lp": to_attr(r.list_pk(shard))}
            names = {"#lp": r.BY_CREATED.partition_key}
            if before:
                values[":before"] = to_attr(before)
                names["#ls"] = r.BY_CREATED.sort_key
            req: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": r.BY_CREATED.name,
                "KeyConditionExpression": cond,
                "ScanIndexForward": False,
                "Limit": limit,
            }
            if name:
                req["FilterExpression"] = "#nm = :nm"
                names["#nm"] = "name"
                values[":nm"] = to_attr(name)
            req["ExpressionAttributeNames"] = names
            req["ExpressionAttributeValues"] = values
            resp = self._ddb.query(**req)
            rows = []
            for item in resp.get("Items", []):
                sk = item[r.BY_CREATED.sort_key]["S"]
                rows.append((sk, sk.split("#", 1)[1]))
            if "LastEvaluatedKey" in resp:
                lek = resp["LastEvaluatedKey"][r.BY_CREATED.sort_key]["S"]
                frontier = lek if frontier is None else max(frontier, lek)
            per_shard.append(rows)
        merged = list(heapq.merge(*per_shard, key=lambda t: t[0], reverse=True))
        more = frontier is not None
        if frontier is not None:
            merged = [row for row in merged if row[0] >= frontier]
        if len(merged) > limit:
            return merged[:limit], True
        if frontier is not None and (not merged or merged[-1][0] != frontier):
            merged.append((frontier, ""))  # examined down to here: go on below it
        return merged, more

    def _batch_get(self, ids: list[str]) -> dict[str, Run]:
        ids = [i for i in dict.fromkeys(ids) if i]
        found: dict[str, Run] = {}
        for start in range(0, len(ids), 100):
            keys = [run_key(i) for i in ids[start : start + 100]]
            request = {self._table: {"Keys": keys}}
            while request:
                resp = self._ddb.batch_get_item(RequestItems=request)
                for item in resp.get("Responses", {}).get(self._table, []):
                    run = run_from_item(item)
                    found[run.id] = run
                request = resp.get("UnprocessedKeys") or {}
        return found

    # --- signals ------------------------------------------------------------------------
    def send_signal(
        self, workflow_id: str, name: str, payload: str, *, grace_ms: int = 30_000
    ) -> tuple[Signal, bool, str | None]:
        sig, woke, timer, _ = self.send_signal_read(workflow_id, name, payload, grace_ms=grace_ms)
        return sig, woke, timer

    def send_signal_read(
        self, workflow_id: str, name: str, payload: str, *, grace_ms: int = 30_000
    ) -> tuple[Signal, bool, str | None, Run]:
        """Store a signal in the run's inbox. Returns (signal, woke, timer): woke is
        True when this signal flipped a run waiting for it to pending (the caller
        then dispatches it), and timer names the schedule of the wait's timeout
        that the woken run no longer needs (the caller deletes it). A woken run
        enters the sweeper's index, due after `grace_ms`: if the caller's send is
        lost, the sweeper sends it then.

        InboxFullError when the inbox holds `MAX_INBOX_SIGNALS` signals or this
        one's payload would take it past `MAX_INBOX_BYTES`. The limit is held by
        the write itself (`record_requests.send_signal`); the run as read only
        says which limit refused it, and saves a write when it is plainly full."""
        size = len(payload.encode())
        for _ in range(20):
            run = self.get(workflow_id)
            if run.status.terminal:
                raise ConflictError(
                    f"workflow run {workflow_id!r} is {run.status.value}; it takes no more signals"
                )
            full = inbox_refusal(workflow_id, run.inbox_count, run.inbox_bytes, size)
            if full:
                raise InboxFullError(full)
            now = self._clock.now_ms()
            sig = Signal(name=name, seq=run.signal_seq + 1, payload=payload, sent_at=now)
            wake = run.status == Status.WAITING and name in run.wait_signals
            try:
                self._ddb.transact_write_items(
                    **rq.send_signal(
                        self._table,
                        workflow_id,
                        signal=sig,
                        prev_seq=run.signal_seq,
                        seen_status=run.status,
                        epoch=run.epoch,
                        now=now,
                        wake=wake,
                        due_at=now + grace_ms,
                        attempt=run.redrive_count,
                        limit=(MAX_INBOX_SIGNALS, MAX_INBOX_BYTES),
                    )
                )
                # The run as read: exact, since the write was conditioned on it (its
                # route tells the caller where to send a wake-up).
                sig = replace(sig, attempt=run.redrive_count, size=size)
                return sig, wake, (run.timer if wake else None), run
            except ClientError as e:
                if e.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                # The run moved (another signal, a claim, a park, its inbox filled
                # up): read it again.
        raise ConflictError(f"workflow run {workflow_id!r} is changing too fast; try again")

    def expire_inbox(self, workflow_id: str) -> int:
        """Give the signals an ended run left unconsumed a TTL (`SIGNAL_TTL_SECONDS`
        from now): an effect after the terminal write, by whoever wrote it. Safe
        to repeat. Returns how many it expired."""
        expires_at = self._clock.now_ms() // 1000 + SIGNAL_TTL_SECONDS
        keys = [
            item[r.SK]["S"]
            for item in self._query_all(rq.query_leftover_signals(self._table, workflow_id))
        ]

        def expire(key: str) -> bool:
            req = rq.expire_signal(self._table, workflow_id, key, expires_at=expires_at)
            try:
                self._ddb.update_item(**req)
                return True
            except ClientError as e:
                if not conditional_failed(e):
                    raise
                return False  # consumed or gone meanwhile

        if len(keys) <= 1:
            return sum(map(expire, keys))
        # Up to the inbox's limit of them: a few at a time (a boto3 client is thread-safe).
        with ThreadPoolExecutor(max_workers=EXPIRE_THREADS) as pool:
            return sum(pool.map(expire, keys))

    def _expire_after_end(self, run: Run) -> None:
        """The effect after a terminal write this store made (`run` as written):
        a run that ever got a signal may have left some unconsumed. Logged, not
        raised: the run has ended whatever happens here."""
        if run.signal_seq == 0:
            return
        try:
            self.expire_inbox(run.id)
        except Exception:
            log.exception("could not expire the inbox of ended run %s", run.id)

    def terminate(self, workflow_id: str, reason: str) -> tuple[Run, Run, str]:
        """End a run now, with no cleanup: (before, after, "terminated"), or
        "already_<status>" for a finished run."""
        for _ in range(20):
            run = self.get(workflow_id)
            if run.status.terminal:
                return run, run, f"already_{run.status.value}"
            req = endings.terminate(
                self._table,
                workflow_id,
                epoch=run.epoch,
                seen=run.status,
                now=self._clock.now_ms(),
                reason=reason,
            )
            try:
                resp = self._ddb.update_item(**req)
                after = run_from_item(resp["Attributes"])
                self._expire_after_end(after)
                return run, after, "terminated"
            except ClientError as e:
                if not conditional_failed(e):
                    raise
        raise ConflictError(f"workflow run {workflow_id!r} is changing too fast; try again")

    # --- cancel ------------------------------------------------------------------------
    def cancel(self, workflow_id: str, reason: str) -> tuple[Run, Run, str]:
        """Cancel a run. Returns (before, after, outcome) with outcome one of
        "cancelled" (it was not running: cancelled now), "requested" (it is
        running: its owner delivers the cancel at its next durable call),
        "already_requested", or "already_<status>" for a finished run."""
        for _ in range(20):
            run = self.get(workflow_id)
            outcome, req = cancel_request(self._table, run, reason=reason, now=self._clock.now_ms())
            if req is None:
                return run, run, outcome
            try:
                resp = self._ddb.update_item(**req)
                after = run_from_item(resp["Attributes"])
                if after.status.terminal:
                    self._expire_after_end(after)
                return run, after, outcome
            except ClientError as e:
                if not conditional_failed(e):
                    raise
                # It moved (claimed, parked, finished) since we read it: read again.
        raise ConflictError(f"workflow run {workflow_id!r} is changing too fast; try again")


__all__ = ["MAX_LIST_LIMIT", "Page", "Store", "list_sk"]
