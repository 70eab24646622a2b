"""Recovery of finished runs: redrive (the same run again) and fork (a new run
from a prefix of another's history). Operator actions, each decided from one
consistent read of the run and its history and applied in one transaction
conditioned on exactly what was read, so that it cannot race a worker, a
second redrive, or a redrive and a fork.

Redrive: a failed (timed-out included) or cancelled run goes back to pending
under its id, in its next run attempt (`redrive_count` + 1). Its records stay,
except those that would make it fail again, which are deleted in the same
transaction (`to_remove`): every record with an error, every step's retry
state, every cancel marker, and every ancestor of those (a batch or child
context whose recorded outcome includes them). The records that stay are
carried over to the new attempt (`run_attempt`), and readers leave out
records of earlier attempts: so recorded successes replay, failed operations
run again with fresh attempts, and a late write of an owner of the old
attempt (a request that left before the takeover and landed after the
redrive read the history) is never replayed. The run keeps `redrive_count`
and `outcomes` (each earlier ending: status, error type and message, time,
attempt).

Fork: a new run whose history is the original's records before an operation
(`fork_prefix`); the new run names its origin in `forked_from`. The run item
is written first, marked `forking` (no claim takes such a run), so the id is
taken before any record is: a second fork or a start with that id is refused
before it writes anything, and no record of another fork can ever land in
the new run's history. The records are copied, then the mark is removed. A
fork that stopped half-way leaves a run that no worker claims, visibly; the
same fork request again (same origin and operation) completes it.
"""

from __future__ import annotations

import dataclasses
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import resources as r
from ..clock import Clock
from ..errors import BadInputError, ConflictError
from ..model import (
    RECOVERY,
    WORKFLOW_ID_RE,
    Run,
    Status,
    StepKind,
    StepRecord,
    generation_scope,
    op_sort_key,
)
from . import record_requests as rq
from . import requests as q
from .codec import (
    item_attempt,
    new_run_item,
    records_from_items,
    run_from_item,
    run_key,
    run_pk,
    shard,
    step_item,
    step_sk,
    to_attr,
    to_item,
    with_last_batch,
)

MAX_REDRIVE_REMOVALS = 99  # one transaction: the run's update and these deletes
TRANSACTION_ITEMS = 100  # DynamoDB's limit on the actions of one transaction
# A fork's record puts in flight at once (the boto3 client's pool holds 50
# connections, `orchestrator.aws.CLIENT_CONFIG`).
COPY_THREADS = 8
_OUTCOME_MESSAGE_CHARS = 1000


# --- pure decisions ------------------------------------------------------------------------
def _ancestors(op_id: str) -> list[str]:
    parts = op_id.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def to_remove(history: list[StepRecord]) -> list[StepRecord]:
    """The records a redrive deletes so that the operations they end run again."""
    failed = {
        rec.op_id
        for rec in history
        if rec.error is not None
        or rec.kind == StepKind.CANCEL
        or (rec.kind == StepKind.STEP and not rec.resolved)
    }
    doomed = failed | {a for op in failed for a in _ancestors(op)}
    return [rec for rec in history if rec.op_id in doomed]


def fork_prefix(history: list[StepRecord], from_operation: str) -> list[StepRecord]:
    """The records that come before `from_operation` in the run's id order (a
    record's sort key below the operation's), without the operation's ancestors,
    whose outcomes depend on it: forking from "3.1.2" (inside item 1 of the map
    at "3") keeps "0".."2", all of item 0, "3.1.0" and "3.1.1"; not "3" or "3.1"."""
    key = op_sort_key(from_operation)
    above = set(_ancestors(from_operation))
    return [rec for rec in history if op_sort_key(rec.op_id) < key and rec.op_id not in above]


def _outcome(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {"status": run.status.value, "ended_at": run.updated_at}
    out["attempt"] = run.epoch
    if run.error is not None:
        out["error"] = {
            "type": run.error.type,
            "message": run.error.message[:_OUTCOME_MESSAGE_CHARS],
        }
    return out


# --- requests -------------------------------------------------------------------------------
def redrive_request(
    table: str,
    run: Run,
    removed: list[StepRecord],
    *,
    now: int,
    due_at: int,
    deadline_at: int | None,
) -> dict[str, Any]:
    """One transaction: the run back to pending, and the failed records deleted.

    Closes: a redrive racing a worker or a second redrive. The run's update is
    conditioned on the status and epoch as read (a second redrive, having read
    the same, loses: the winner moved both), and the epoch moves on, so every
    write of a worker of an earlier attempt (conditioned on its own epoch and
    on status running) is refused. Each delete is conditioned on the record as
    read (its epoch and recorded_at): a record rewritten since (by the run that
    a concurrent redrive already reopened) is not deleted, and then nothing is
    written at all.
    """
    values: dict[str, Any] = {
        ":pending": Status.PENDING.value,
        ":seen": run.status.value,
        ":epoch": run.epoch,
        ":one": 1,
        ":zero": 0,
        ":now": now,
        ":outcome": [_outcome(run)],
        ":empty": [],
        ":dpk": r.due_pk(shard(run.id, r.DUE_SHARDS)),
        ":due": due_at,
    }
    sets = [
        "#st = :pending",
        "#ep = #ep + :one",
        "#ua = :now",
        "#rc = if_not_exists(#rc, :zero) + :one",
        "#oc = list_append(if_not_exists(#oc, :empty), :outcome)",
        # in the sweeper's index, like a released run: a lost send is re-sent after the grace
        "#dp = :dpk",
        "#da = :due",
    ]
    if deadline_at is not None:
        sets.append("#dl = :deadline")
        values[":deadline"] = deadline_at
    # The inbox counters start again: what the ended attempt left is counted by
    # no one (its end removed them; a stale owner's late consumption may have
    # written them again) and expires by TTL (`record_requests.expire_signal`).
    update = "SET " + ", ".join(sets) + " REMOVE #err, #out, #cr, #ow, #lu, #wa, #ws, #tm, #ic, #ib"
    names = {
        "#st": "status",
        "#ep": "epoch",
        "#ua": "updated_at",
        "#rc": "redrive_count",
        "#oc": "outcomes",
        "#dp": r.BY_DUE.partition_key,
        "#da": r.BY_DUE.sort_key,
        "#err": "error",
        "#out": "output",
        "#cr": "cancel_requested",
        "#ow": "owner",
        "#lu": "lease_until",
        "#wa": "wake_at",
        "#ws": "wait_signal",
        "#tm": "timer",
        "#ic": "inbox_count",
        "#ib": "inbox_bytes",
    }
    if deadline_at is not None:
        names["#dl"] = "deadline_at"
    items: list[dict[str, Any]] = [
        {
            "Update": {
                "TableName": table,
                "Key": run_key(run.id),
                "UpdateExpression": update,
                "ConditionExpression": "#st = :seen AND #ep = :epoch",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
            }
        }
    ]
    for rec in removed:
        items.append(
            {
                "Delete": {
                    "TableName": table,
                    "Key": to_item({r.PK: run_pk(run.id), r.SK: step_sk(rec.op_id)}),
                    "ConditionExpression": "#ep = :e AND #ra = :ra",
                    "ExpressionAttributeNames": {"#ep": "epoch", "#ra": "recorded_at"},
                    "ExpressionAttributeValues": {
                        ":e": to_attr(rec.epoch),
                        ":ra": to_attr(rec.recorded_at),
                    },
                }
            }
        )
    return {"TransactItems": items}


def carry_over(table: str, items: list[dict[str, Any]], attempt: int) -> list[dict[str, Any]]:
    """Transaction actions that move the history items a redrive keeps into run
    attempt `attempt`, each conditioned on the item as read (its epoch and
    recorded_at): an item rewritten since is not carried, and then nothing of
    the final transaction is written either. Setting the same attempt twice (a
    retried redrive) is harmless."""
    return [
        {
            "Update": {
                "TableName": table,
                "Key": {r.PK: item[r.PK], r.SK: item[r.SK]},
                "UpdateExpression": "SET #rat = :rat",
                "ConditionExpression": "#ep = :e AND #ra = :ra",
                "ExpressionAttributeNames": {
                    "#rat": "run_attempt",
                    "#ep": "epoch",
                    "#ra": "recorded_at",
                },
                "ExpressionAttributeValues": {
                    ":rat": to_attr(attempt),
                    ":e": item.get("epoch", to_attr(0)),
                    ":ra": item.get("recorded_at", to_attr(0)),
                },
            }
        }
        for item in items
    ]


def kept_items(items: list[dict[str, Any]], removed: list[StepRecord]) -> list[dict[str, Any]]:
    """The history items a redrive keeps: those none of whose records it removes."""
    gone = {rec.op_id for rec in removed}
    return [
        item for item in items if not any(rec.op_id in gone for rec in records_from_items([item]))
    ]


# --- the operations (synchronous store: the API) --------------------------------------------
def _run_and_history(
    ddb: Any, table: str, workflow_id: str
) -> tuple[Run, list[StepRecord], list[dict[str, Any]]]:
    """The run, its history (the current generation and run attempt), and the
    history's items as stored."""
    from ..errors import NotFoundError

    resp = ddb.get_item(TableName=table, Key=run_key(workflow_id), ConsistentRead=True)
    if "Item" not in resp:
        raise NotFoundError(f"no workflow run with id {workflow_id!r}")
    run = run_from_item(resp["Item"])
    req = rq.query_history(table, workflow_id, run.generation)
    items: list[dict[str, Any]] = []
    while True:
        page = ddb.query(**req)
        items.extend(
            item
            for item in page.get("Items", [])
            if item_attempt(item) >= run.redrive_count  # an earlier attempt's: no record
        )
        if "LastEvaluatedKey" not in page:
            history = with_last_batch(records_from_items(items), run.last_batch, run.generation)
            return run, history, items
        req = {**req, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def redrive(ddb: Any, table: str, clock: Clock, workflow_id: str, *, grace_ms: int) -> Run:
    """Reopen a failed or cancelled run (see the module doc). ConflictError (409)
    for a run in any other status, or when a concurrent change won; nothing is
    written then."""
    run, history, items = _run_and_history(ddb, table, workflow_id)
    if run.status not in RECOVERY["redrive"]:
        raise ConflictError(
            f"workflow run {workflow_id!r} is {run.status.value}: only a failed, timed-out "
            "or cancelled run can be redriven"
        )
    removed = to_remove(history)
    if len(removed) > MAX_REDRIVE_REMOVALS:
        raise ConflictError(
            f"workflow run {workflow_id!r} has {len(removed)} failed records; a redrive "
            f"removes at most {MAX_REDRIVE_REMOVALS} (fork it instead)"
        )
    now = clock.now_ms()
    deadline = None
    if run.deadline_at is not None:  # the same execution timeout again, from now
        deadline = now + max(1000, run.deadline_at - run.created_at)
    final = redrive_request(
        table, run, removed, now=now, due_at=now + grace_ms, deadline_at=deadline
    )["TransactItems"]
    carries = carry_over(table, kept_items(items, removed), run.redrive_count + 1)
    # The carries that do not fit beside the run's update go first, in their own
    # transactions: until the last one lands the run is still ended in its old
    # attempt, whose readers keep the carried records (an attempt at or above
    # theirs), so a redrive that stops half-way changes nothing a reader sees.
    room = TRANSACTION_ITEMS - len(final)
    first, last = carries[: max(0, len(carries) - room)], carries[max(0, len(carries) - room) :]
    try:
        for i in range(0, len(first), TRANSACTION_ITEMS):
            ddb.transact_write_items(TransactItems=first[i : i + TRANSACTION_ITEMS])
        ddb.transact_write_items(TransactItems=final + last)
    except Exception as e:
        code = getattr(e, "response", {}).get("Error", {}).get("Code")
        if code == "TransactionCanceledException":
            raise ConflictError(
                f"workflow run {workflow_id!r} changed while it was being redriven "
                "(a concurrent redrive?); nothing was written"
            ) from None
        raise
    resp = ddb.get_item(TableName=table, Key=run_key(workflow_id), ConsistentRead=True)
    return run_from_item(resp["Item"])


def fork(
    ddb: Any,
    table: str,
    clock: Clock,
    workflow_id: str,
    *,
    from_operation: str,
    input_text: str | None,
    new_id: str | None,
) -> Run:
    """A new pending run with the records of `workflow_id` before `from_operation`
    (see `fork_prefix`). The caller dispatches it."""
    if new_id is not None and not WORKFLOW_ID_RE.fullmatch(new_id):
        raise BadInputError(f"{new_id!r} is not a valid workflow id")
    run, history, _ = _run_and_history(ddb, table, workflow_id)
    # A run that continued as new: its current generation's ids carry the
    # generation's scope ("~2.3"); the fork is a generation 0 ("3").
    prefix = generation_scope(run.generation) + "." if run.generation else ""
    shown = from_operation
    if prefix and not from_operation.startswith(prefix):
        from_operation = prefix + from_operation
    ids = {rec.op_id for rec in history}
    if from_operation not in ids and not any(op.startswith(from_operation + ".") for op in ids):
        raise BadInputError(
            f"workflow run {workflow_id!r} has no operation {shown!r}; "
            "see GET /workflows/{id}/steps for the ids"
        )
    kept = [
        dataclasses.replace(rec, op_id=rec.op_id[len(prefix) :])
        for rec in fork_prefix(history, from_operation)
    ]
    target = new_id or f"{workflow_id[:100]}-fork-{uuid.uuid4().hex[:8]}"
    now = clock.now_ms()
    new = Run(
        id=target,
        name=run.name,
        status=Status.PENDING,
        input=run.input if input_text is None else input_text,
        created_at=now,
        updated_at=now,
        deadline_at=None
        if run.deadline_at is None
        else now + max(1000, run.deadline_at - run.created_at),
        forked_from={"id": workflow_id, "operation": shown},
    )
    item = new_run_item(new)
    # epoch 1: the first claim (epoch 2) loads the copied history, which a
    # brand-new run (first claim at epoch 1) skips.
    item["epoch"] = to_attr(1)
    item["forked_from"] = to_attr(new.forked_from)
    item["forking"] = to_attr(True)
    existing = ddb.get_item(TableName=table, Key=run_key(target), ConsistentRead=True)
    if "Item" in existing:
        # The same fork, stopped half-way before: complete it. Anything else is a
        # taken id, refused before anything is written.
        old = existing["Item"]
        if "forking" not in old or old.get("forked_from") != item["forked_from"]:
            raise ConflictError(f"workflow id {target!r} is already used")
        item = old
    else:
        try:
            ddb.put_item(**q.put_new_run(table, item))
        except Exception as e:
            if getattr(e, "response", {}).get("Error", {}).get("Code") == (
                "ConditionalCheckFailedException"
            ):
                raise ConflictError(f"workflow id {target!r} is already used") from None
            raise

    # One PutItem per record, COPY_THREADS at a time: the API role has no
    # BatchWriteItem (docs/security.md). Plain puts, as the copy is idempotent:
    # the same fork again writes the same records.
    def copy(rec: StepRecord) -> None:
        ddb.put_item(TableName=table, Item=step_item(target, rec))

    with ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="fork") as pool:
        list(pool.map(copy, kept))  # the first error, if any, is raised here
    # Every record is in: the run may be claimed. A concurrent completion of the
    # same fork that removed the mark first is as good.
    try:
        ddb.update_item(
            TableName=table,
            Key=run_key(target),
            UpdateExpression="REMOVE #frk",
            ConditionExpression="attribute_exists(#frk)",
            ExpressionAttributeNames={"#frk": "forking"},
        )
    except Exception as e:
        if getattr(e, "response", {}).get("Error", {}).get("Code") != (
            "ConditionalCheckFailedException"
        ):
            raise
    del item["forking"]
    return run_from_item(item)
