"""Messages for workflow names this worker does not serve.

Workers that serve different names may share one queue (the first thing
people try, and the state of a rolling deploy that adds a workflow). SQS
cannot route, so a worker often receives another fleet's message (with k
fleets of one worker each, k-1 times in k). It hands the message back without
delaying the run:

- The receiver finds out without a claim: a start (and every send that knows
  the run) writes the workflow name into the message as a hint, and a refused
  claim leaves the name in `NameCache`. The receiving loop hands such a
  message back itself before its next receive, then sits out HANDOFF_YIELD_S:
  no long poll of this worker is open when the message becomes visible, so
  SQS hands it to another worker's.
- Served by another live worker (the registry says so, read at most once a
  second): make it visible again at once for the first `at_once` receives,
  three times the number of live workers on the queue that do not serve the
  name (AT_ONCE_MIN..AT_ONCE_MAX; each sees it about once before it reaches
  a worker that does, with room for a loaded machine), then
  after 1, 1 and 2 s; the next receive sends a fresh copy (delayed 2 s) and
  deletes this one, so that its receive count never reaches the redrive to
  the dead-letter queue. While the serving fleet is saturated a message
  costs about at_once + 4 receives and visibility changes per 6 s, not a hot
  loop.
- Served by no live worker: hidden ever longer (1, 2, 4 ... 60 s), then
  dropped after UNSERVED_MAX_RECEIVES; the sweeper offers the run again with
  its backoff. A worker that starts serving a name nobody served kicks the
  runs of that name created before it started that are still pending
  KICK_DELAY_S later (`kick_pending`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator import resources as r
from orchestrator.clock import Clock
from orchestrator.dispatch import send_request
from orchestrator.model import DEFAULT_TASK_QUEUE, Status
from orchestrator.settings import Settings
from orchestrator.store.codec import run_from_item, run_key, to_attr
from orchestrator.store.registry import WorkerInfo, query_workers, worker_from_item

log = logging.getLogger("worker")

HANDOFF_YIELD_S = 0.15  # after handing a message back, this worker's receives wait this long

# A message another live worker serves: visible at once for the first `at_once`
# receives (AT_ONCE_MIN..AT_ONCE_MAX, from the registry), then after these seconds,
# then a fresh copy delayed RESEND_DELAY_S.
AT_ONCE_MIN = 2
AT_ONCE_MAX = 12
HANDOFF_BACKOFF = (1, 1, 2)
RESEND_DELAY_S = 2
# ... and for a message no live worker serves; dropped after the last one.
UNSERVED_VISIBILITY = (1, 2, 4, 8, 15, 30, 60, 60)
UNSERVED_MAX_RECEIVES = len(UNSERVED_VISIBILITY) + 1
REGISTRY_MAX_AGE_MS = 1000  # a "nobody serves it" answer is at most this old
REGISTRY_POSITIVE_AGE_MS = 10_000  # a "someone serves it" answer, at most this
KICK_WINDOW_MS = 5 * 60 * 1000
KICK_DELAY_S = 2.0  # a run still pending this long after the start: its message is hidden
KICK_MAX_RUNS = 1000


@dataclass(frozen=True)
class Handoff:
    action: Literal["visible", "resend", "drop"]
    seconds: int


def plan(receives: int, served_elsewhere: bool, at_once: int = AT_ONCE_MIN) -> Handoff:
    """What to do with a message this worker cannot run, by its receive count. Pure."""
    n = max(1, receives)
    if served_elsewhere:
        at_once = max(AT_ONCE_MIN, min(AT_ONCE_MAX, at_once))
        if n <= at_once:
            return Handoff("visible", 0)
        if n <= at_once + len(HANDOFF_BACKOFF):
            return Handoff("visible", HANDOFF_BACKOFF[n - at_once - 1])
        return Handoff("resend", RESEND_DELAY_S)
    if n < UNSERVED_MAX_RECEIVES:
        return Handoff("visible", UNSERVED_VISIBILITY[n - 1])
    return Handoff("drop", 0)


class NameCache:
    """Run id -> (workflow name, task queue) for runs this worker refused (names
    and task queues never change)."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._names: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def get(self, workflow_id: str, task_queue: str = DEFAULT_TASK_QUEUE) -> str | None:
        """The run's name, if it was refused here and its task queue is `task_queue`."""
        entry = self._names.get(workflow_id)
        if entry is None:
            return None
        self._names.move_to_end(workflow_id)
        return entry[0] if entry[1] == task_queue else None

    def put(self, workflow_id: str, name: str, task_queue: str = DEFAULT_TASK_QUEUE) -> None:
        self._names[workflow_id] = (name, task_queue)
        self._names.move_to_end(workflow_id)
        while len(self._names) > self._size:
            self._names.popitem(last=False)


def _serves(w: WorkerInfo, name: str, task_queue: str) -> bool:
    """Whether a registered worker runs `name` from `task_queue` (`served`; a
    worker registered without it: its names on its queues)."""
    if w.served:
        key = name if task_queue == DEFAULT_TASK_QUEUE else f"{name}@{task_queue}"
        return key in w.served
    return name in w.names and task_queue in w.task_queues


class ServedNames:
    """What live workers other than this one serve, from the registry."""

    def __init__(self, ddb: Any, table: str, clock: Clock, *, self_id: str) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock
        self._self_id = self_id
        self._names: set[str] = set()
        self._live: list[WorkerInfo] = []
        self._read_at: int | None = None

    async def refresh(self) -> set[str]:
        req = {**query_workers(self._table), "ConsistentRead": True}
        now = self._clock.now_ms()
        live: list[WorkerInfo] = []
        while True:
            resp = await self._ddb.query(**req)
            for item in resp.get("Items", []):
                w = worker_from_item(item)
                if w.id != self._self_id and w.live(now):
                    live.append(w)
            if "LastEvaluatedKey" not in resp:
                break
            req = {**req, "ExclusiveStartKey": resp["LastEvaluatedKey"]}
        names = {n for w in live for n in w.names}
        self._names, self._live, self._read_at = names, live, now
        return names

    async def route(self, name: str, task_queue: str) -> tuple[bool, int]:
        """(another live worker runs `name` from `task_queue`, the receives to
        hand its message back at once: three times the live workers on the queue,
        this one included, that do not run it)."""
        age = None if self._read_at is None else self._clock.now_ms() - self._read_at
        served, at_once = self._answer(name, task_queue)
        if age is None or age > (REGISTRY_POSITIVE_AGE_MS if served else REGISTRY_MAX_AGE_MS):
            try:
                await self.refresh()
            except Exception:
                log.warning("could not read the worker registry", exc_info=True)
                return True, AT_ONCE_MIN  # assume a peer: hand it back rather than hide it
            served, at_once = self._answer(name, task_queue)
        return served, at_once

    def _answer(self, name: str, task_queue: str) -> tuple[bool, int]:
        polling = [w for w in self._live if task_queue in w.task_queues]
        others = sum(not _serves(w, name, task_queue) for w in polling)
        return any(_serves(w, name, task_queue) for w in polling), 3 * (others + 1)


async def kick_pending(
    ddb: Any, sqs: Any, settings: Settings, clock: Clock, names: set[str], *, before: int
) -> list[str]:
    """Send the runs of `names` created in the KICK_WINDOW_MS up to `before` (the
    worker's start) that are still pending.

    Called KICK_DELAY_S after a worker starts serving names no other live worker
    serves: the messages of runs created before then may be hidden by the backoff
    above, or dropped (the sweeper would offer them again only after its own
    backoff). A run still pending that long after the start is such a run; one
    whose message was visible has been claimed by then, so the kick rarely sends
    a duplicate (harmless anyway). Runs created later found this worker
    registered. One `by_created` Query per shard (the index projects the name, so
    other names cost no read of the run), one BatchGetItem per 100 candidates.
    """
    if not names:
        return []
    now = clock.now_ms()
    low = f"{now - KICK_WINDOW_MS:013d}"
    high = f"{before:013d}~"  # "~" sorts after "#": every id created at `before`
    candidates: list[str] = []
    for shard in range(r.LIST_SHARDS):
        req: dict[str, Any] = {
            "TableName": settings.table,
            "IndexName": r.BY_CREATED.name,
            "KeyConditionExpression": "#lp = :lp AND #ls BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": {
                "#lp": r.BY_CREATED.partition_key,
                "#ls": r.BY_CREATED.sort_key,
            },
            "ExpressionAttributeValues": {
                ":lp": to_attr(r.list_pk(shard)),
                ":lo": to_attr(low),
                ":hi": to_attr(high),
            },
        }
        while len(candidates) < KICK_MAX_RUNS:
            resp = await ddb.query(**req)
            for item in resp.get("Items", []):
                if item.get("name", {}).get("S") in names:
                    candidates.append(item[r.BY_CREATED.sort_key]["S"].split("#", 1)[1])
            if "LastEvaluatedKey" not in resp:
                break
            req = {**req, "ExclusiveStartKey": resp["LastEvaluatedKey"]}
    sent: list[str] = []
    for start in range(0, len(candidates), 100):
        request: dict[str, Any] = {
            settings.table: {"Keys": [run_key(i) for i in candidates[start : start + 100]]}
        }
        while request:
            resp = await ddb.batch_get_item(RequestItems=request)
            for item in resp.get("Responses", {}).get(settings.table, []):
                run = run_from_item(item)
                if run.status == Status.PENDING:
                    await sqs.send_message(
                        **send_request(
                            settings, run.id, "served", task_queue=run.route, name=run.name
                        )
                    )
                    sent.append(run.id)
            request = resp.get("UnprocessedKeys") or {}
    return sent
