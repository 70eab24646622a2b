"""Flow control per task queue: a concurrency limit and a rate limit that hold
across every worker, kept in one item per task queue.

    pk = "QUEUES"   sk = "Q#<task queue>"
    max_concurrency, rate_limit, rate_period_ms     the limits (absent: none)
    holders       {run id: {token: when that handler took the slot (ms)}}
    window_start, window_count                      the current rate window

A worker that claims a run of a limited queue first takes a slot with one
conditional update (`acquire`): the run joins `holders` only if fewer than
`max_concurrency` hold one (or the run holds one already), and the window's
count goes up only if it is under `rate_limit` (or a new window starts). The
condition compares the item's own attributes, so changing a limit is one write
(`orchestrator queue set`) that every worker obeys at its next claim, with no
redeploy and no read per claim. Work over a limit is not dropped: its message
comes back a little later.

A run's entry in `holders` is a small map, `{token: taken at ms}`: every
handler of the run that took the slot (the claim's owner, a duplicate message's
handler, the next claim after a park, a takeover) adds a token of its own, and
gives back only that token. The slot is held while the entry has a token, and
the handler that removes the last token removes the entry. Nobody writes or
removes another handler's token, so the order in which handlers of one run take
and give back does not matter:

- `acquire` (before the claim) creates the run's entry if the queue is under
  its limit, or (`join`) adds a token to the entry of a run that holds a slot
  already (no limit to check: the run counts once).
- `release`: the claim was refused, or the lease ended by this worker's own
  write (completion, failure, a park, a release at shutdown): remove this
  acquire's token, and (`last`) the entry with it if it is the only token.
- `purge`: a killed worker gives nothing back. The next worker that finds the
  queue full reads the runs whose newest token is older than a lease, and
  removes the entries of those that hold no live lease, each conditioned on the
  entry it read.

So a killed worker holds a slot at most until its lease expires, and a slot is
never removed while a claim that relies on it may still be running.

Entries an older version wrote (a bare token string `<ms>:<random>`, or a bare
number) are left to their writers and the purge: no acquire joins them.
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


# A run's entry in `holders`: {token: taken at ms}; a bare string or number is a
# holder an older version wrote.
Entry = dict[str, int] | str | int


@dataclass(frozen=True)
class FlowState:
    task_queue: str
    max_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period_ms: int | None = None
    holders: dict[str, Entry] | None = None  # run id -> entry
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


def new_token() -> str:
    """One acquire's key in its run's entry: 48 random bits, so that the handlers
    of one run (a handful at most) never share one."""
    return secrets.token_hex(6)


def taken_at(entry: Entry) -> int:
    """When the entry's newest token was taken (the purge's age test); for a
    holder an older version wrote, when it was taken."""
    if isinstance(entry, dict):
        return max((int(t) for t in entry.values()), default=0)
    return int(str(entry).split(":", 1)[0])


def acquire(
    table: str,
    task_queue: str,
    *,
    run_id: str,
    token: str,
    now: int,
    period_ms: int,
    new_window: bool,
    join: bool = False,
) -> dict[str, Any]:
    """Take a slot for `run_id` by adding `token` to its entry.

    Closes: more than `max_concurrency` runs holding a lease on the queue, and
    more than `rate_limit` claims in a window, whatever the number of workers:
    the counts and the limits are in one item, and the condition reads them all.
    Without `join` the run's entry is created, only if the run has none (it
    would replace the tokens of the run's other handlers) and fewer than
    `max_concurrency` runs hold one. With `join` the token is added to the
    run's existing entry: a run taken over after its owner died, or handled
    twice, takes its own slot again and never counts twice. `new_window`: the
    caller saw the window expire; it starts a new one, conditioned on the
    window having expired still (two workers cannot both restart it)."""
    values: dict[str, Any] = {":one": 1, ":expired": now - period_ms}
    names = {
        "#h": "holders",
        "#run": run_id,
        "#rl": "rate_limit",
        "#ws": "window_start",
        "#wc": "window_count",
    }
    if join:
        names["#tok"] = token
        values[":now"] = now
        values[":map"] = "M"
        # The entry is a map of tokens (not absent: its last token was removed
        # since; not a holder an older version wrote).
        slot = "SET #h.#run.#tok = :now"
        concurrency = "attribute_type(#h.#run, :map)"
    else:
        names["#max"] = "max_concurrency"
        values[":entry"] = {token: now}
        slot = "SET #h.#run = :entry"
        concurrency = (
            "(attribute_not_exists(#h.#run) AND (attribute_not_exists(#max) OR size(#h) < #max))"
        )
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
        "UpdateExpression": f"{slot}, {window}",
        "ConditionExpression": f"attribute_exists(#h) AND {concurrency} AND {rate}",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def release(table: str, task_queue: str, run_id: str, token: str, *, last: bool) -> dict[str, Any]:
    """Give back the slot `token` took. `last`: the entry holds this token only,
    and goes with it; otherwise only the token goes, and the run's other
    handlers keep the slot."""
    # Closes: removing a slot that another handler of the run still holds (the
    # run's owner, while a refused duplicate gives its token back; the next
    # claim after a park, while the parked owner's release comes late): the
    # entry goes only with its last token, and each handler removes only its own.
    if last:
        update = "REMOVE #h.#run"
        condition = "attribute_exists(#h.#run.#tok) AND size(#h.#run) = :one"
    else:
        update = "REMOVE #h.#run.#tok"
        condition = "attribute_exists(#h.#run.#tok) AND size(#h.#run) > :one"
    return {
        "TableName": table,
        "Key": flow_key(task_queue),
        "UpdateExpression": update,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": {"#h": "holders", "#run": run_id, "#tok": token},
        "ExpressionAttributeValues": {":one": to_attr(1)},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def purge(table: str, task_queue: str, stale: dict[str, Entry]) -> dict[str, Any]:
    # Closes: purging a slot that its run took again since it was read (a new
    # acquire adds a token): each entry is removed only if unchanged.
    names = {"#h": "holders"}
    values: dict[str, Any] = {}
    removes, conditions = [], []
    for i, (run_id, entry) in enumerate(stale.items()):
        names[f"#r{i}"] = run_id
        values[f":e{i}"] = to_attr(entry)
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
