"""Callbacks in the store: the token lookup item, and the API's completions and
heartbeats.

A callback is two items, written in one transaction by the worker:

- the operation record at the callback's id in the run's partition (kind
  "callback", its token, its deadline), first write wins;
- the lookup item `pk = CB#<token>, sk = CB`, which maps the token to (run id,
  operation id) and holds what the API must check without reading the run:
  `deadline_at` (0: no timeout), `heartbeat_ms` (0: none), `heartbeat_deadline`,
  `heartbeat_at`, and once completed `completed_at`.

A completion is stored as a signal named `sys:cb:<op id>` on the run, through
the same transaction as `POST /workflows/{id}/signals` (bump `signal_seq`, put
the signal, wake a run that waits for the name), with one more item in it: the
lookup item's update, conditioned on the callback being still open. So a
completion is accepted exactly once, never after the callback timed out, and
never without its signal (a crash cannot leave one without the other).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from .. import resources as r
from ..errors import ConflictError, NotFoundError
from ..model import RESERVED_SIGNAL_PREFIX, Signal, Status, StepRecord
from . import record_requests as rq
from .codec import from_item, step_item, to_attr, to_item
from .conditions import conditional_failed, old_item
from .sync import Store

# A token is secrets.token_urlsafe(24): 32 characters, 192 random bits. Anything that
# cannot be one is unknown (404) without a read.
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
# The lookup item expires this long after the callback's deadline (or its completion):
# by then the run can no longer use it. Without a timeout it lives a year.
LOOKUP_GRACE_S = 24 * 3600
COMPLETED_TTL_S = 7 * 24 * 3600
NO_TIMEOUT_TTL_S = 366 * 24 * 3600

_NAMES = {
    "#pk": r.PK,
    "#cat": "completed_at",
    "#dl": "deadline_at",
    "#hm": "heartbeat_ms",
    "#hd": "heartbeat_deadline",
    "#ha": "heartbeat_at",
    "#ttl": r.TTL_ATTRIBUTE,
    "#cl": "closed_at",
    "#cid": "completion_id",
}
# Open: the item exists (unknown or expired tokens have none), nobody completed it,
# the worker has not closed it (at a timeout), and neither its deadline nor its
# heartbeat deadline has passed on the caller's clock.
_OPEN = (
    "attribute_exists(#pk) AND attribute_not_exists(#cat) AND attribute_not_exists(#cl) "
    "AND (#dl = :zero OR #dl > :now) AND (#hm = :zero OR #hd > :now)"
)
_OPEN_NAMES = ("#pk", "#cat", "#cl", "#dl", "#hm", "#hd")


def callback_signal(op_id: str) -> str:
    """The reserved signal name a callback's completion is stored under."""
    return f"{RESERVED_SIGNAL_PREFIX}cb:{op_id}"


def token_prefix(token: str) -> str:
    """What logs show of a token: enough to tell callbacks apart, not to complete one."""
    return token[:6] + "…"


def lookup_key(token: str) -> dict[str, Any]:
    return to_item({r.PK: f"{r.CALLBACK_PK_PREFIX}{token}", r.SK: r.CALLBACK_SK})


@dataclass(frozen=True)
class CallbackRef:
    """The lookup item, as read."""

    token: str
    workflow_id: str
    op_id: str
    name: str
    deadline_at: int  # 0: no timeout
    heartbeat_ms: int  # 0: no heartbeat timeout
    heartbeat_deadline: int
    completed_at: int | None
    closed_at: int | None = None
    completion_id: str | None = None  # which request completed it

    @staticmethod
    def from_item(item: dict[str, Any]) -> CallbackRef:
        d = from_item(item)
        return CallbackRef(
            token=d[r.PK].removeprefix(r.CALLBACK_PK_PREFIX),
            workflow_id=d["workflow_id"],
            op_id=d["op_id"],
            name=d.get("name", ""),
            deadline_at=d.get("deadline_at", 0),
            heartbeat_ms=d.get("heartbeat_ms", 0),
            heartbeat_deadline=d.get("heartbeat_deadline", 0),
            completed_at=d.get("completed_at"),
            closed_at=d.get("closed_at"),
            completion_id=d.get("completion_id"),
        )

    def refusal(self, now: int) -> str | None:
        """Why a completion or heartbeat at `now` is refused (None: it is open)."""
        if self.completed_at is not None:
            return "the callback was already completed"
        at = now if self.closed_at is None else min(now, self.closed_at)
        overall = bool(self.deadline_at) and at >= self.deadline_at
        beat = bool(self.heartbeat_ms) and at >= self.heartbeat_deadline
        if beat and not overall:
            return "the callback timed out: no heartbeat within its heartbeat timeout"
        if overall or beat or self.closed_at is not None:
            return "the callback timed out"
        return None


# --- requests ----------------------------------------------------------------------------
def create(table: str, workflow_id: str, rec: StepRecord, *, heartbeat_ms: int) -> dict[str, Any]:
    """One transaction: the callback's operation record and its token lookup.

    Closes: two writers creating the callback at one id (a stale owner and the
    new one): the record's put is first-write-wins, and the loser's lookup item
    is not written either, so every lookup item names a recorded callback with
    the same token. The lookup's own condition never overwrites a token.
    """
    assert rec.callback_id is not None and rec.started_at is not None
    deadline = rec.wake_at or 0
    ttl = (
        deadline // 1000 + LOOKUP_GRACE_S if deadline else rec.started_at // 1000 + NO_TIMEOUT_TTL_S
    )
    lookup = {
        **lookup_key(rec.callback_id),
        **to_item(
            {
                "workflow_id": workflow_id,
                "op_id": rec.op_id,
                "name": rec.name,
                "created_at": rec.started_at,
                "deadline_at": deadline,
                "heartbeat_ms": heartbeat_ms,
                "heartbeat_deadline": rec.started_at + heartbeat_ms if heartbeat_ms else 0,
                r.TTL_ATTRIBUTE: ttl,
            }
        ),
    }
    # A record of an earlier run attempt (a redriven run's old owner, late) is no
    # record for this writer: replaced (record_requests.attempt_clauses).
    values: dict[str, Any] = {}
    _, older = rq.attempt_clauses(rec.run_attempt, values)
    record_put: dict[str, Any] = {
        "TableName": table,
        "Item": step_item(workflow_id, rec),
        "ConditionExpression": "attribute_not_exists(#sk)",
        "ExpressionAttributeNames": {"#sk": r.SK},
    }
    if older:
        record_put["ConditionExpression"] += f" OR {older}"
        record_put["ExpressionAttributeNames"]["#rat"] = "run_attempt"
        record_put["ExpressionAttributeValues"] = values
    return {
        "TransactItems": [
            {"Put": record_put},
            {
                "Put": {
                    "TableName": table,
                    "Item": lookup,
                    "ConditionExpression": "attribute_not_exists(#pk)",
                    "ExpressionAttributeNames": {"#pk": r.PK},
                }
            },
        ]
    }


def complete(table: str, token: str, *, now: int, completion_id: str) -> dict[str, Any]:
    # Closes: two completions of one callback (completed_at), a completion after
    # the callback timed out (the deadlines), and one for a token whose item
    # expired. Sent inside the signal's transaction: both happen or neither.
    return {
        "Update": {
            "TableName": table,
            "Key": lookup_key(token),
            "UpdateExpression": "SET #cat = :now, #cid = :cid, #ttl = :ttl",
            "ConditionExpression": _OPEN,
            "ExpressionAttributeNames": {k: _NAMES[k] for k in (*_OPEN_NAMES, "#cid", "#ttl")},
            "ExpressionAttributeValues": {
                ":now": to_attr(now),
                ":zero": to_attr(0),
                ":ttl": to_attr(now // 1000 + COMPLETED_TTL_S),
                ":cid": to_attr(completion_id),
            },
        }
    }


def heartbeat(table: str, token: str, *, now: int) -> dict[str, Any]:
    # Moves the heartbeat deadline forward from now. Closes: a heartbeat that would
    # revive a callback already completed or timed out (the same open condition).
    return {
        "TableName": table,
        "Key": lookup_key(token),
        "UpdateExpression": "SET #ha = :now, #hd = :now + #hm",
        "ConditionExpression": _OPEN,
        "ExpressionAttributeNames": {k: _NAMES[k] for k in (*_OPEN_NAMES, "#ha")},
        "ExpressionAttributeValues": {":now": to_attr(now), ":zero": to_attr(0)},
        "ReturnValues": "ALL_NEW",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def close(table: str, token: str, *, now: int) -> dict[str, Any]:
    # The worker closes a callback whose deadline (or heartbeat deadline) it saw
    # pass, before it records the timeout. Closes: a completion stamped before the
    # deadline whose write lands after the worker looked at its inbox (latency
    # between the API's clock read and its commit). Whichever commits first wins:
    # refused here (ALL_OLD shows completed_at), the worker takes the completion
    # from the inbox instead; applied, the API refuses the completion (409).
    return {
        "TableName": table,
        "Key": lookup_key(token),
        "UpdateExpression": "SET #cl = if_not_exists(#cl, :now)",
        "ConditionExpression": "attribute_exists(#pk) AND attribute_not_exists(#cat)",
        "ExpressionAttributeNames": {k: _NAMES[k] for k in ("#pk", "#cat", "#cl")},
        "ExpressionAttributeValues": {":now": to_attr(now)},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def get_lookup(table: str, token: str) -> dict[str, Any]:
    return {"TableName": table, "Key": lookup_key(token), "ConsistentRead": True}


# --- the API's side (boto3) ------------------------------------------------------------
def _lookup(store: Store, token: str) -> CallbackRef:
    if not TOKEN_RE.fullmatch(token):
        raise NotFoundError("no callback with that id (unknown or expired)")
    item = store.ddb.get_item(**get_lookup(store.table, token)).get("Item")
    if item is None:
        raise NotFoundError("no callback with that id (unknown or expired)")
    return CallbackRef.from_item(item)


def send_completion(
    store: Store, token: str, payload: str, *, grace_ms: int
) -> tuple[CallbackRef, bool, str | None]:
    """Store a completion as the run's signal `sys:cb:<op id>`. Returns (callback,
    woke, timer) as `Store.send_signal` does. NotFoundError: unknown or expired
    token. ConflictError: already completed, timed out, or the run is finished."""
    ref = _lookup(store, token)
    name = callback_signal(ref.op_id)
    # Tells this request's write apart: the SDK may re-send a transaction whose
    # answer was lost, and the re-send is refused because the first one applied.
    completion_id = secrets.token_hex(8)
    for _ in range(20):
        now = store.clock.now_ms()
        why = ref.refusal(now)
        if why:
            raise ConflictError(why)
        try:
            run = store.get(ref.workflow_id)
        except NotFoundError:
            raise NotFoundError("no callback with that id (its run is gone)") from None
        if run.status.terminal:
            raise ConflictError(
                f"the callback's run is {run.status.value}; it takes no more completions"
            )
        sig = Signal(name=name, seq=run.signal_seq + 1, payload=payload, sent_at=now)
        wake = run.status == Status.WAITING and name in run.wait_signals
        req = rq.send_signal(
            store.table,
            ref.workflow_id,
            signal=sig,
            prev_seq=run.signal_seq,
            seen_status=run.status,
            epoch=run.epoch,
            now=now,
            wake=wake,
            due_at=now + grace_ms,
            attempt=run.redrive_count,  # counted in the inbox, never refused: one per callback
        )
        req["TransactItems"].append(
            complete(store.table, token, now=now, completion_id=completion_id)
        )
        try:
            store.ddb.transact_write_items(**req)
            return ref, wake, (run.timer if wake else None)
        except ClientError as e:
            if e.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = e.response.get("CancellationReasons") or []
            if len(reasons) == 3 and reasons[2].get("Code") == "ConditionalCheckFailed":
                ref = _lookup(store, token)  # completed or timed out meanwhile: say which
                if ref.completion_id == completion_id:  # by this request, answer lost
                    return ref, wake, (run.timer if wake else None)
            # Otherwise the run moved (another signal, a claim, a park): read it again.
    raise ConflictError("the callback's run is changing too fast; try again")


def send_heartbeat(store: Store, token: str) -> CallbackRef:
    """Move the callback's heartbeat deadline to now + its heartbeat timeout."""
    if not TOKEN_RE.fullmatch(token):
        raise NotFoundError("no callback with that id (unknown or expired)")
    now = store.clock.now_ms()
    try:
        resp = store.ddb.update_item(**heartbeat(store.table, token, now=now))
        return CallbackRef.from_item(resp["Attributes"])
    except ClientError as e:
        if not conditional_failed(e):
            raise
        item = old_item(e)
    if item is None:
        raise NotFoundError("no callback with that id (unknown or expired)")
    ref = CallbackRef.from_item(item)
    raise ConflictError(ref.refusal(now) or "the callback is not open")


__all__ = [
    "TOKEN_RE",
    "CallbackRef",
    "callback_signal",
    "create",
    "get_lookup",
    "send_completion",
    "send_heartbeat",
    "token_prefix",
]
