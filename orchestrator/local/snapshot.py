"""The dev stack's state on disk (`orchestrator dev --state-dir DIR`).

moto keeps everything in memory and has no persistence of its own, so the dev
stack writes a snapshot through the AWS APIs it emulates: every item of the
table (runs, steps, inboxes, the sweeper's marks, the worker registry) and
every schedule of the group, as JSON, every few seconds and at stop. The write
is atomic (a temporary file renamed over the old one), so a crash leaves the
previous snapshot.

Restore puts the items and schedules back into a fresh stack and then gives
every unfinished run its message: runnable ones at once, parked ones with a
delay up to their wake time (or none: their schedule or the sweeper wakes
them), as the sweeper would, only sooner. Queue messages themselves are not
saved: a message only says "look at run X" and the claim decides, so sending
them again is the normal recovery path (duplicates are harmless).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from ..dispatch import send_request
from ..model import Status
from ..store.codec import run_from_item
from .stack import LocalStack

log = logging.getLogger(__name__)

FORMAT = 1
FILE_NAME = "state.json"
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
)


def _scan(stack: LocalStack) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    req: dict[str, Any] = {"TableName": stack.settings.table, "ConsistentRead": True}
    while True:
        resp = stack.ddb.scan(**req)
        items.extend(resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            return items
        req["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _schedules(stack: LocalStack) -> list[dict[str, Any]]:
    group = stack.settings.schedule_group
    found = []
    for page in stack.scheduler.get_paginator("list_schedules").paginate(GroupName=group):
        for s in page.get("Schedules", []):
            full = stack.scheduler.get_schedule(Name=s["Name"], GroupName=group)
            found.append({k: full[k] for k in _SCHEDULE_KEYS if k in full})
    return found


def save(stack: LocalStack, path: Path) -> dict[str, int]:
    """Write the stack's state to `path` atomically; returns what it holds."""
    state = {
        "format": FORMAT,
        "saved_at": stack.clock.now_ms(),
        "items": _scan(stack),
        "schedules": _schedules(stack),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, separators=(",", ":")))
    os.replace(tmp, path)
    return counts(state)


def counts(state: dict[str, Any]) -> dict[str, int]:
    runs = [i for i in state["items"] if i.get("sk", {}).get("S") == "RUN"]
    return {
        "runs": len(runs),
        "unfinished": sum(1 for i in runs if not run_from_item(i).status.terminal),
        "items": len(state["items"]),
        "schedules": len(state["schedules"]),
    }


def restore(stack: LocalStack, path: Path) -> dict[str, int] | None:
    """Load `path` into a freshly started stack; None when there is no snapshot."""
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown snapshot format {state.get('format')!r}")
    table = stack.settings.table
    items = state["items"]
    for start in range(0, len(items), 25):
        request = {table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        while request:
            request = stack.ddb.batch_write_item(RequestItems=request).get("UnprocessedItems")
    for schedule in state["schedules"]:
        schedule = {**schedule, "GroupName": stack.settings.schedule_group}
        schedule["Target"] = {
            **schedule["Target"],
            "Arn": stack.settings.queue_arn,
        }
        try:
            stack.scheduler.create_schedule(**schedule)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConflictException":
                raise
    now = stack.clock.now_ms()
    for item in items:
        if item.get("sk", {}).get("S") != "RUN":
            continue
        run = run_from_item(item)
        if run.status.terminal or (run.status == Status.WAITING and run.wake_at is None):
            continue  # finished, or woken by a signal only
        delay = 0 if run.wake_at is None else max(0, -(-(run.wake_at - now) // 1000))
        if delay <= 900:
            stack.sqs.send_message(**send_request(stack.settings, run.id, "restored", delay))
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

    def stop(self) -> dict[str, int]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return save(self.stack, self.path)
