"""How a run ends other than by its owner's finish: a cancel (requested of a
running run, or the terminal write of one no worker holds), a terminate, and
a child's end reaching its parent. Pure, as `requests.py`; the decision of
which to send is `orchestrator/children.cancel_request`.
"""

from __future__ import annotations

from typing import Any

from .. import resources as r
from ..model import ErrorInfo, Signal, Status
from .codec import run_key, to_attr
from .record_requests import send_signal
from .requests import _update, terminal_write


def cancel_parked(
    table: str,
    workflow_id: str,
    *,
    epoch: int,
    seen: Status,
    now: int,
    reason: str,
    notify_due: int | None = None,
) -> dict[str, Any]:
    # A run that no worker holds (pending, sleeping, waiting) is cancelled at once.
    # Closes: a claim racing the cancel. Conditioned on the status and epoch as
    # read: if a worker claimed the run meanwhile, this fails and the cancel is
    # delivered through the owner instead (`request_cancel`).
    return terminal_write(
        table,
        workflow_id,
        status=Status.CANCELLED,
        error=ErrorInfo("Cancelled", reason),
        now=now,
        condition="#st = :seen AND #ep = :epoch",
        values={":seen": seen.value, ":epoch": epoch},
        sets={"#cr": reason},
        notify_due=notify_due,
        return_values="ALL_NEW",
    )


def notify_parent(
    table: str,
    child_id: str,
    *,
    parent_id: str,
    signal: Signal | None,
    prev_seq: int,
    seen_status: Status,
    epoch: int,
    now: int,
    wake: bool,
    due_at: int,
    attempt: int = 0,
) -> dict[str, Any]:
    """One transaction: mark the child's end delivered and store it in the
    parent's inbox as the engine's signal `sys:child:<op>` (payload: the child's
    outcome), waking the parent if it waits for it (the `send_signal` write).

    Closes: delivering one child's end twice (the child item's
    `parent_notified` is written once: a second notifier's transaction fails
    whole, so the parent's inbox gets one item and one wake-up), and every race
    `send_signal` closes on the parent's side. With `signal` None (the parent
    has ended) only the child is marked. The child leaves the sweeper's index.
    """
    child = {
        "Update": {
            "TableName": table,
            "Key": run_key(child_id),
            "UpdateExpression": "SET #pn = :t REMOVE #dp, #da",
            "ConditionExpression": "attribute_exists(#pk) AND attribute_not_exists(#pn)",
            "ExpressionAttributeNames": {
                "#pn": "parent_notified",
                "#dp": r.BY_DUE.partition_key,
                "#da": r.BY_DUE.sort_key,
                "#pk": r.PK,
            },
            "ExpressionAttributeValues": {":t": to_attr(True)},
        }
    }
    if signal is None:
        return {"TransactItems": [child]}
    parent = send_signal(
        table,
        parent_id,
        signal=signal,
        prev_seq=prev_seq,
        seen_status=seen_status,
        epoch=epoch,
        now=now,
        wake=wake,
        due_at=due_at,
        attempt=attempt,  # counted in the parent's inbox, never refused: one per child
    )
    return {"TransactItems": [child, *parent["TransactItems"]]}


def request_cancel(table: str, workflow_id: str, *, epoch: int, reason: str) -> dict[str, Any]:
    # A running run is told through its lease: the owner's heartbeat reads
    # cancel_requested back, and its parks are conditioned on its absence, so the
    # owner cannot park its way past a cancel. Closes: a request against a run
    # that finished or changed hands since it was read.
    return _update(
        table,
        run_key(workflow_id),
        "SET #cr = :reason",
        "#st = :running AND #ep = :epoch",
        {":reason": reason, ":running": Status.RUNNING.value, ":epoch": epoch},
        return_values="ALL_NEW",
    )


def terminate(
    table: str, workflow_id: str, *, epoch: int, seen: Status, now: int, reason: str
) -> dict[str, Any]:
    # Terminate: end the run now, whatever it is doing, with no cleanup. The epoch
    # moves on, so an owner still running it is fenced off: its next write (a
    # heartbeat, a park, the finish) fails and it abandons the run. Closes: two
    # state changes racing (a claim, a park, a finish since the read): conditioned
    # on the status and epoch as read; the caller reads again and retries.
    return terminal_write(
        table,
        workflow_id,
        status=Status.CANCELLED,
        error=ErrorInfo("Terminated", reason),
        now=now,
        condition="#st = :seen AND #ep = :epoch",
        values={":seen": seen.value, ":epoch": epoch},
        sets={"#cr": reason, "#ep": epoch + 1},
        return_values="ALL_NEW",
    )
