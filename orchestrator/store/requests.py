"""Every state-changing DynamoDB request, as the keyword arguments of the
low-level client call. Pure: both the synchronous store (boto3) and the
worker's asyncio store (aioboto3) send exactly these.

Each condition expression says which race it closes. The fencing token is
`epoch`: a claim increments it, and every later write by the owner is
conditioned on the value it got, so an owner whose lease was taken over can
change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import resources as r
from ..model import MAX_WORKER_NAMES, ClaimFailure, ErrorInfo, Status
from .codec import (
    run_key,
    shard,
    to_attr,
)

# Attribute names go through placeholders: several are DynamoDB reserved words.
_NAMES = {
    "#st": "status",
    "#nm": "name",
    "#ow": "owner",
    "#ep": "epoch",
    "#lu": "lease_until",
    "#wa": "wake_at",
    "#ws": "wait_signal",
    "#ua": "updated_at",
    "#ss": "signal_seq",
    "#dp": r.BY_DUE.partition_key,
    "#da": r.BY_DUE.sort_key,
    "#out": "output",
    "#err": "error",
    "#pk": r.PK,
    "#sk": r.SK,
    "#res": "resolved",
    "#cat": "consumed_at",
    "#ttl": r.TTL_ATTRIBUTE,
    "#dc": "dispatches",
    "#cr": "cancel_requested",
    "#tm": "timer",
    "#att": "attempts",
    "#dl": "deadline_at",
    "#bid": "build_id",
    "#tq": "task_queue",
    "#pin": "pinned",
    "#lb": "last_batch",
    "#frk": "forking",
    "#cf": "claim_failure",
    "#ic": "inbox_count",
    "#ib": "inbox_bytes",
}


def _due(workflow_id: str, due_at: int, values: dict[str, Any], *, keep: bool = False) -> str:
    """The SET clause that puts a run in the sweeper's index (or moves it there;
    with `keep`, a due time already set stays).

    Both keys are set every time: a run starts outside `by_due` (no due_pk), so
    whichever write puts it in first must write the partition key too. Writing
    the same due_pk again is not an index change.
    """
    values[":dpk"] = r.due_pk(shard(workflow_id, r.DUE_SHARDS))
    values[":due"] = due_at
    return "#dp = :dpk, #da = " + ("if_not_exists(#da, :due)" if keep else ":due")


def _names(*expressions: str) -> dict[str, str]:
    text = " ".join(expressions)
    return {k: v for k, v in _NAMES.items() if k in text}


def _update(
    table: str,
    key: dict[str, Any],
    update: str,
    condition: str,
    values: dict[str, Any],
    *,
    return_values: str = "NONE",
) -> dict[str, Any]:
    req: dict[str, Any] = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": update,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": _names(update, condition),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if values:
        req["ExpressionAttributeValues"] = {k: to_attr(v) for k, v in values.items()}
    if return_values != "NONE":
        req["ReturnValues"] = return_values
    return req


def put_new_run(table: str, item: dict[str, Any]) -> dict[str, Any]:
    # Closes: two starts with the same id. The first write wins; the loser gets
    # the stored run back (ALL_OLD) to compare inputs without another read.
    return {
        "TableName": table,
        "Item": item,
        "ConditionExpression": "attribute_not_exists(#pk)",
        "ExpressionAttributeNames": {"#pk": r.PK},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _served(names: list[str], queues: Mapping[str, list[str]] | None) -> tuple[str, dict[str, Any]]:
    """The claim's "this worker runs it" clause: the run's name among the names the
    worker serves on the run's task queue (a run without `task_queue` is on
    "default"). Without `queues`, any task queue (callers that predate them)."""
    name_values = {f":n{i}": n for i, n in enumerate(names)}
    index = {n: k for k, n in name_values.items()}
    if queues is None:
        return "#nm IN (" + ", ".join(name_values) + ")", name_values
    # Only the names some polled queue serves are bound: DynamoDB refuses a value
    # the expressions do not use (a module that declares a workflow on a queue
    # this worker does not poll would otherwise fail every claim).
    parts, values = [], {}
    for i, (queue, served) in enumerate(sorted(queues.items())):
        if not served:
            continue
        match = "attribute_not_exists(#tq)" if queue == r.DEFAULT_TASK_QUEUE else f"#tq = :q{i}"
        if queue != r.DEFAULT_TASK_QUEUE:
            values[f":q{i}"] = queue
        for n in served:
            values[index[n]] = n
        parts.append(f"{match} AND #nm IN (" + ", ".join(index[n] for n in served) + ")")
    if not parts:
        raise ValueError("a worker serves at least one workflow on one task queue")
    # AND binds tighter than OR; DynamoDB refuses parentheses that change nothing.
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")", values


def claim(
    table: str,
    workflow_id: str,
    *,
    owner: str,
    now: int,
    lease_ms: int,
    names: list[str],
    build_id: str | None = None,
    queues: Mapping[str, list[str]] | None = None,
    pinned_names: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    if not 1 <= len(names) <= MAX_WORKER_NAMES:
        raise ValueError(f"a worker serves between 1 and {MAX_WORKER_NAMES} workflow names")
    if pinned_names and build_id is None:
        raise ValueError("a worker that runs pinned workflows needs a build id")
    served, name_values = _served(names, queues)
    # Closes: two workers claiming one run. Exactly one conditional update can see
    # the run runnable; it bumps the epoch, so the other's condition fails.
    # Runnable means: pending; running with an expired lease (its owner died or
    # released it); parked with a wake time that has passed. A parked run whose
    # time has not come, and a run another worker holds, are refused, and so is a
    # workflow name this worker does not serve. A terminal run never matches.
    # The worker serves the run: its name, on its task queue (a run on "gpu" is never
    # claimed by a worker that does not serve "gpu", whatever queue the message took).
    # A fork's run is claimed once its records are all copied (`forking` gone).
    condition = (
        f"attribute_exists(#pk) AND attribute_not_exists(#frk) AND {served} AND ("
        "#st = :pending OR (#st = :running AND #lu < :now) "
        "OR ((#st = :sleeping OR #st = :waiting) AND #wa <= :now))"
    )
    # Closes: a pinned run claimed by a worker of another build (a stray message, a
    # sender that did not know the run's build queue, a migrate racing a receive).
    # A pinned run is claimed only by its own build; a worker without a build id
    # claims no pinned run.
    condition += (
        " AND (attribute_not_exists(#pin) OR #bid = :bid)"
        if build_id is not None
        else " AND attribute_not_exists(#pin)"
    )
    if pinned_names:
        # Closes the window between a pinned workflow's first claim and its `pin`
        # write: a run of a name this worker pins, first claimed by another build
        # (whose worker died before it wrote `pinned`), is that build's.
        index = {n: k for k, n in name_values.items()}
        listed = ", ".join(index[n] for n in pinned_names if n in index)
        if listed:
            condition += (
                f" AND (NOT (#nm IN ({listed})) OR attribute_not_exists(#bid) OR #bid = :bid)"
            )
    update = (
        "SET #st = :running, #ow = :owner, #lu = :lease, #ep = #ep + :one, #ua = :now "
        "REMOVE #wa, #ws"
    )
    values = {
        ":pending": Status.PENDING.value,
        ":running": Status.RUNNING.value,
        ":sleeping": Status.SLEEPING.value,
        ":waiting": Status.WAITING.value,
        ":now": now,
        ":lease": now + lease_ms,
        ":one": 1,
        ":owner": owner,
        **name_values,
    }
    if build_id is not None:  # the first claiming build is kept: a run is "of" that build
        update = update.replace(" REMOVE", ", #bid = if_not_exists(#bid, :bid) REMOVE")
        values[":bid"] = build_id
    return _update(table, run_key(workflow_id), update, condition, values, return_values="ALL_NEW")


def pin(table: str, workflow_id: str, *, epoch: int, build_id: str) -> dict[str, Any]:
    """Mark a run of a pinned workflow as pinned to the build that claimed it (the
    owner, right after its first claim of the run). From then on its messages go to
    "<task queue>@<build>" and only that build's workers claim it.
    Closes: a stale owner pinning a run another worker holds now (epoch), and
    pinning to a build the run is not of."""
    return _update(
        table,
        run_key(workflow_id),
        "SET #pin = :true",
        "#ep = :epoch AND #st = :running AND #bid = :bid",
        {":true": True, ":epoch": epoch, ":running": Status.RUNNING.value, ":bid": build_id},
        return_values="ALL_NEW",
    )


def migrate(
    table: str,
    workflow_id: str,
    *,
    seen_status: Status,
    epoch: int,
    from_build: str,
    to_build: str,
    now: int,
) -> dict[str, Any]:
    """Move a pinned run to another build (`orchestrator migrate`). The epoch moves
    on, like a claim's, so any write prepared against the run as it was (a
    signal's wake-up, a cancel, the sweeper's re-arm) fails and is decided again
    on a fresh read, which routes to the new build.
    Closes: migrating a run a worker claimed since the read (status and epoch as
    read; a running run only once its owner's lease has expired), two migrates
    at once (epoch), and migrating a run that is not pinned to `from_build`."""
    values: dict[str, Any] = {
        ":seen": seen_status.value,
        ":epoch": epoch,
        ":from": from_build,
        ":to": to_build,
        ":true": True,
        ":one": 1,
        ":now": now,
    }
    condition = "#st = :seen AND #ep = :epoch AND #pin = :true AND #bid = :from"
    if seen_status == Status.RUNNING:
        condition += " AND #lu < :now"  # a live lease is refused: its owner is working
    return _update(
        table,
        run_key(workflow_id),
        "SET #bid = :to, #ep = #ep + :one, #ua = :now",
        condition,
        values,
        return_values="ALL_NEW",
    )


def heartbeat(table: str, workflow_id: str, *, epoch: int, lease_until: int) -> dict[str, Any]:
    # Closes: a stale owner extending a lease it lost. Only the holder of the
    # current epoch extends; anyone else learns here that the run is gone.
    # ALL_NEW carries cancel_requested back without a read.
    return _update(
        table,
        run_key(workflow_id),
        "SET #lu = :lease",
        "#ep = :epoch AND #st = :running",
        {":lease": lease_until, ":epoch": epoch, ":running": Status.RUNNING.value},
        return_values="ALL_NEW",
    )


def _timer_clause(timer: str | None, values: dict[str, Any]) -> tuple[str, str]:
    """(SET part, REMOVE part) recording which schedule will wake the run, so a
    cancel can delete it."""
    if timer is None:
        return "", ", #tm"
    values[":tm"] = timer
    return ", #tm = :tm", ""


def park_sleep(
    table: str,
    workflow_id: str,
    *,
    epoch: int,
    now: int,
    wake_at: int,
    due_at: int,
    timer: str | None = None,
) -> dict[str, Any]:
    # Closes: a stale owner parking a run someone else now runs (epoch), parking a
    # run that is no longer running, and parking a run whose cancel was requested
    # after the owner last looked (the owner delivers the cancel instead).
    values: dict[str, Any] = {
        ":sleeping": Status.SLEEPING.value,
        ":wake": wake_at,
        ":now": now,
        ":epoch": epoch,
        ":running": Status.RUNNING.value,
    }
    set_tm, remove_tm = _timer_clause(timer, values)
    due = _due(workflow_id, due_at, values)
    return _update(
        table,
        run_key(workflow_id),
        f"SET #st = :sleeping, #wa = :wake, {due}, #ua = :now{set_tm} "
        f"REMOVE #ow, #lu, #cf{remove_tm}",
        "#ep = :epoch AND #st = :running AND attribute_not_exists(#cr)",
        values,
    )


def park_wait(
    table: str,
    workflow_id: str,
    *,
    epoch: int,
    now: int,
    signal: str,
    seen_seq: int,
    deadline: int | None,
    due_at: int | None,
    timer: str | None = None,
) -> dict[str, Any]:
    # Closes the race between a signal and the park: the API bumps signal_seq in
    # the same transaction that stores a signal. If any signal arrived after the
    # worker last looked at the inbox, signal_seq moved and the park fails, so the
    # worker looks again instead of sleeping on a signal it has not seen.
    # A signal that arrives after this write sees status waiting and wakes the run.
    values: dict[str, Any] = {
        ":waiting": Status.WAITING.value,
        ":sig": signal,
        ":now": now,
        ":epoch": epoch,
        ":running": Status.RUNNING.value,
        ":seen": seen_seq,
    }
    set_tm, remove_tm = _timer_clause(timer, values)
    if deadline is not None:
        assert due_at is not None
        due = _due(workflow_id, due_at, values)
        update = (
            f"SET #st = :waiting, #ws = :sig, #ua = :now, #wa = :wake, {due}{set_tm} "
            f"REMOVE #ow, #lu, #cf{remove_tm}"
        )
        values[":wake"] = deadline
    else:
        # No timeout: the only way forward is a signal, whose delivery puts the
        # run in the sweeper's index; until then it is out of it.
        update = (
            f"SET #st = :waiting, #ws = :sig, #ua = :now{set_tm} "
            f"REMOVE #ow, #lu, #da, #cf{remove_tm}"
        )
    return _update(
        table,
        run_key(workflow_id),
        update,
        "#ep = :epoch AND #st = :running AND #ss = :seen AND attribute_not_exists(#cr)",
        values,
    )


def finish(
    table: str,
    workflow_id: str,
    *,
    epoch: int,
    now: int,
    status: Status,
    output: str | None = None,
    error: ErrorInfo | None = None,
    notify_due: int | None = None,
    last_batch: str | None = None,
) -> dict[str, Any]:
    # Closes: a stale owner completing a run it lost, and a second completion.
    # `last_batch` (batched checkpoints, `codec.last_batch_text`): the results not
    # yet written ride on this write, fenced by its condition, instead of a
    # transaction of their own just before it.
    sets: dict[str, Any] = {}
    if last_batch is not None:
        sets["#lb"] = last_batch
    if output is not None:
        sets["#out"] = output
    return terminal_write(
        table,
        workflow_id,
        status=status,
        error=error,
        now=now,
        condition="#ep = :epoch AND #st = :running",
        values={":epoch": epoch, ":running": Status.RUNNING.value},
        sets=sets,
        notify_due=notify_due,
    )


def terminal_write(
    table: str,
    workflow_id: str,
    *,
    status: Status,
    error: ErrorInfo | None,
    now: int,
    condition: str,
    values: dict[str, Any],
    sets: dict[str, Any] | None = None,
    notify_due: int | None = None,
    return_values: str = "NONE",
) -> dict[str, Any]:
    """The one shape of every write that ends a run (the owner's finish, a cancel
    of a parked run, a terminate, the sweeper's poison and timeout failures):
    status, error and updated_at set (and `sets`, name placeholder to value);
    owner, lease, wake and wait fields, the claim failure count and the inbox
    counters removed (an ended run takes no signal; what its inbox still holds is
    expired by whoever ended it: `record_requests.expire_signal`); the run out of the sweeper's
    index, unless it is a child run (`notify_due`), which stays there until its
    parent is told. `condition` on `values` is what closes each caller's race."""
    assert status.terminal
    values = {**values, ":status": status.value, ":now": now}
    clauses = ["#st = :status", "#ua = :now"]
    if error is not None:
        clauses.append("#err = :err")
        values[":err"] = error.as_dict()
    for i, (name, value) in enumerate((sets or {}).items()):
        clauses.append(f"{name} = :s{i}")
        values[f":s{i}"] = value
    set_due, remove_due = _end_due(workflow_id, values, notify_due)
    update = (
        "SET "
        + ", ".join(clauses)
        + f"{set_due} REMOVE #ow, #lu, {remove_due}#wa, #ws, #tm, #cf, #ic, #ib"
    )
    return _update(
        table, run_key(workflow_id), update, condition, values, return_values=return_values
    )


def _end_due(workflow_id: str, values: dict[str, Any], notify_due: int | None) -> tuple[str, str]:
    """(SET part, REMOVE part) of a terminal write for the sweeper's index: a run
    leaves it; a child run moves to `notify_due` instead, so that the sweeper
    tells its parent if the worker that ended it could not (`notify_parent`)."""
    if notify_due is None:
        return "", "#dp, #da, "
    return ", " + _due(workflow_id, notify_due, values), ""


def release(table: str, workflow_id: str, *, epoch: int, due_at: int) -> dict[str, Any]:
    # A draining worker hands the run back: the lease expires now, so the next
    # claim succeeds at once. Conditioned on the epoch like every owner write.
    # The run enters the sweeper's index if it is not there yet (a run past the
    # sweeper's walk would otherwise depend on the message alone).
    values: dict[str, Any] = {":zero": 0, ":epoch": epoch, ":running": Status.RUNNING.value}
    due = _due(workflow_id, due_at, values, keep=True)
    return _update(
        table,
        run_key(workflow_id),
        f"SET #lu = :zero, {due} REMOVE #ow",
        "#ep = :epoch AND #st = :running",
        values,
    )


def record_claim_failure(
    table: str,
    workflow_id: str,
    *,
    epoch: int,
    now: int,
    failure: ClaimFailure,
    retry_at: int,
    due_at: int,
) -> dict[str, Any]:
    # A claim ended by a non-transient error before the run could go on (a value
    # gone from S3, an input model that cannot be built): the owner records the
    # error and the count of claims in a row it ended, and keeps the lease until
    # `retry_at`, when the next claim may try again (a backoff: a duplicate message
    # meanwhile is refused by the lease). Closes: a stale owner counting a failure
    # into a run someone else holds now (epoch), and counting into a run that ended
    # or parked meanwhile (status). The run enters the sweeper's index if it is not
    # there yet, as at a release, so a lost message cannot strand it.
    values: dict[str, Any] = {
        ":cf": failure.as_dict(),
        ":lease": retry_at,
        ":now": now,
        ":epoch": epoch,
        ":running": Status.RUNNING.value,
    }
    due = _due(workflow_id, due_at, values, keep=True)
    return _update(
        table,
        run_key(workflow_id),
        f"SET #cf = :cf, #lu = :lease, #ua = :now, {due}",
        "#ep = :epoch AND #st = :running",
        values,
    )
