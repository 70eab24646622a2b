"""Items to records and back. Key layout (see docs/architecture.md):

pk = "WF#<id>"  sk = "RUN"                     the run record
pk = "WF#<id>"  sk = "STEP#<op id, padded>"    one durable operation's record
pk = "WF#<id>"  sk = "STEP#<op id, padded>#B"  a batch: several step results (kind "batch"),
                                               keyed by its first entry's operation id
pk = "WF#<id>"  sk = "SIG#<name>#<seq:012d>"   one buffered signal
"""

from __future__ import annotations

import json
import zlib
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from .. import resources as r
from ..errors import BadInputError, PayloadTooLargeError
from ..model import (
    ClaimFailure,
    ErrorInfo,
    Run,
    Signal,
    Status,
    StepKind,
    StepRecord,
    op_from_sort_key,
    op_sort_key,
)

_ser = TypeSerializer()
_de = TypeDeserializer()


def to_attr(value: Any) -> dict[str, Any]:
    return dict(_ser.serialize(value))


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _plain(val: Any) -> Any:
    """DynamoDB numbers come back as Decimal, nested ones too: make them int/float."""
    if isinstance(val, Decimal):
        return int(val) if val == val.to_integral_value() else float(val)
    if isinstance(val, dict):
        return {k: _plain(v) for k, v in val.items()}
    if isinstance(val, list):
        return [_plain(v) for v in val]
    return val


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_de.deserialize(v)) for k, v in item.items()}


# --- Keys ----------------------------------------------------------------------------------
def run_pk(workflow_id: str) -> str:
    return f"{r.RUN_PK_PREFIX}{workflow_id}"


def step_sk(op_id: str) -> str:
    return f"{r.STEP_SK_PREFIX}{op_sort_key(op_id)}"


def signal_prefix(name: str) -> str:
    return f"{r.SIGNAL_SK_PREFIX}{name}#"


def signal_sk(name: str, seq: int) -> str:
    return f"{signal_prefix(name)}{seq:012d}"


def run_key(workflow_id: str) -> dict[str, Any]:
    return to_item({r.PK: run_pk(workflow_id), r.SK: r.RUN_SK})


def shard(workflow_id: str, shards: int) -> int:
    return zlib.crc32(workflow_id.encode()) % shards


def list_sk(created_at: int, workflow_id: str) -> str:
    return f"{created_at:013d}#{workflow_id}"


# --- JSON ------------------------------------------------------------------------------------
def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_json(value: Any, *, what: str, limit: int) -> str:
    """JSON text of `value`, or a BadInputError that names `what` and the limit."""
    try:
        text = dumps(value)
    except (TypeError, ValueError) as e:
        raise BadInputError(f"{what} is not JSON-serializable: {e}") from e
    check_size(text, what=what, limit=limit)
    return text


def check_size(text: str, *, what: str, limit: int) -> None:
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLargeError(f"{what} is {size} bytes; the limit is {limit} bytes")


# --- Records -----------------------------------------------------------------------------------
def _error(d: dict[str, Any] | None) -> ErrorInfo | None:
    if not d:
        return None
    return ErrorInfo(
        type=d.get("type", ""), message=d.get("message", ""), traceback=d.get("traceback", "")
    )


def _claim_failure(d: dict[str, Any] | None) -> ClaimFailure | None:
    if not d:
        return None
    return ClaimFailure(
        type=str(d.get("type", "")), message=str(d.get("message", "")), count=int(d.get("count", 0))
    )


def run_from_item(item: dict[str, Any]) -> Run:
    d = from_item(item)
    return Run(
        id=d["id"],
        name=d["name"],
        status=Status(d["status"]),
        input=d.get("input", "null"),
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        epoch=d.get("epoch", 0),
        signal_seq=d.get("signal_seq", 0),
        owner=d.get("owner"),
        lease_until=d.get("lease_until"),
        wake_at=d.get("wake_at"),
        wait_signal=d.get("wait_signal"),
        due_at=d.get("due_at"),
        output=d.get("output"),
        error=_error(d.get("error")),
        dispatches=d.get("dispatches", 0),
        deadline_at=d.get("deadline_at"),
        cancel_requested=d.get("cancel_requested"),
        timer=d.get("timer"),
        traceparent=d.get("traceparent"),
        parent_id=d.get("parent_id"),
        parent_op=d.get("parent_op"),
        parent_notified=bool(d.get("parent_notified", False)),
        parent_polls=bool(d.get("parent_polls", False)),
        tags=dict(d.get("tags") or {}),
        redrive_count=d.get("redrive_count", 0),
        outcomes=tuple(d.get("outcomes") or ()),
        forked_from=d.get("forked_from"),
        generation=d.get("generation", 0),
        build_id=d.get("build_id"),
        task_queue=d.get("task_queue"),
        pinned=bool(d.get("pinned", False)),
        last_batch=d.get("last_batch"),
        claim_failure=_claim_failure(d.get("claim_failure")),
        inbox_count=d.get("inbox_count", 0),
        inbox_bytes=d.get("inbox_bytes", 0),
    )


def new_run_item(run: Run) -> dict[str, Any]:
    # No due_pk/due_at: a new run is outside the sweeper's `by_due` index until it
    # parks or the sweeper's walk of `by_created` finds it unfinished.
    return to_item(
        {
            r.PK: run_pk(run.id),
            r.SK: r.RUN_SK,
            "id": run.id,
            "name": run.name,
            "status": run.status.value,
            "input": run.input,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
            "epoch": 0,
            "signal_seq": 0,
            "deadline_at": run.deadline_at,
            "traceparent": run.traceparent,
            "parent_id": run.parent_id,
            "parent_op": run.parent_op,
            "parent_polls": run.parent_polls or None,
            "tags": run.tags or None,
            "task_queue": run.task_queue,
            r.BY_CREATED.partition_key: r.list_pk(shard(run.id, r.LIST_SHARDS)),
            r.BY_CREATED.sort_key: list_sk(run.created_at, run.id),
        }
    )


def step_from_item(item: dict[str, Any]) -> StepRecord:
    d = from_item(item)
    # Records written before operation ids had parts carry only "position": they
    # are the root scope's operations, and their sort key is the root id's.
    op_id = d.get("op") or op_from_sort_key(d[r.SK][len(r.STEP_SK_PREFIX) :])
    return StepRecord(
        op_id=op_id,
        name=d["name"],
        kind=StepKind(d["kind"]),
        epoch=d.get("epoch", 0),
        recorded_at=d.get("recorded_at", 0),
        result=d.get("result"),
        error=_error(d.get("error")),
        started_at=d.get("started_at"),
        wake_at=d.get("wake_at"),
        signal=d.get("signal"),
        resolved=bool(d.get("resolved", False)),
        timed_out=bool(d.get("timed_out", False)),
        signal_seq=d.get("signal_seq"),
        attempts=d.get("attempts") or [],
        retry_at=d.get("retry_at"),
        replay_children=bool(d.get("replay_children", False)),
        callback_id=d.get("callback_id"),
        run_attempt=d.get("run_attempt", 0),
    )


def step_item(workflow_id: str, rec: StepRecord) -> dict[str, Any]:
    return to_item(
        {
            r.PK: run_pk(workflow_id),
            r.SK: step_sk(rec.op_id),
            "op": rec.op_id,
            "name": rec.name,
            "kind": rec.kind.value,
            "epoch": rec.epoch,
            "recorded_at": rec.recorded_at,
            "result": rec.result,
            "error": rec.error.as_dict() if rec.error else None,
            "started_at": rec.started_at,
            "wake_at": rec.wake_at,
            "signal": rec.signal,
            "resolved": rec.resolved or None,
            "timed_out": rec.timed_out or None,
            "signal_seq": rec.signal_seq,
            "attempts": rec.attempts or None,
            "retry_at": rec.retry_at,
            "replay_children": rec.replay_children or None,
            "callback_id": rec.callback_id,
            "run_attempt": rec.run_attempt or None,
        }
    )


BATCH_KIND = "batch"
BATCH_SK_SUFFIX = "#B"


def batch_entry(rec: StepRecord, base: int) -> list[Any]:
    """A step result in a batch: [op id, name, base - recorded_at, recorded_at -
    started_at (null: not known), result]. Times are small offsets from the
    batch's `base` (its write time): two 13-digit stamps would be a sixth of an
    entry whose result is 100 bytes, and a batch is paid by its bytes."""
    took = None if rec.started_at is None else rec.recorded_at - rec.started_at
    return [rec.op_id, rec.name, base - rec.recorded_at, took, rec.result]


def batch_entry_bytes(rec: StepRecord) -> int:
    """An entry's size in the buffer's bound (its offsets counted as 4 digits each)."""
    return len(dumps(batch_entry(rec, rec.recorded_at)).encode()) + 7


def batch_item(
    workflow_id: str, *, epoch: int, now: int, records: list[StepRecord]
) -> dict[str, Any]:
    """One item holding the results of `records` (resolved, successful steps),
    under the sort key of the first one's id plus "#B": inside the history
    Query's range, after that operation's own key and before the next one's.
    The entries are one JSON text: a list's per-element overhead in DynamoDB
    would cost more bytes than the results themselves."""
    return to_item(
        {
            r.PK: run_pk(workflow_id),
            r.SK: step_sk(records[0].op_id) + BATCH_SK_SUFFIX,
            "kind": BATCH_KIND,
            "epoch": epoch,
            "recorded_at": now,
            "base": now,
            "entries": dumps([batch_entry(rec, now) for rec in records]),
            "run_attempt": records[0].run_attempt or None,
        }
    )


def item_attempt(item: dict[str, Any]) -> int:
    """The run attempt a history item belongs to (`StepRecord.run_attempt`)."""
    value = item.get("run_attempt")
    return int(value["N"]) if value else 0


def records_from_items(items: list[dict[str, Any]], *, attempt: int = 0) -> list[StepRecord]:
    """History items to records, a batch item expanded into one record per entry.
    Every reader of a history goes through this (and `records_from_last_batch`
    for a finished run's last batch), so a batch is invisible above the store: a
    step recorded in a batch replays as one recorded alone.

    `attempt` is the run's current attempt (its redrive count): an item of an
    earlier attempt is left out. A redrive carries the records it keeps over to
    the new attempt, so what is left out is only what an owner of an earlier
    attempt wrote after the redrive read the history: a late write, never
    replayed (docs/architecture.md, "Records of an earlier attempt")."""
    out: list[StepRecord] = []
    for item in items:
        if attempt and item_attempt(item) < attempt:
            continue
        if item.get("kind", {}).get("S") != BATCH_KIND:
            out.append(step_from_item(item))
            continue
        d = from_item(item)
        base, epoch = d.get("base"), d.get("epoch", 0)
        got = d.get("run_attempt", 0)
        out.extend(_entry_record(e, epoch, base, got) for e in json.loads(d["entries"]))
    return out


def _entry_record(
    entry: list[Any], epoch: int, base: int | None, run_attempt: int = 0
) -> StepRecord:
    op, name, ago, took, result = entry
    if base is None:  # an item of the first format (no "base"): absolute times
        recorded_at, started_at = ago, took
    else:
        recorded_at = base - ago
        started_at = None if took is None else recorded_at - took
    return StepRecord(
        op_id=op,
        name=name,
        kind=StepKind.STEP,
        epoch=epoch,
        recorded_at=recorded_at,
        result=result,
        started_at=started_at,
        resolved=True,
        run_attempt=run_attempt,
    )


def with_last_batch(
    records: list[StepRecord], last_batch: str | None, generation: int
) -> list[StepRecord]:
    """A history read from items, with the run's `last_batch` records of that
    generation joined in, all in operation-id order (the Query's)."""
    last = records_from_last_batch(last_batch, generation)
    if not last:
        return records
    return sorted(records + last, key=lambda rec: op_sort_key(rec.op_id))


def last_batch_text(records: list[StepRecord], *, epoch: int, generation: int, now: int) -> str:
    """The results a run's terminal write carries (the run item's `last_batch`):
    the batch it would otherwise have flushed just before, as one JSON text.
    The generation says which history it belongs to (a redriven run may go on
    and continue as new)."""
    entries = [batch_entry(rec, now) for rec in records]
    return dumps({"generation": generation, "epoch": epoch, "base": now, "entries": entries})


def records_from_last_batch(text: str | None, generation: int) -> list[StepRecord]:
    """The records of a run's `last_batch`, when it belongs to `generation`."""
    if not text:
        return []
    d = json.loads(text)
    if d["generation"] != generation:
        return []
    return [_entry_record(e, d["epoch"], d["base"]) for e in d["entries"]]


def signal_from_item(item: dict[str, Any]) -> Signal:
    d = from_item(item)
    return Signal(
        name=d["name"],
        seq=d["seq"],
        payload=d.get("payload", "null"),
        sent_at=d["sent_at"],
        consumed="consumed_at" in d,
        attempt=d.get("counted"),
        size=d.get("size", 0),
    )


def signal_item(workflow_id: str, sig: Signal) -> dict[str, Any]:
    return to_item(
        {
            r.PK: run_pk(workflow_id),
            r.SK: signal_sk(sig.name, sig.seq),
            "name": sig.name,
            "seq": sig.seq,
            "payload": sig.payload,
            "sent_at": sig.sent_at,
            # the run attempt whose inbox counters hold it, and the bytes it counts for
            "counted": sig.attempt,
            "size": sig.size if sig.attempt is not None else None,
        }
    )
