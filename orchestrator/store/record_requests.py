"""The requests on a run's records (its partition's items other than the run
item): step outcomes and batches, a wait's timeout, signals (sent, consumed,
read back) and the history Query. Pure, as `requests.py`, whose conventions
they follow: each condition says which race it closes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .. import resources as r
from ..model import Signal, Status, StepRecord, generation_scope
from .codec import (
    batch_item,
    run_key,
    run_pk,
    signal_item,
    signal_sk,
    step_item,
    step_sk,
    to_attr,
    to_item,
)
from .requests import _due, _names, _update


def put_step(table: str, workflow_id: str, rec: StepRecord) -> dict[str, Any]:
    """Record a durable call at its position.

    Closes: two writers recording one position (a stale owner and the new one,
    or a duplicate delivery). First write wins; the loser gets the winner's
    record back (ALL_OLD) and uses it, without a read.

    - An outcome (resolved) may replace an unresolved record of that id (a
      step's retry state, a distributed map's start), never a resolved one.
    - A retry state (unresolved step) may replace only a retry state with fewer
      attempts: a stale owner cannot move the attempt count back. An
      at-most-once step's start marker (unresolved, no retry time: attempt n
      started) replaces a record of fewer attempts, so one writer starts each
      attempt; the retry state of attempt n replaces that marker, once.
    - Anything else (a sleep's wake time, a wait's deadline) is written once:
      the first value is the one that holds on every replay.

    Each of these holds within one run attempt (`rec.run_attempt`, the run's
    redrive count). A record of an earlier attempt is no record for this
    writer (readers leave it out): it is replaced whatever it holds, so a late
    write of a redriven run's old owner can neither be replayed nor take a
    position from the new attempt. A record of a later attempt is never
    replaced by an earlier attempt's writer.
    """
    names = {"#sk": r.SK, "#rat": "run_attempt"}
    values: dict[str, Any] = {}
    same, older = attempt_clauses(rec.run_attempt, values)
    if rec.resolved:
        # An outcome replaces the operation's unresolved record (a step's retry
        # state, a distributed map's start), never a resolved one.
        condition = f"attribute_not_exists(#sk) OR ({same} AND attribute_not_exists(#res))"
        names["#res"] = "resolved"
    elif rec.kind == "step" and rec.retry_at is None:
        # An at-most-once attempt's start: one writer starts each attempt.
        condition = (
            f"attribute_not_exists(#sk) OR ({same} AND attribute_not_exists(#res)"
            " AND size(#att) < :n)"
        )
        names.update({"#res": "resolved", "#att": "attempts"})
        values[":n"] = to_attr(len(rec.attempts))
    elif rec.kind == "step":
        # A retry state also replaces the start marker of its own attempt (as
        # many attempts, no retry time); never another retry state of as many.
        condition = (
            f"attribute_not_exists(#sk) OR ({same} AND attribute_not_exists(#res)"
            " AND (size(#att) < :n OR (size(#att) = :n AND attribute_not_exists(#rt))))"
        )
        names.update({"#res": "resolved", "#att": "attempts", "#rt": "retry_at"})
        values[":n"] = to_attr(len(rec.attempts))
    else:
        condition = "attribute_not_exists(#sk)"
    if older:
        condition += f" OR {older}"
    if "#rat" not in condition:  # DynamoDB refuses a name the expression does not use
        del names["#rat"]
    req: dict[str, Any] = {
        "TableName": table,
        "Item": step_item(workflow_id, rec),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if values:
        req["ExpressionAttributeValues"] = values
    return req


def attempt_clauses(attempt: int, values: dict[str, Any]) -> tuple[str, str | None]:
    """The conditions that scope a record write to run attempt `attempt` (the
    names map `#rat` to `run_attempt`): the existing record belongs to the same
    attempt; the existing record belongs to an earlier one (None for attempt 0,
    which has none). Closes: a late write of a redriven run's old owner being
    replayed, or taking a position from the new attempt."""
    if attempt == 0:
        return "attribute_not_exists(#rat)", None
    values[":rat"] = to_attr(attempt)
    return "#rat = :rat", "(attribute_not_exists(#rat) OR #rat < :rat)"


def put_batch(
    table: str, workflow_id: str, *, epoch: int, now: int, records: list[StepRecord]
) -> dict[str, Any]:
    """Record several step results in one item (batched checkpoints).

    Closes: a stale owner's flush. A batch is fenced like every owner write
    (unlike a single step record, which first-write-wins makes harmless): the
    run must still be running under the writer's epoch, checked on the run item
    in the same transaction. Once a later claim moved the epoch, the new owner's
    strongly consistent history Query (after its claim) has seen every batch that
    landed before, and no batch of the old owner can land after. So the
    operations of two accepted batches never overlap, and a batch needs no
    condition of its own: an SDK retry of an applied transaction puts the same
    item again."""
    return {
        "TransactItems": [
            {
                "ConditionCheck": {
                    "TableName": table,
                    "Key": run_key(workflow_id),
                    "ConditionExpression": "#ep = :epoch AND #st = :running",
                    "ExpressionAttributeNames": {"#ep": "epoch", "#st": "status"},
                    "ExpressionAttributeValues": {
                        ":epoch": to_attr(epoch),
                        ":running": to_attr(Status.RUNNING.value),
                    },
                }
            },
            {
                "Put": {
                    "TableName": table,
                    "Item": batch_item(workflow_id, epoch=epoch, now=now, records=records),
                }
            },
        ]
    }


def resolve_wait_timeout(
    table: str, workflow_id: str, *, op_id: str, now: int, attempt: int = 0
) -> dict[str, Any]:
    # Closes: a timeout and a signal both resolving one wait. Whichever resolves
    # first wins; the other reads the winner's outcome back. And an owner of an
    # earlier run attempt timing out the wait of the current one.
    values: dict[str, Any] = {}
    same, _ = attempt_clauses(attempt, values)
    req = _update(
        table,
        to_item({r.PK: run_pk(workflow_id), r.SK: step_sk(op_id)}),
        "SET #res = :t, timed_out = :t, recorded_at = :now",
        f"attribute_exists(#sk) AND attribute_not_exists(#res) AND {same}",
        {":t": True, ":now": now},
    )
    req["ExpressionAttributeNames"]["#rat"] = "run_attempt"
    if values:
        req["ExpressionAttributeValues"].update(values)
    return req


def consume_signal(
    table: str, workflow_id: str, *, wait: StepRecord, signal: Signal, now: int, ttl_s: int
) -> dict[str, Any]:
    """One transaction: the wait's outcome and the signal's consumption (and the
    signal taken out of the run's inbox counters, when they hold it).

    Closes: one signal consumed by two waits, and one wait resolved twice (by a
    timeout or a second signal). Both conditions hold or neither write happens,
    so the counters go down exactly once per signal they went up for.
    """
    # Every attribute of the wait is kept (a callback's token among them).
    resolved = replace(
        wait, recorded_at=now, resolved=True, result=signal.payload, signal_seq=signal.seq
    )
    # The wait as this attempt recorded it (or a redrive carried it over): an
    # owner of an earlier attempt cannot resolve it with its own consumption.
    values: dict[str, Any] = {}
    same, _ = attempt_clauses(wait.run_attempt, values)
    wait_put: dict[str, Any] = {
        "TableName": table,
        "Item": step_item(workflow_id, resolved),
        "ConditionExpression": f"attribute_not_exists(#res) AND {same}",
        "ExpressionAttributeNames": {"#res": "resolved", "#rat": "run_attempt"},
    }
    if values:
        wait_put["ExpressionAttributeValues"] = values
    items: list[dict[str, Any]] = [
        {"Put": wait_put},
        {
            "Update": {
                "TableName": table,
                "Key": to_item(
                    {r.PK: run_pk(workflow_id), r.SK: signal_sk(signal.name, signal.seq)}
                ),
                "UpdateExpression": "SET #cat = :now, #ttl = :ttl",
                "ConditionExpression": "attribute_exists(#sk) AND attribute_not_exists(#cat)",
                "ExpressionAttributeNames": {
                    "#cat": "consumed_at",
                    "#ttl": r.TTL_ATTRIBUTE,
                    "#sk": r.SK,
                },
                "ExpressionAttributeValues": {
                    ":now": to_attr(now),
                    ":ttl": to_attr(now // 1000 + ttl_s),
                },
            }
        },
    ]
    if signal.attempt is not None and signal.attempt == wait.run_attempt:
        # Counted by this attempt's inbox: out of it again. No condition: the two
        # writes above are what make this happen once. (A signal of an earlier
        # attempt was counted by counters its run's end removed.)
        items.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": run_key(workflow_id),
                    "UpdateExpression": "ADD #ic :less, #ib :fewer",
                    "ExpressionAttributeNames": {"#ic": "inbox_count", "#ib": "inbox_bytes"},
                    "ExpressionAttributeValues": {
                        ":less": to_attr(-1),
                        ":fewer": to_attr(-signal.size),
                    },
                }
            }
        )
    return {"TransactItems": items}


def send_signal(
    table: str,
    workflow_id: str,
    *,
    signal: Signal,
    prev_seq: int,
    seen_status: Status,
    epoch: int,
    now: int,
    wake: bool,
    due_at: int,
    attempt: int = 0,
    limit: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """One transaction: store the signal, bump the run's signal_seq and count the
    signal in the run's inbox (`inbox_count`, `inbox_bytes`); if the run waits
    for this name, flip it to pending in the same write. `attempt`: the run's
    attempt (redrive count) as read, which the signal is counted for. `limit`:
    (signals, bytes) the inbox may hold with this one in it (None: the engine's
    own signals, which are never refused).

    Closes: two signals taking one sequence number (signal_seq = :prev), a
    signal racing a park (the park is conditioned on signal_seq, see
    `park_wait`), a wake-up of a run that moved since it was read (status and
    epoch as read; a redrive moves the epoch, so `attempt` is the run's), and
    concurrent senders passing the inbox's limit: the counters are checked by
    the write that increments them.
    """
    size = len(signal.payload.encode())
    counted = replace(signal, attempt=attempt, size=size)
    values: dict[str, Any] = {
        ":seq": signal.seq,
        ":now": now,
        ":prev": prev_seq,
        ":seen": seen_status.value,
        ":epoch": epoch,
        ":one": 1,
        ":size": size,
    }
    sets = "SET #ss = :seq, #ua = :now"
    removes = ""
    if wake:
        due = _due(workflow_id, due_at, values)
        sets += f", #st = :pending, {due}"
        removes = " REMOVE #ws, #wa, #tm"
        values[":pending"] = Status.PENDING.value
    update = f"{sets} ADD #ic :one, #ib :size{removes}"
    condition = "#ss = :prev AND #st = :seen AND #ep = :epoch"
    if limit is not None:
        # Room for one more signal and its bytes (a counter not yet written is 0).
        max_signals, max_bytes = limit
        condition += (
            " AND (attribute_not_exists(#ic) OR #ic < :max_count)"
            " AND (attribute_not_exists(#ib) OR #ib <= :room)"
        )
        values[":max_count"] = max_signals
        values[":room"] = max_bytes - size
    return {
        "TransactItems": [
            {
                "Update": {
                    "TableName": table,
                    "Key": run_key(workflow_id),
                    "UpdateExpression": update,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": _names(update, condition),
                    "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
                }
            },
            {
                "Put": {
                    "TableName": table,
                    "Item": signal_item(workflow_id, counted),
                    "ConditionExpression": "attribute_not_exists(#sk)",
                    "ExpressionAttributeNames": {"#sk": r.SK},
                }
            },
        ]
    }


def query_history(table: str, workflow_id: str, generation: int = 0) -> dict[str, Any]:
    # Strongly consistent: a claim must see every step the previous owner recorded.
    # One generation (continue-as-new) only: generation 0's keys are "STEP#" and a
    # digit or "t" (below "STEP#~"); generation g's begin "STEP#~<g:05d>.".
    values: dict[str, Any] = {":pk": to_attr(run_pk(workflow_id))}
    if generation == 0:
        key = "#pk = :pk AND #sk BETWEEN :lo AND :hi"
        values[":lo"] = to_attr(r.STEP_SK_PREFIX)
        values[":hi"] = to_attr(r.STEP_SK_PREFIX + "~")
    else:
        key = "#pk = :pk AND begins_with(#sk, :prefix)"
        values[":prefix"] = to_attr(step_sk(generation_scope(generation)) + ".")
    return {
        "TableName": table,
        "KeyConditionExpression": key,
        "ExpressionAttributeNames": {"#pk": r.PK, "#sk": r.SK},
        "ExpressionAttributeValues": values,
        "ConsistentRead": True,
    }


def query_inbox(table: str, workflow_id: str, name: str) -> dict[str, Any]:
    from .codec import signal_prefix

    # Unconsumed signals of one name, oldest (lowest seq) first.
    return {
        "TableName": table,
        "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
        "FilterExpression": "attribute_not_exists(#cat)",
        "ExpressionAttributeNames": {"#pk": r.PK, "#sk": r.SK, "#cat": "consumed_at"},
        "ExpressionAttributeValues": {
            ":pk": to_attr(run_pk(workflow_id)),
            ":prefix": to_attr(signal_prefix(name)),
        },
        "ConsistentRead": True,
    }


def query_leftover_signals(table: str, workflow_id: str) -> dict[str, Any]:
    # Signals of an ended run that no wait consumed and that do not expire yet:
    # what `expire_signal` gives a TTL after the run's end. Strongly consistent:
    # every signal stored before the terminal write is seen.
    return {
        "TableName": table,
        "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
        "FilterExpression": "attribute_not_exists(#cat) AND attribute_not_exists(#ttl)",
        "ProjectionExpression": "#sk",
        "ExpressionAttributeNames": {
            "#pk": r.PK,
            "#sk": r.SK,
            "#cat": "consumed_at",
            "#ttl": r.TTL_ATTRIBUTE,
        },
        "ExpressionAttributeValues": {
            ":pk": to_attr(run_pk(workflow_id)),
            ":prefix": to_attr(r.SIGNAL_SK_PREFIX),
        },
        "ConsistentRead": True,
    }


def expire_signal(
    table: str, workflow_id: str, sort_key: str, *, expires_at: int
) -> dict[str, Any]:
    """Give an ended run's unconsumed signal a TTL (`expires_at`, epoch seconds).

    Closes: recreating a signal that is gone (attribute_exists), and expiring one
    a wait consumed meanwhile (a redrive reopened the run: its consumption set
    the TTL it keeps)."""
    return {
        "TableName": table,
        "Key": to_item({r.PK: run_pk(workflow_id), r.SK: sort_key}),
        "UpdateExpression": "SET #ttl = :ttl",
        "ConditionExpression": "attribute_exists(#sk) AND attribute_not_exists(#cat)",
        "ExpressionAttributeNames": {"#ttl": r.TTL_ATTRIBUTE, "#sk": r.SK, "#cat": "consumed_at"},
        "ExpressionAttributeValues": {":ttl": to_attr(expires_at)},
    }
