"""Recurring schedules in the state table: the definition and the decision state.

    pk = "SCHEDULES"   sk = "S#<name>"

One partition holds every schedule, so one Query lists them (no Scheduler
reads, no scan). Each decision about a tick (started, skipped, buffered,
missed) is one write to the schedule's item, conditioned on the `version`
the decider read: two fires of one tick, a fire and a trigger, or the
sweeper's catch-up racing a fire decide one after the other, never on the
same state. A start is one transaction: that decision write and the run's
put (`attribute_not_exists`), so the schedule never names a run that was not
created, and a run is never created behind a decision that lost.
"""

from __future__ import annotations

import builtins
from typing import Any

from botocore.exceptions import ClientError

from .. import resources as r
from ..errors import ConflictError, NotFoundError
from ..model import RECENT_DECISIONS, Overlap, Run, Schedule
from .codec import from_item, new_run_item, to_attr, to_item
from .conditions import conditional_failed, old_item


def schedule_key(name: str) -> dict[str, Any]:
    return to_item({r.PK: r.SCHEDULES_PK, r.SK: r.schedule_sk(name)})


def schedule_item(s: Schedule) -> dict[str, Any]:
    return to_item(
        {
            r.PK: r.SCHEDULES_PK,
            r.SK: r.schedule_sk(s.name),
            "name": s.name,
            "workflow": s.workflow,
            "input": s.input,
            "expression": s.expression,
            "timezone": s.timezone,
            "overlap": s.overlap.value,
            "catchup_window_s": s.catchup_window_s,
            "task_queue": s.task_queue,
            "created_at": s.created_at,
            "updated_at": s.updated_at,
            "anchor_at": s.anchor_at,
            "paused": s.paused,
            "note": s.note,
            "version": s.version,
            "last_tick": s.last_tick,
            "last_run": s.last_run,
            "buffered": s.buffered,
            "recent": s.recent,
        }
    )


def schedule_from_item(item: dict[str, Any]) -> Schedule:
    d = from_item(item)
    return Schedule(
        name=d["name"],
        workflow=d["workflow"],
        input=d.get("input", "null"),
        expression=d["expression"],
        timezone=d.get("timezone", "UTC"),
        overlap=Overlap(d.get("overlap", Overlap.SKIP.value)),
        catchup_window_s=d.get("catchup_window_s", 0),
        task_queue=d.get("task_queue"),
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        anchor_at=d.get("anchor_at", d["created_at"]),
        paused=bool(d.get("paused", False)),
        note=d.get("note"),
        resumed_at=d.get("resumed_at"),
        version=d.get("version", 0),
        last_tick=d.get("last_tick"),
        last_run=d.get("last_run"),
        buffered=d.get("buffered"),
        recent=list(d.get("recent") or []),
    )


def same_definition(a: Schedule, b: Schedule) -> bool:
    fields = ("workflow", "input", "expression", "timezone", "overlap", "catchup_window_s")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and a.task_queue == b.task_queue


def with_decision(s: Schedule, entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry, *s.recent][:RECENT_DECISIONS]


# --- Requests ----------------------------------------------------------------------------------
def put_new_schedule(table: str, s: Schedule) -> dict[str, Any]:
    # Closes: two creates of one name. The loser gets the stored definition back
    # (ALL_OLD) and answers "exists" (same definition) or 409 (another one).
    return {
        "TableName": table,
        "Item": schedule_item(s),
        "ConditionExpression": "attribute_not_exists(#pk)",
        "ExpressionAttributeNames": {"#pk": r.PK},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


DEFINITION_FIELDS = (
    "name",
    "workflow",
    "input",
    "expression",
    "timezone",
    "overlap",
    "catchup_window_s",
    "task_queue",
    "updated_at",
)
# Written only where absent: the first write sets them, later ones keep the
# decision state, the pause and the rate anchor that the engine owns.
KEPT_FIELDS = ("created_at", "anchor_at", "paused", "version", "recent")


def put_definition(table: str, s: Schedule) -> dict[str, Any]:
    """Write the definition of `s` and keep its state: the UpdateItem that a
    deployment (CDK's declared schedules) runs at every deploy.

    Not conditioned: the deployment owns the definition of the schedules it
    declares, so it overwrites what the API changed. A decider racing this
    write decides the tick against the old definition or the new one, never
    a mix (one item, one write)."""
    item = from_item(schedule_item(s))
    values: dict[str, Any] = {}
    sets, removes = [], []
    names = {"#" + f: f for f in (*DEFINITION_FIELDS, *KEPT_FIELDS)}
    for f in DEFINITION_FIELDS:
        if f in item:
            sets.append(f"#{f} = :{f}")
            values[f":{f}"] = item[f]
        else:
            removes.append(f"#{f}")
    for f in KEPT_FIELDS:
        sets.append(f"#{f} = if_not_exists(#{f}, :{f})")
        values[f":{f}"] = item.get(f, [])
    update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    return {
        "TableName": table,
        "Key": schedule_key(s.name),
        "UpdateExpression": update,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
    }


def delete_definition(table: str, name: str) -> dict[str, Any]:
    """Remove a schedule's item (a deployment that no longer declares it)."""
    return {"TableName": table, "Key": schedule_key(name)}


def decide(table: str, after: Schedule, *, seen_version: int) -> dict[str, Any]:
    """Write the decision state of `after` (its version already bumped).

    Closes: two deciders on one schedule. Whoever read `seen_version` last and
    writes first wins; the other's condition fails and it reads and decides
    again (a second fire of the tick then finds it decided)."""
    values: dict[str, Any] = {
        ":v": after.version,
        ":seen": seen_version,
        ":now": after.updated_at,
        ":recent": after.recent,
    }
    sets = ["#ver = :v", "#ua = :now", "#rc = :recent"]
    removes = []
    for attr, placeholder, value in (
        ("last_tick", "#lt", after.last_tick),
        ("last_run", "#lr", after.last_run),
        ("buffered", "#bf", after.buffered),
    ):
        if value is None:
            removes.append(placeholder)
        else:
            sets.append(f"{placeholder} = :{attr}")
            values[f":{attr}"] = value
    update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    names = {"#ver": "version", "#ua": "updated_at", "#rc": "recent", "#lt": "last_tick"}
    names.update({"#lr": "last_run", "#bf": "buffered"})
    return {
        "TableName": table,
        "Key": schedule_key(after.name),
        "UpdateExpression": update,
        "ConditionExpression": "#ver = :seen",
        "ExpressionAttributeNames": {k: v for k, v in names.items() if k in update},
        "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
    }


def start_tick(table: str, after: Schedule, run: Run, *, seen_version: int) -> dict[str, Any]:
    """One transaction: the decision (version as read) and the run's creation
    (`attribute_not_exists`: a tick's run id is deterministic, so a second start
    of one tick fails here whatever decided it)."""
    update = decide(table, after, seen_version=seen_version)
    return {
        "TransactItems": [
            {
                "Update": {
                    k: v for k, v in update.items() if k != "ReturnValuesOnConditionCheckFailure"
                }
            },
            {
                "Put": {
                    "TableName": table,
                    "Item": new_run_item(run),
                    "ConditionExpression": "attribute_not_exists(#pk)",
                    "ExpressionAttributeNames": {"#pk": r.PK},
                }
            },
        ]
    }


def set_paused(
    table: str, name: str, *, paused: bool, note: str | None, now: int
) -> dict[str, Any]:
    # Not versioned: pausing does not decide a tick; a fire that read the schedule
    # unpaused just before may still start its tick (as on EventBridge Scheduler).
    values: dict[str, Any] = {":p": paused, ":now": now}
    update = "SET #ps = :p, #ua = :now"
    if not paused:
        # The ticks that fell in the pause are never fired: the sweeper's catch-up
        # looks no further back than this (api/schedules._latest_missed).
        update += ", #ra = :now"
    if note is None:
        update += " REMOVE #nt"
    else:
        update += ", #nt = :note"
        values[":note"] = note
    return {
        "TableName": table,
        "Key": schedule_key(name),
        "UpdateExpression": update,
        "ConditionExpression": "attribute_exists(#pk)",
        "ExpressionAttributeNames": {
            "#ps": "paused",
            "#ua": "updated_at",
            "#nt": "note",
            "#pk": r.PK,
            **({"#ra": "resumed_at"} if not paused else {}),
        },
        "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
        "ReturnValues": "ALL_NEW",
    }


def query_schedules(table: str) -> dict[str, Any]:
    return {
        "TableName": table,
        "KeyConditionExpression": "#pk = :pk",
        "ExpressionAttributeNames": {"#pk": r.PK},
        "ExpressionAttributeValues": {":pk": to_attr(r.SCHEDULES_PK)},
        "ConsistentRead": True,
    }


class StartConflict(Exception):
    """The start transaction lost: `decision_moved` (the schedule's version moved)
    or the run already exists."""

    def __init__(self, *, decision_moved: bool, run_exists: bool) -> None:
        super().__init__("start refused")
        self.decision_moved = decision_moved
        self.run_exists = run_exists


class ScheduleStore:
    """The synchronous requests, over boto3 (the API, the sweeper, the emulator)."""

    def __init__(self, ddb: Any, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def create(self, s: Schedule) -> tuple[Schedule, bool]:
        try:
            self._ddb.put_item(**put_new_schedule(self._table, s))
            return s, True
        except ClientError as e:
            if not conditional_failed(e):
                raise
            item = old_item(e)
        existing = schedule_from_item(item) if item else self.get(s.name)
        if not same_definition(existing, s):
            raise ConflictError(
                f"schedule {s.name!r} exists with another definition; delete it first"
            )
        return existing, False

    def get(self, name: str) -> Schedule:
        found = self.find(name)
        if found is None:
            raise NotFoundError(f"no schedule named {name!r}")
        return found

    def find(self, name: str) -> Schedule | None:
        resp = self._ddb.get_item(
            TableName=self._table, Key=schedule_key(name), ConsistentRead=True
        )
        return schedule_from_item(resp["Item"]) if "Item" in resp else None

    def list(self) -> builtins.list[Schedule]:
        req = query_schedules(self._table)
        out: list[Schedule] = []
        while True:
            resp = self._ddb.query(**req)
            out.extend(schedule_from_item(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return out
            req = {**req, "ExclusiveStartKey": resp["LastEvaluatedKey"]}

    def decide(self, after: Schedule, *, seen_version: int) -> bool:
        """False when another decision got there first."""
        try:
            self._ddb.update_item(**decide(self._table, after, seen_version=seen_version))
            return True
        except ClientError as e:
            if conditional_failed(e):
                return False
            raise

    def start(self, after: Schedule, run: Run, *, seen_version: int) -> None:
        try:
            self._ddb.transact_write_items(
                **start_tick(self._table, after, run, seen_version=seen_version)
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = [x.get("Code", "None") for x in e.response.get("CancellationReasons", [])]
            if not any(c == "ConditionalCheckFailed" for c in reasons):
                raise  # a conflict with another transaction, throttling: retryable
            moved = len(reasons) > 0 and reasons[0] == "ConditionalCheckFailed"
            exists = len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed"
            raise StartConflict(decision_moved=moved, run_exists=exists) from None

    def set_paused(self, name: str, *, paused: bool, note: str | None, now: int) -> Schedule:
        try:
            resp = self._ddb.update_item(
                **set_paused(self._table, name, paused=paused, note=note, now=now)
            )
        except ClientError as e:
            if conditional_failed(e):
                raise NotFoundError(f"no schedule named {name!r}") from None
            raise
        return schedule_from_item(resp["Attributes"])

    def delete(self, name: str) -> Schedule:
        try:
            resp = self._ddb.delete_item(
                TableName=self._table,
                Key=schedule_key(name),
                ConditionExpression="attribute_exists(#pk)",
                ExpressionAttributeNames={"#pk": r.PK},
                ReturnValues="ALL_OLD",
            )
        except ClientError as e:
            if conditional_failed(e):
                raise NotFoundError(f"no schedule named {name!r}") from None
            raise
        return schedule_from_item(resp["Attributes"])

    def run_statuses(self, ids: builtins.list[str]) -> dict[str, str]:
        """Status of each run that exists (BatchGetItem, 100 at a time)."""
        from .codec import run_key

        out: dict[str, str] = {}
        unique = list(dict.fromkeys(ids))
        for i in range(0, len(unique), 100):
            keys = [run_key(x) for x in unique[i : i + 100]]
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys,
                    "ProjectionExpression": "id, #st",
                    "ExpressionAttributeNames": {"#st": "status"},
                }
            }
            while request:
                resp = self._ddb.batch_get_item(RequestItems=request)
                for item in resp.get("Responses", {}).get(self._table, []):
                    d = from_item(item)
                    out[d["id"]] = d["status"]
                request = resp.get("UnprocessedKeys") or {}
        return out


__all__ = ["ScheduleStore", "StartConflict", "same_definition", "with_decision"]
