"""The sweeper's writes: re-arming a due run, putting a run it found in its walk
into the due index, its walk's progress mark, and the terminal writes it makes
itself (a poison message's run, an execution timeout). Pure, as
`requests.py`: each condition is on what the sweeper read, so a run that moved
meanwhile is left to its owner.
"""

from __future__ import annotations

from typing import Any

from .. import resources as r
from ..model import ErrorInfo, Status
from .codec import run_key, to_attr, to_item
from .requests import _due, _update, terminal_write


def rearm(
    table: str,
    workflow_id: str,
    *,
    epoch: int,
    status: Status,
    old_due: int,
    due_at: int,
    count: bool = True,
) -> dict[str, Any]:
    # The sweeper moves due_at forward before it re-sends, so the next sweep does
    # not send again at once. Conditioned on what it read (epoch, status and the
    # old due_at): if the run moved meanwhile, or a second sweeper got there
    # first, this sweep leaves it alone. `count`: a re-send (the pending backoff
    # counts them); without it, only the due time moves (a send that failed
    # makes the run due again at the next sweep).
    values: dict[str, Any] = {
        ":due": due_at,
        ":epoch": epoch,
        ":status": status.value,
        ":old": old_due,
    }
    update = "SET #da = :due"
    if count:
        update += " ADD #dc :one"
        values[":one"] = 1
    return _update(
        table, run_key(workflow_id), update, "#ep = :epoch AND #st = :status AND #da = :old", values
    )


def promote(
    table: str, workflow_id: str, *, epoch: int, status: Status, due_at: int, dispatch: bool
) -> dict[str, Any]:
    # The sweeper's walk of `by_created` puts a run that is still unfinished after
    # the grace period into `by_due` (a lost start, a slow run). Conditioned on
    # what it read (epoch, status) and on the run being outside the index: if it
    # moved meanwhile, or parked (which puts it in the index), or a second sweeper
    # got there first, this write fails and the sweeper decides again on a
    # strongly consistent read.
    values: dict[str, Any] = {":epoch": epoch, ":status": status.value}
    update = "SET " + _due(workflow_id, due_at, values)
    if dispatch:
        update += " ADD #dc :one"
        values[":one"] = 1
    return _update(
        table,
        run_key(workflow_id),
        update,
        "#ep = :epoch AND #st = :status AND attribute_not_exists(#da)",
        values,
    )


def advance_sweep_mark(table: str, shard_no: int, *, mark: str, now: int) -> dict[str, Any]:
    # The walk's progress only moves forward: two sweepers at once cannot move it
    # back past runs the other has not settled yet.
    return {
        "TableName": table,
        "Key": to_item({r.PK: r.SWEEPER_PK, r.SK: r.sweep_mark_sk(shard_no)}),
        "UpdateExpression": "SET #mk = :mark, #ua = :now",
        "ConditionExpression": "attribute_not_exists(#mk) OR #mk < :mark",
        "ExpressionAttributeNames": {"#mk": r.SWEEP_MARK_ATTRIBUTE, "#ua": "updated_at"},
        "ExpressionAttributeValues": {":mark": to_attr(mark), ":now": to_attr(now)},
    }


def fail_poisoned(
    table: str,
    workflow_id: str,
    *,
    epoch: int,
    now: int,
    error: ErrorInfo,
    notify_due: int | None = None,
) -> dict[str, Any]:
    # The sweeper fails a run whose message reached the dead-letter queue while no
    # worker holds it: its workflow kept killing the worker process (or the claim
    # never got through), delivery after delivery. Conditioned on what the sweeper
    # read: the epoch and status (a worker that claimed the run since then owns it)
    # and an expired lease (an owner that was only slow and heartbeat since then is
    # alive). Closes: failing a run someone runs now, and two sweepers failing it
    # twice (the second finds the status changed).
    return terminal_write(
        table,
        workflow_id,
        status=Status.FAILED,
        error=error,
        now=now,
        condition="#ep = :epoch AND #st = :running AND #lu < :now",
        values={":epoch": epoch, ":running": Status.RUNNING.value},
        notify_due=notify_due,
        return_values="ALL_NEW",  # the ended run, for the effects after the end
    )


def fail_timed_out(
    table: str,
    workflow_id: str,
    *,
    epoch: int,
    seen: Status,
    now: int,
    error: ErrorInfo,
    notify_due: int | None = None,
) -> dict[str, Any]:
    # The sweeper fails a run that no worker holds (pending, sleeping, waiting)
    # once its execution deadline has passed: a run of a name no worker serves
    # would otherwise stay pending forever. Conditioned on the status and epoch
    # as read and on the deadline: a claim since the read owns the run (and the
    # claim enforces the deadline itself).
    return terminal_write(
        table,
        workflow_id,
        status=Status.FAILED,
        error=error,
        now=now,
        condition="#st = :seen AND #ep = :epoch AND #dl <= :now",
        values={":seen": seen.value, ":epoch": epoch},
        notify_due=notify_due,
        return_values="ALL_NEW",  # the ended run, for the effects after the end
    )
