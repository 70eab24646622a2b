"""`ctx.map(name, items, workflow=...)`: a distributed map, each item a child run.

Items spread over every worker of the fleet instead of one worker's slots. The
map takes one operation id; item `i` is the child run
`child_run_id(parent, "<id>.<i>")`, started in index order (a conditional put
each, one SendMessageBatch per ten), at most `max_concurrency` in flight. The
map's start is recorded first (the workflow and the item count), so a cancel of
the parent finds its children.

Children do not notify the parent: the parent holds its lease while the map is
in flight and collects its children's ends in windows. A poll reads one
BatchGetItem of at most 100 children in flight: the oldest (children are
started in index order and the queue hands them out about in that order, so
the oldest are the likeliest to have ended) and a slice of the others that
rotates from poll to poll, so that every child in flight is read within a few
polls whatever order they end in. The interval between polls adapts to what a
poll finds (from 0.2 s to 5 s): shorter when more than three quarters of the
window had ended, longer when less than half had, so that a child is read
about twice rather than once per poll for as long as it runs. So the parent is
not woken once per child, a child's end costs no write beyond its own terminal
write, and the reads stay a small multiple of the children. The completion
rule and the recorded decision are those of the in-run map
(worker/operations/batch.py); a replay of a decided map returns the record,
and a replay of an unfinished one finds the children it started (they exist,
in index order) and goes on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from orchestrator.errors import BadInputError
from orchestrator.model import (
    WORKFLOW_NAME_RE,
    Run,
    Status,
    StepKind,
    StepRecord,
    child_run_id,
)
from orchestrator.store.codec import check_size, dumps

from .. import _core
from .._children import cancel_run
from .._registry import to_jsonable
from .._state import duration_ms
from .batch import (
    BatchItem,
    BatchItemStatus,
    BatchResult,
    CompletionConfig,
    CompletionReason,
    _Policy,
    check_batch_args,
)
from .invoke import check_task_queue

POLL_FIRST_S = 0.2
POLL_MAX_S = 5.0
POLL_WINDOW = 100  # children read per poll: one BatchGetItem
POLL_ROTATING = 25  # of which read from a slice of the younger ones that rotates
START_CONCURRENCY = 16  # child puts in flight at once


async def distributed_map(
    name: str,
    items: Sequence[Any],
    workflow: str,
    *,
    max_concurrency: int | None,
    completion: CompletionConfig | None,
    execution_timeout: timedelta | float | None,
    task_queue: str | None = None,
    batch_size: int | None = None,
) -> BatchResult[Any]:
    check_batch_args(name, max_concurrency, completion)
    check_task_queue(task_queue)
    if not isinstance(workflow, str) or not WORKFLOW_NAME_RE.fullmatch(workflow):
        raise ValueError(f"{workflow!r} is not a workflow name")
    if isinstance(items, (str, bytes, dict)):
        raise TypeError("map takes a list of items")
    items = list(items)
    if batch_size is not None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError("batch_size must be an int of at least 1")
        items = [
            {"items": items[at : at + batch_size], "batch": k, "first_index": at}
            for k, at in enumerate(range(0, len(items), batch_size))
        ]
    inputs = []
    for item in items:
        try:
            text = dumps(to_jsonable(item))
            check_size(text, what="an item's input", limit=_core.input_limit())
        except (TypeError, ValueError, BadInputError) as e:
            raise ValueError(f"an item cannot be sent: {e}") from e
        inputs.append(text)
    timeout_ms = None if execution_timeout is None else duration_ms(execution_timeout)
    s, op_id, rec = await _core.enter("map")
    total = len(inputs)
    if rec is not None:
        _core.check(s, rec, StepKind.MAP, name)
        if rec.resolved:
            return await _from_record(s, rec, total)
    else:
        now = s.clock.now_ms()
        start = StepRecord(
            op_id,
            name,
            StepKind.MAP,
            s.epoch,
            now,
            started_at=now,
            result=json.dumps({"workflow": workflow, "total": total}),
        )
        rec = await _core.record(s, start)
    ids = [child_run_id(s.workflow_id, f"{op_id}.{i}") for i in range(total)]

    async def inputs_of(indexes: list[int]) -> list[str]:
        return [inputs[i] for i in indexes]

    outcomes, reason = await run_children(
        s,
        op_id,
        ids,
        inputs_of,
        workflow,
        max_concurrency,
        _Policy(total, completion),
        timeout_ms,
        task_queue,
    )
    items_out = []
    for i in sorted(outcomes):
        run = outcomes[i]
        if run is None:
            items_out.append({"i": i, "s": BatchItemStatus.STARTED.value})
        elif run.status == Status.COMPLETED:
            items_out.append({"i": i, "s": "succeeded", "r": run.output or "null"})
        else:
            err = run.error.as_dict() if run.error else {"type": run.status.value, "message": ""}
            err["type"] = err.get("type") or run.status.value
            items_out.append({"i": i, "s": "failed", "e": {**err, "status": run.status.value}})
    body = {"reason": reason.value, "workflow": workflow, "total": total, "items": items_out}
    text = json.dumps(body, separators=(",", ":"))
    replay_children = len(text.encode()) > 256 * 1024
    if replay_children:
        slim = [{"i": d["i"], "s": d["s"]} for d in items_out]
        text = json.dumps({**body, "items": slim}, separators=(",", ":"))
    done = StepRecord(
        op_id,
        name,
        StepKind.MAP,
        s.epoch,
        s.clock.now_ms(),
        started_at=rec.started_at,
        result=text,
        resolved=True,
        replay_children=replay_children,
    )
    return await _from_record(s, await _core.record(s, done), total)


async def run_children(
    s: Any,
    op_id: str,
    ids: list[str],
    inputs_of: Callable[[list[int]], Awaitable[list[str]]],
    workflow: str,
    max_concurrency: int | None,
    policy: _Policy,
    timeout_ms: int | None,
    task_queue: str | None,
    *,
    start_group: int | None = None,
    slim: bool = False,
) -> tuple[dict[int, Run | None], CompletionReason]:
    """Start the children in index order, at most `max_concurrency` in flight, and
    poll for their ends until `policy` decides. `inputs_of(indexes)` gives the
    inputs of the children about to start, at most `start_group` at a time (all
    that fit by default). `slim`: an ended child is kept without its input and
    output (its status and error only), so the parent's memory stays bounded by
    the number of children, not by what they return."""
    total = len(ids)
    cap = max_concurrency or total or 1
    outcomes: dict[int, Run | None] = {}  # started: None until it ended
    reason = policy.decide(0, 0) if total == 0 else None
    # A replay finds the children it started: they exist, in index order.
    existing = await _core.io(s, s.store.get_runs(ids[: min(total, cap + 100)]))
    cursor = 0
    while cursor < total and ids[cursor] in existing:
        outcomes[cursor] = None
        cursor += 1
    succeeded = failed = 0
    poll = POLL_FIRST_S
    turn = 0  # where the rotating part of the next poll's window starts
    while reason is None:
        in_flight = [i for i, r in outcomes.items() if r is None]
        fresh: list[int] = []
        while cursor < total and len(in_flight) + len(fresh) < cap:
            fresh.append(cursor)
            cursor += 1
        group = start_group or len(fresh) or 1
        for at in range(0, len(fresh), group):
            part = fresh[at : at + group]
            await _start(
                s,
                op_id,
                [ids[i] for i in part],
                await inputs_of(part),
                workflow,
                timeout_ms,
                part,
                task_queue,
            )
        if fresh:
            for i in fresh:
                outcomes[i] = None
            in_flight += fresh
        window, turn = _window(in_flight, turn)
        runs = await _core.io(s, s.store.get_runs([ids[i] for i in window]))
        ended = sorted(i for i in window if ids[i] in runs and runs[ids[i]].status.terminal)
        for i in ended:
            run = runs[ids[i]]
            outcomes[i] = replace(run, input="", output=None) if slim else run
            if run.status == Status.COMPLETED:
                succeeded += 1
            else:
                failed += 1
            reason = policy.decide(succeeded, failed)
            if reason is not None:
                break
        if reason is not None:
            break
        poll = _next_poll(poll, len(ended), len(window))
        s.enter_busy()  # the parent holds its lease while its children run
        try:
            await asyncio.sleep(poll)
        finally:
            s.leave_busy()
        _core.check_lease(s)
    for i, r in outcomes.items():
        if r is None:
            await _core.io(s, cancel_run(s.store, ids[i], "the map decided without it", s.clock))
    return outcomes, reason


def _window(in_flight: list[int], turn: int) -> tuple[list[int], int]:
    """The children one poll reads (at most POLL_WINDOW: the oldest, and a
    rotating slice of the younger ones) and where the next poll's slice starts."""
    if len(in_flight) <= POLL_WINDOW:
        return in_flight, 0
    ordered = sorted(in_flight)
    oldest = POLL_WINDOW - POLL_ROTATING
    rest = ordered[oldest:]
    turn %= len(rest)
    rotating = (rest[turn:] + rest[:turn])[:POLL_ROTATING]
    return ordered[:oldest] + rotating, turn + POLL_ROTATING


def _next_poll(poll: float, ended: int, read: int) -> float:
    """The interval before the next poll: shorter when more than three quarters
    of what this poll read had ended, longer when less than half had."""
    if ended * 4 > read * 3:
        return max(POLL_FIRST_S, poll / 1.5)
    if ended * 2 < read:
        return min(POLL_MAX_S, poll * 1.5)
    return poll


async def _start(
    s: Any,
    op_id: str,
    ids: list[str],
    inputs: list[str],
    workflow: str,
    timeout_ms: int | None,
    indexes: list[int],
    task_queue: str | None,
) -> None:
    now = s.clock.now_ms()
    gate = asyncio.Semaphore(START_CONCURRENCY)
    to_send: list[tuple[int, str]] = []

    async def put(child_id: str, text: str, index: int) -> None:
        child = Run(
            id=child_id,
            name=workflow,
            status=Status.PENDING,
            input=text,
            created_at=now,
            updated_at=now,
            deadline_at=None if timeout_ms is None else now + timeout_ms,
            parent_id=s.workflow_id,
            parent_op=f"{op_id}.{index}",
            parent_polls=True,
            task_queue=task_queue,
        )
        async with gate:
            stored, created = await s.store.create_run(child)
        if created or stored.status == Status.PENDING:
            to_send.append((index, child_id))

    async def put_all() -> None:
        # Created inside the store call (`_core.io`): these tasks are the SDK's,
        # not the workflow's, and take no task scope.
        await asyncio.gather(*(put(c, t, i) for c, t, i in zip(ids, inputs, indexes, strict=True)))

    _core.check_lease(s)
    await _core.io(s, put_all())
    # In index order: the queue hands them out about in that order, which is the
    # order the polls look for their ends in.
    await _core.io(s, s.store.send_many([c for _, c in sorted(to_send)], "start", task_queue))


async def _from_record(s: Any, rec: StepRecord, total: int) -> BatchResult[Any]:
    from .batch import _error

    body = json.loads(rec.result or "{}")
    items: list[BatchItem[Any]] = []
    reread: dict[str, Run] = {}
    if rec.replay_children:
        ids = [child_run_id(s.workflow_id, f"{rec.op_id}.{d['i']}") for d in body["items"]]
        reread = await _core.io(s, s.store.get_runs(ids))
    for d in body.get("items", []):
        i, status = d["i"], BatchItemStatus(d["s"])
        child_id = child_run_id(s.workflow_id, f"{rec.op_id}.{i}")
        if status == BatchItemStatus.SUCCEEDED:
            text = (
                d.get("r")
                if "r" in d
                else (reread[child_id].output if child_id in reread else None)
            )
            items.append(BatchItem(i, status, result=json.loads(text or "null")))
        elif status == BatchItemStatus.FAILED:
            e = d.get("e")
            if e is None and child_id in reread and reread[child_id].error is not None:
                e = reread[child_id].error.as_dict()  # type: ignore[union-attr]
            items.append(BatchItem(i, status, error=_error(f"{rec.name}[{i}]", child_id, e or {})))
        else:
            items.append(BatchItem(i, status))
    return BatchResult(items, CompletionReason(body["reason"]), total)
