"""Child runs (`ctx.invoke`): how a child's end reaches its parent.

A child is an ordinary run with `parent_id` and `parent_op`. Its terminal
write (by its worker, a cancel, or the sweeper) keeps it in the sweeper's
index (`notify_due`); then, as an effect after the write, whoever ended it
delivers the end to the parent: one transaction marks the child
`parent_notified` (once: a second notifier's transaction fails whole) and
stores the child's outcome in the parent's inbox as the engine's signal
`sys:child:<op>`, waking the parent if it waits for it, exactly as a signal
from the API does (`send_signal`: the park race is closed the same way). The
parent's `invoke` operation consumes that signal and records the outcome. If
the effect is lost (a crash between the terminal write and the notification),
the sweeper finds the terminal child in its index and delivers it.

Pure: builds requests; the stores send them.
"""

from __future__ import annotations

import json
from typing import Any

from .model import Run, Signal, Status, child_signal
from .payloads import is_pointer
from .store import endings

# A child's end is due in the sweeper's index this long after its terminal
# write: the notifier normally clears it first.
NOTIFY_GRACE_MS = 5_000


def notify_due(run: Run, now: int) -> int | None:
    """When a terminal write should leave the run due in the sweeper's index: a
    child whose parent waits to be told stays due until it is; a distributed
    map's child (its parent polls) and a top-level run leave the index."""
    notifies = run.parent_id is not None and not run.parent_polls
    return now + NOTIFY_GRACE_MS if notifies else None


def cancel_request(
    table: str, run: Run, *, reason: str, now: int
) -> tuple[str, dict[str, Any] | None]:
    """The one decision of a cancel, for the API's store and for a worker that
    cancels its children: (outcome, the UpdateItem to send, or None).

    - terminal: "already_<status>", nothing to write;
    - running with a cancel already requested: "already_requested";
    - running: "requested", the request its owner delivers at its next durable call;
    - pending or parked: "cancelled", the terminal write itself.
    Every request is conditioned on the status and epoch read, so a run that
    moved since is refused and the caller reads it again.
    """
    if run.status.terminal:
        return f"already_{run.status.value}", None
    if run.status == Status.RUNNING:
        if run.cancel_requested is not None:
            return "already_requested", None
        return "requested", endings.request_cancel(table, run.id, epoch=run.epoch, reason=reason)
    req = endings.cancel_parked(
        table,
        run.id,
        epoch=run.epoch,
        seen=run.status,
        now=now,
        reason=reason,
        notify_due=notify_due(run, now),
    )
    return "cancelled", req


def outcome_payload(child: Run) -> str:
    """What the parent receives: the child's status, output (JSON) and error.

    An offloaded output (orchestrator/payloads.py) travels as its pointer,
    `output_ref`, with `output` null: the signal and the parent's record stay
    small whatever the output's size, and the parent's worker reads the value
    (`worker/operations/invoke.py`), as it reads any other offloaded value."""
    ref = child.output if is_pointer(child.output) else None
    return json.dumps(
        {
            "child_id": child.id,
            "status": child.status.value,
            "output": json.loads(child.output) if child.output is not None and not ref else None,
            "error": child.error.as_dict() if child.error else None,
            **({"output_ref": ref} if ref else {}),
        },
        separators=(",", ":"),
    )


def notify_request(
    table: str, child: Run, parent: Run | None, *, now: int, grace_ms: int
) -> tuple[dict[str, Any], bool]:
    """(the TransactWriteItems request, whether it wakes the parent)."""
    assert child.parent_op is not None and child.parent_id is not None
    if parent is None or parent.status.terminal:
        req = endings.notify_parent(
            table,
            child.id,
            parent_id=child.parent_id,
            signal=None,
            prev_seq=0,
            seen_status=Status.COMPLETED,
            epoch=0,
            now=now,
            wake=False,
            due_at=now,
        )
        return req, False
    name = child_signal(child.parent_op)
    sig = Signal(name=name, seq=parent.signal_seq + 1, payload=outcome_payload(child), sent_at=now)
    wake = parent.status == Status.WAITING and name in parent.wait_signals
    req = endings.notify_parent(
        table,
        child.id,
        parent_id=parent.id,
        signal=sig,
        prev_seq=parent.signal_seq,
        seen_status=parent.status,
        epoch=parent.epoch,
        now=now,
        wake=wake,
        due_at=now + grace_ms,
        attempt=parent.redrive_count,
    )
    return req, wake


def child_already_notified(error_response: dict[str, Any]) -> bool:
    """A cancelled notify transaction: True if the child's own condition failed
    (someone delivered its end already), False if the parent moved (read again)."""
    reasons = error_response.get("CancellationReasons") or []
    return bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"
