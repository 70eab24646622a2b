"""Flow control per task queue: a concurrency limit and a rate limit that hold
across every worker, kept in one item per task queue.

    pk = "QUEUES"   sk = "Q#<task queue>"
    max_concurrency, rate_limit, rate_period_ms     the limits (absent: none)
    holders       {run id: when the slot was taken (ms)}
    window_start, window_count                      the current rate window

A worker that claims a run of a limited queue first takes a slot with one
conditional update (`acquire`): the run joins `holders` only if fewer than
`max_concurrency` hold one (or the run holds one already), and the window's
count goes up only if it is under `rate_limit` (or a new window starts). The
condition compares the item's own attributes, so changing a limit is one write
(`orchestrator queue set`) that every worker obeys at its next claim, with no
redeploy and no read per claim. Work over a limit is not dropped: its message
comes back a little later.

A holder's value is a token, `<taken at ms>:<random>`, written by every
acquire, including one that finds the run's holder already there (a duplicate
message, a takeover of a dead owner's run, the next claim after a park). Every
removal is conditioned on a token, so only the last acquirer of a run removes
its holder, and an acquire that comes after a removal was decided makes that
removal fail:

- `release`: the lease ended by this worker's own write (completion, failure, a
  park, a release at shutdown): REMOVE if the token is still this acquire's.
- `restore`: this acquire's claim was refused and it had replaced a holder: put
  the previous token back, if the token is still this acquire's (the run's
  live owner keeps the slot its own acquire wrote, and releases it with that).
  A refused acquire that created the holder releases it.
- `purge`: a killed worker gives nothing back. The next worker that finds the
  queue full reads the runs of the holders older than a lease, and removes the
  ones whose run holds no live lease, each conditioned on the token it read.

So a killed worker holds a slot at most until its lease expires, and a slot is
never removed while a claim that relies on it may still be running.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from .. import resources as r
from .codec import from_item, to_attr, to_item

FLOW_PK = "QUEUES"


def flow_key(task_queue: str) -> dict[str, Any]:
    return to_item({r.PK: FLOW_PK, r.SK: f"Q#{task_queue}"})


@dataclass(frozen=True)
class FlowState:
    task_queue: str
    max_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period_ms: int | None = None
    # run id -> token (a bare number: a holder an older worker wrote)
    holders: dict[str, str | int] | None = None
    window_start: int = 0
    window_count: int = 0
    oldest_wait: tuple[str, int] | None = None  # (run id, waiting since ms)

    @property
    def limited(self) -> bool:
        return self.max_concurrency is not None or self.rate_limit is not None

    @property
    def in_flight(self) -> int:
        return len(self.holders or {})


def flow_from_item(task_queue: str, item: dict[str, Any] | None) -> FlowState:
    if not item:
        return FlowState(task_queue)
    d = from_item(item)
    return FlowState(
        task_queue=task_queue,
        max_concurrency=d.get("max_concurrency"),
        rate_limit=d.get("rate_limit"),
        rate_period_ms=d.get("rate_period_ms"),
        holders=dict(d.get("holders") or {}),
        window_start=d.get("window_start", 0),
        window_count=d.get("window_count", 0),
        oldest_wait=_oldest(d.get("oldest_wait")),
    )


def _oldest(value: Any) -> tuple[str, int] | None:
    if isinstance(value, dict) and isinstance(value.get("run"), str):
        return value["run"], int(value.get("since") or 0)
    return None


def new_token(now: int) -> str:
    """A holder's value: when it was taken (the purge's age test) and 32 random
    bits, so that two acquires of one run in one millisecond differ."""
    return f"{now}:{secrets.token_hex(4)}"


def taken_at(token: str | int) -> int:
    """When a holder was taken (a bare number: a holder written before tokens)."""
    return int(str(token).split(":", 1)[0])


def acquire(
    table: str,
    task_queue: str,
    *,
    run_id: str,
    token: str,
    now: int,
    period_ms: int,
    new_window: bool,
) -> dict[str, Any]:
    """Take a slot for `run_id`, writing `token` as its holder.

    Closes: more than `max_concurrency` runs holding a lease on the queue, and
    more than `rate_limit` claims in a window, whatever the number of workers:
    the counts and the limits are in one item, and the condition reads them all.
    A run taken over after its owner died takes its own slot again (the key is
    the run id), so it never counts twice. `new_window`: the caller saw the
    window expire; it starts a new one, conditioned on the window having
    expired still (two workers cannot both restart it)."""
    concurrency = "(attribute_not_exists(#max) OR size(#h) < #max OR attribute_exists(#h.#run))"
    values: dict[str, Any] = {":token": token, ":one": 1, ":expired": now - period_ms}
    if new_window:
        values[":now"] = now
        rate = "(attribute_not_exists(#rl) OR #ws <= :expired)"
        window = "#ws = :now, #wc = :one"
    else:
        rate = "(attribute_not_exists(#rl) OR (#ws > :expired AND #wc < #rl))"
        window = "#wc = #wc + :one"
    return {
        "TableName": table,
        "Key": flow_key(task_queue),
        # An existing holder of the run is overwritten too: a removal decided
        # before this write (the previous owner's release after a park, a refused
        # duplicate's undo, a purge) is conditioned on the old token and fails.
        "UpdateExpression": f"SET #h.#run = :token, {window}",
        "ConditionExpression": f"attribute_exists(#h) AND {concurrency} AND {rate}",
        "ExpressionAttributeNames": {
            "#h": "holders",
            "#run": run_id,
            "#max": "max_concurrency",
            "#rl": "rate_limit",
            "#ws": "window_start",
            "#wc": "window_count",
        },
        "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def release(table: str, task_queue: str, run_id: str, token: str) -> dict[str, Any]:
    # Closes: giving back a slot that a newer acquire of the same run wrote (the
    # run parked, woke and is being claimed elsewhere; a duplicate message's
    # handler took it over): only the holder this acquire wrote is removed.
    return {
        "TableName": table,
        "Key": flow_key(task_queue),
        "UpdateExpression": "REMOVE #h.#run",
        "ConditionExpression": "#h.#run = :t",
        "ExpressionAttributeNames": {"#h": "holders", "#run": run_id},
        "ExpressionAttributeValues": {":t": to_attr(token)},
    }


def restore(
    table: str, task_queue: str, run_id: str, token: str, previous: str | int
) -> dict[str, Any]:
    # Closes: a refused duplicate taking the slot from the run's live owner (whose
    # release is conditioned on its own token): the previous holder is put back,
    # unless a newer acquire wrote the holder since (then it is that one's).
    return {
        "TableName": table,
        "Key": flow_key(task_queue),
        "UpdateExpression": "SET #h.#run = :prev",
        "ConditionExpression": "#h.#run = :t",
        "ExpressionAttributeNames": {"#h": "holders", "#run": run_id},
        "ExpressionAttributeValues": {":t": to_attr(token), ":prev": to_attr(previous)},
    }


def purge(table: str, task_queue: str, stale: dict[str, str | int]) -> dict[str, Any]:
    # Closes: purging a slot that its run took again since it was read (a new
    # acquire writes a new token): each holder is removed only if unchanged.
    names = {"#h": "holders"}
    values: dict[str, Any] = {}
    removes, conditions = [], []
    for i, (run_id, token) in enumerate(stale.items()):
        names[f"#r{i}"] = run_id
        values[f":e{i}"] = to_attr(token)
        removes.append(f"#h.#r{i}")
        conditions.append(f"#h.#r{i} = :e{i}")
    return {
        "TableName": table,
        "Key": flow_key(task_queue),
        "UpdateExpression": "REMOVE " + ", ".join(removes),
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def note_waiting(table: str, task_queue: str, run_id: str, since: int) -> dict[str, Any]:
    """Record `run_id` as the queue's oldest waiting run: its acquire was refused
    and it has waited since `since`. A worker sends this only when the item it
    was refused by shows no oldest waiting run or a younger one, so it costs one
    write per new oldest, not one per refusal."""
    # Closes: a younger waiter overwriting an older one that another worker wrote
    # since the read (the oldest only ever moves back in time, until cleared).
    return {
        "TableName": table,
        "Key": flow_key(task_queue),
        "UpdateExpression": "SET #ow = :w",
        "ConditionExpression": "attribute_exists(#h) AND "
        "(attribute_not_exists(#ow) OR #ow.#since > :since OR #ow.#run = :run)",
        "ExpressionAttributeNames": {
            "#ow": "oldest_wait",
            "#h": "holders",
            "#since": "since",
            "#run": "run",
        },
        "ExpressionAttributeValues": {
            ":w": to_attr({"run": run_id, "since": since}),
            ":since": to_attr(since),
            ":run": to_attr(run_id),
        },
    }


def clear_waiting(table: str, task_queue: str, run_id: str) -> dict[str, Any]:
    """The oldest waiting run got its slot (or its message was taken): the next
    refused waiter records itself."""
    # Closes: clearing an older waiter recorded since this run was read as the oldest.
    return {
        "TableName": table,
        "Key": flow_key(task_queue),
        "UpdateExpression": "REMOVE #ow",
        "ConditionExpression": "#ow.#run = :run",
        "ExpressionAttributeNames": {"#ow": "oldest_wait", "#run": "run"},
        "ExpressionAttributeValues": {":run": to_attr(run_id)},
    }


def set_limits(
    table: str,
    task_queue: str,
    *,
    max_concurrency: int | None,
    rate_limit: int | None,
    rate_period_ms: int | None,
    now: int,
) -> dict[str, Any]:
    """Set (or, with None, remove) the limits; the holders and the window stay.
    The oldest waiting run is forgotten: waiters under the new limits record
    themselves again at their next refusal (within about 3 s)."""
    sets = ["#ua = :now", "#h = if_not_exists(#h, :empty)", "#ws = if_not_exists(#ws, :zero)"]
    sets.append("#wc = if_not_exists(#wc, :zero)")
    values: dict[str, Any] = {":now": now, ":empty": {}, ":zero": 0}
    removes = ["#ow"]
    for attr, placeholder, value in (
        ("max_concurrency", "#max", max_concurrency),
        ("rate_limit", "#rl", rate_limit),
        ("rate_period_ms", "#rp", rate_period_ms),
    ):
        if value is None:
            removes.append(placeholder)
        else:
            sets.append(f"{placeholder} = :{attr}")
            values[f":{attr}"] = value
    update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    return {
        "TableName": table,
        "Key": flow_key(task_queue),
        "UpdateExpression": update,
        "ExpressionAttributeNames": {
            "#ua": "updated_at",
            "#h": "holders",
            "#ws": "window_start",
            "#wc": "window_count",
            "#max": "max_concurrency",
            "#rl": "rate_limit",
            "#rp": "rate_period_ms",
            "#ow": "oldest_wait",
        },
        "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
        "ReturnValues": "ALL_NEW",
    }
