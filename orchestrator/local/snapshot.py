"""The dev stack's state on disk (`orchestrator dev --state-dir DIR`).

moto keeps everything in memory and has no persistence of its own, so the dev
stack writes a snapshot through the AWS APIs it emulates, every few seconds and
at stop:

- every item of the table: runs, step records, signal inboxes, callbacks (their
  lookup items), flow-control items, the recurring schedules' records, the
  sweeper's marks, the worker registry;
- every schedule of the timer group (one-time timers) and of the recurring group
  (the recurring schedules' EventBridge side);
- the queues, with their attributes (a pinned build's queue is created by its
  first worker, not by the stack);
- every object of the value bucket (values above the offload threshold), one
  file per object under DIR/values/, named by the value's SHA-256 and written once
  (a value's object never changes: its key is its digest);
- every other object of the value bucket (the items of a map over S3 items, its
  results object, what an application keeps there), one file per object and
  version under DIR/objects/, named by the SHA-256 of its key and ETag, and its
  key, content type and file in state.json.

DIR/state.json is written atomically (a temporary file renamed over the old
one), so a crash leaves the previous snapshot; a value file is written (also
by a rename) before the state.json that names it, and a file no snapshot names
any more is removed after.

Restore puts all of it back into a fresh stack, then gives every unfinished
run its message, on its own queue (its task queue's, or its pinned build's):
runnable ones at once, parked ones with a delay up to their wake time (or none:
their schedule or the sweeper wakes them), as the sweeper would, only sooner.
Queue messages themselves (in flight or delayed) are not saved: a message only
says "look at run X" and the claim decides, so sending them again is the normal
recovery path (duplicates are harmless). A recurring schedule's next tick after
the restore is delivered on time; a tick that fell while the stack was stopped
is the sweeper's catch-up's, as a lost delivery is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from .. import resources as r
from ..dispatch import send_request
from ..model import Status
from ..payloads import DIGEST_RE, _put_args, object_key
from ..store.codec import run_from_item
from .stack import LocalStack

log = logging.getLogger(__name__)

FORMAT = 2
FORMATS = (1, 2)  # a format-1 snapshot (items and timers only) still restores
FILE_NAME = "state.json"
VALUES_DIR = "values"
OBJECTS_DIR = "objects"
SAVE_INTERVAL_S = 3.0
_SCHEDULE_KEYS = (
    "Name",
    "GroupName",
    "ScheduleExpression",
    "ScheduleExpressionTimezone",
    "FlexibleTimeWindow",
    "ActionAfterCompletion",
    "Target",
    "State",
    "Description",
    "StartDate",
    "EndDate",
)
_DATES = ("StartDate", "EndDate")
_QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "RedrivePolicy")


def _scan(stack: LocalStack) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    req: dict[str, Any] = {"TableName": stack.settings.table, "ConsistentRead": True}
    while True:
        resp = stack.ddb.scan(**req)
        items.extend(resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            return items
        req["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _schedules(stack: LocalStack, group: str) -> list[dict[str, Any]]:
    found = []
    for page in stack.scheduler.get_paginator("list_schedules").paginate(GroupName=group):
        for s in page.get("Schedules", []):
            try:
                full = stack.scheduler.get_schedule(Name=s["Name"], GroupName=group)
            except ClientError:
                continue  # deleted meanwhile (a timer that fired)
            kept = {k: full[k] for k in _SCHEDULE_KEYS if k in full}
            for k in _DATES:
                if isinstance(kept.get(k), datetime):
                    kept[k] = kept[k].isoformat()
            found.append(kept)
    return found


def _queues(stack: LocalStack) -> list[dict[str, Any]]:
    """Every queue, with the attributes that make it what it is (restore creates
    the ones a fresh stack lacks: a pinned build's, which its first worker made)."""
    found = []
    for url in stack.sqs.list_queues(MaxResults=1000).get("QueueUrls", []):
        name = url.rsplit("/", 1)[-1]
        try:
            attrs = stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        except ClientError:
            continue  # deleted meanwhile
        kept = {k: v for k, v in attrs["Attributes"].items() if k in _QUEUE_ATTRIBUTES}
        found.append({"name": name, "attributes": kept})
    return found


def _restore_queues(stack: LocalStack, queues: list[dict[str, Any]]) -> None:
    for q in queues:
        try:
            stack.sqs.get_queue_url(QueueName=q["name"])
            continue  # the stack's own (bootstrap made it)
        except ClientError:
            pass
        stack.sqs.create_queue(QueueName=q["name"], Attributes=q["attributes"])


def _save_values(stack: LocalStack, directory: Path) -> list[str]:
    """Copy every object of the value bucket not yet on disk to DIR/values/<digest>;
    the digests of every object in the bucket."""
    directory.mkdir(parents=True, exist_ok=True)
    digests = []
    pages = stack.s3.get_paginator("list_objects_v2").paginate(
        Bucket=stack.settings.bucket, Prefix=r.VALUE_KEY_PREFIX
    )
    for page in pages:
        for obj in page.get("Contents", []):
            digest = obj["Key"][len(r.VALUE_KEY_PREFIX) :]
            if not DIGEST_RE.fullmatch(digest):
                continue  # not a value's object
            digests.append(digest)
            path = directory / digest
            if path.exists() and path.stat().st_size == obj["Size"]:
                continue  # written by an earlier save: the key names the content
            data = stack.s3.get_object(Bucket=stack.settings.bucket, Key=obj["Key"])["Body"].read()
            tmp = directory / f"{digest}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, path)
    return digests


def _save_objects(stack: LocalStack, directory: Path) -> list[dict[str, str]]:
    """Copy every object of the bucket that is not a value's and not yet on disk
    to DIR/objects/<sha256 of key and ETag>; one entry per object."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for page in stack.s3.get_paginator("list_objects_v2").paginate(Bucket=stack.settings.bucket):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.startswith(r.VALUE_KEY_PREFIX):
                continue
            name = hashlib.sha256(f"{key}\0{obj['ETag']}".encode()).hexdigest()
            path = directory / name
            if not (path.exists() and path.stat().st_size == obj["Size"]):
                got = stack.s3.get_object(Bucket=stack.settings.bucket, Key=key)
                tmp = directory / f"{name}.tmp"
                tmp.write_bytes(got["Body"].read())
                os.replace(tmp, path)
                content_type = got.get("ContentType", "binary/octet-stream")
            else:
                head = stack.s3.head_object(Bucket=stack.settings.bucket, Key=key)
                content_type = head.get("ContentType", "binary/octet-stream")
            entries.append({"key": key, "file": name, "content_type": content_type})
    return entries


def save(stack: LocalStack, path: Path) -> dict[str, int]:
    """Write the stack's state to `path` (and its values beside it) atomically;
    returns what it holds."""
    values_dir = path.parent / VALUES_DIR
    saved_at = stack.clock.now_ms()
    items = _scan(stack)
    # The bucket is listed after the table is read: a record's value is put in S3
    # before the record is written, so every value a saved record points to is
    # among these. Their files are written before the state.json that names them.
    digests = _save_values(stack, values_dir)
    objects = _save_objects(stack, path.parent / OBJECTS_DIR)
    state: dict[str, Any] = {
        "format": FORMAT,
        "saved_at": saved_at,
        "items": items,
        "schedules": _schedules(stack, stack.settings.schedule_group),
        "recurring": _schedules(stack, stack.settings.recurring_group),
        "queues": _queues(stack),
        "values": digests,
        "objects": objects,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, separators=(",", ":")))
    os.replace(tmp, path)
    kept = set(digests)
    for f in values_dir.iterdir():
        if f.name not in kept and DIGEST_RE.fullmatch(f.name):
            f.unlink(missing_ok=True)  # its object is gone from the bucket
    files = {o["file"] for o in objects}
    for f in (path.parent / OBJECTS_DIR).iterdir():
        if f.name not in files and DIGEST_RE.fullmatch(f.name):
            f.unlink(missing_ok=True)  # replaced or deleted since
    return counts(state)


def counts(state: dict[str, Any]) -> dict[str, int]:
    runs = [i for i in state["items"] if i.get("sk", {}).get("S") == "RUN"]
    return {
        "runs": len(runs),
        "unfinished": sum(1 for i in runs if not run_from_item(i).status.terminal),
        "items": len(state["items"]),
        "schedules": len(state["schedules"]),
        "recurring": len(state.get("recurring", [])),
        "queues": len(state.get("queues", [])),
        "values": len(state.get("values", [])),
        "objects": len(state.get("objects", [])),
    }


def _create_schedule(stack: LocalStack, schedule: dict[str, Any], group: str) -> None:
    schedule = {**schedule, "GroupName": group}
    for k in _DATES:
        if isinstance(schedule.get(k), str):
            schedule[k] = datetime.fromisoformat(schedule[k])
    try:
        stack.scheduler.create_schedule(**schedule)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ConflictException":
            raise


def _restore_values(stack: LocalStack, directory: Path, digests: list[str]) -> None:
    for digest in digests:
        if not DIGEST_RE.fullmatch(digest):
            raise ValueError(f"not a value's digest: {digest[:80]!r}")
        try:
            data = (directory / digest).read_bytes()
        except FileNotFoundError:
            raise ValueError(f"the value file {VALUES_DIR}/{digest} is missing") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"the value file {VALUES_DIR}/{digest} does not match its name")
        stack.s3.put_object(**_put_args(stack.settings.bucket, object_key(digest), data))


def restore(stack: LocalStack, path: Path) -> dict[str, int] | None:
    """Load `path` into a freshly started stack; None when there is no snapshot."""
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if state.get("format") not in FORMATS:
        raise ValueError(f"{path}: unknown snapshot format {state.get('format')!r}")
    _restore_values(stack, path.parent / VALUES_DIR, state.get("values", []))
    for o in state.get("objects", []):
        if not DIGEST_RE.fullmatch(o["file"]):
            raise ValueError(f"not an object file's name: {o['file'][:80]!r}")
        try:
            data = (path.parent / OBJECTS_DIR / o["file"]).read_bytes()
        except FileNotFoundError:
            raise ValueError(f"the object file {OBJECTS_DIR}/{o['file']} is missing") from None
        stack.s3.put_object(
            Bucket=stack.settings.bucket, Key=o["key"], Body=data, ContentType=o["content_type"]
        )
    _restore_queues(stack, state.get("queues", []))
    table = stack.settings.table
    items = state["items"]
    for start in range(0, len(items), 25):
        request = {table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        while request:
            request = stack.ddb.batch_write_item(RequestItems=request).get("UnprocessedItems")
    for schedule in state["schedules"]:
        _create_schedule(stack, schedule, stack.settings.schedule_group)
    for schedule in state.get("recurring", []):
        _create_schedule(stack, schedule, stack.settings.recurring_group)
    # Their ticks from now on, not every one since their StartDate.
    stack.emulator.adopt_recurring()
    now = stack.clock.now_ms()
    for item in items:
        if item.get("sk", {}).get("S") != "RUN":
            continue
        run = run_from_item(item)
        if run.status.terminal or (run.status == Status.WAITING and run.wake_at is None):
            continue  # finished, or woken by a signal only
        delay = 0 if run.wake_at is None else max(0, -(-(run.wake_at - now) // 1000))
        if delay <= 900:
            req = send_request(stack.settings, run.id, "restored", delay, task_queue=run.route)
            stack.sqs.send_message(**req)
    return counts(state)


class StateFile:
    """Saves the stack to DIR/state.json every SAVE_INTERVAL_S and at `stop()`."""

    def __init__(self, stack: LocalStack, directory: Path) -> None:
        self.stack = stack
        self.path = directory / FILE_NAME
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StateFile:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="state-file")
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(SAVE_INTERVAL_S):
            try:
                save(self.stack, self.path)
            except Exception:
                log.warning("could not save the dev state to %s", self.path, exc_info=True)

    def stop(self, *, hold: bool = False) -> dict[str, int]:
        """The last save. With `hold` (the stack is stopping: `orchestrator dev`
        at Ctrl-C), the stack's moto server first stops taking requests and
        waits for those inside, and the save goes through a second server on
        the same in-process state: a write the server acknowledged is in the
        snapshot, and none lands beside it (a worker still running meets 503s,
        which it retries, then a refused connection). The stack's own timers,
        sweeps and jobs passes are stopped before."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if not hold or self.stack.moto is None:
            return save(self.stack, self.path)
        from .aws import MotoServer

        self.stack.stop_background()  # its own rounds end first: none is left retrying
        self.stack.moto.hold()
        side = MotoServer().start()  # moto's state is the process's: the same tables
        try:
            return save(_Detached.of(self.stack, side.url), self.path)  # type: ignore[arg-type]
        finally:
            side.stop()


class _Detached:
    """What `save` uses of a stack, with clients of another endpoint."""

    def __init__(self, stack: LocalStack, endpoint: str) -> None:
        import boto3

        session = boto3.session.Session(region_name=stack.settings.region)
        self.settings = stack.settings.with_(endpoint_url=endpoint)
        self.clock = stack.clock
        self.ddb: Any = session.client("dynamodb", endpoint_url=endpoint)
        self.sqs: Any = session.client("sqs", endpoint_url=endpoint)
        self.s3: Any = session.client("s3", endpoint_url=endpoint)
        self.scheduler: Any = session.client("scheduler", endpoint_url=endpoint)
        self.emulator = stack.emulator

    @classmethod
    def of(cls, stack: LocalStack, endpoint: str) -> _Detached:
        return cls(stack, endpoint)
