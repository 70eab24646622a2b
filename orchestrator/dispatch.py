"""Effects after the write: the SQS message that makes a run runnable, and the
timer (SQS delay or a one-time EventBridge Scheduler schedule) that wakes a
parked run. Request builders are pure and shared with the worker's asyncio
client; `Dispatcher` sends them with boto3.

Every effect is idempotent: a message only says "look at run X", and the
claim decides; a schedule's name is derived from the run and the position, so
a retry cannot create a second one.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from . import resources as r
from . import safejson
from .errors import BadInputError
from .model import WORKFLOW_ID_RE, WORKFLOW_NAME_RE
from .settings import Settings


def message_body(
    workflow_id: str, reason: str, waiting_since: int | None = None, name: str | None = None
) -> str:
    """`waiting_since`: when the run first found its task queue over a limit
    (ms), carried by the re-sends of a run waiting for a slot. `name`: the run's
    workflow name, when the sender knows it (a hint: a worker that does not
    serve it hands the message back without a claim, worker/_handoff.py; the
    claim still checks the name)."""
    body: dict[str, object] = {"id": workflow_id, "reason": reason}
    if waiting_since is not None:
        body["since"] = waiting_since
    if name is not None:
        body["name"] = name
    return json.dumps(body, separators=(",", ":"))


def parse_waiting_since(body: str) -> int | None:
    """The `since` a waiting run's message carries (None: absent or not a
    plausible time). Never raises."""
    try:
        since = safejson.loads(body, what="message body", max_depth=8).get("since")
    except (BadInputError, AttributeError):
        return None
    return since if type(since) is int and 0 < since < 10**14 else None


def parse_name(body: str) -> str | None:
    """The workflow name a message carries as a hint (None: absent or not a
    valid name). Never raises."""
    try:
        name = safejson.loads(body, what="message body", max_depth=8).get("name")
    except (BadInputError, AttributeError):
        return None
    return name if isinstance(name, str) and WORKFLOW_NAME_RE.fullmatch(name) else None


def parse_body(body: str) -> str | None:
    """The workflow id a message names, or None for a message that is not ours
    (not JSON, no "id", or an id no run can have: never sent on to DynamoDB,
    where an oversize key is a ValidationException, not a clean miss).
    Never raises, whatever the body (deep nesting, huge numbers, bad UTF-8)."""
    try:
        data = safejson.loads(body, what="message body", max_depth=8)
        wid = data["id"]
        return wid if isinstance(wid, str) and WORKFLOW_ID_RE.fullmatch(wid) else None
    except (BadInputError, KeyError, TypeError, IndexError):
        return None


def send_request(
    settings: Settings,
    workflow_id: str,
    reason: str,
    delay_s: int = 0,
    task_queue: str | None = None,
    waiting_since: int | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The message that makes a run runnable, to its task queue's SQS queue.
    `name` (the run's workflow name) only with the run's own route as
    `task_queue`: a worker trusts the hint for the queue it received it on."""
    req: dict[str, Any] = {
        "QueueUrl": settings.queue_url_for(task_queue),
        "MessageBody": message_body(workflow_id, reason, waiting_since, name),
    }
    if delay_s > 0:
        req["DelaySeconds"] = min(delay_s, r.MAX_SQS_DELAY_SECONDS)
    return req


def pinned_queue_request(settings: Settings, key: str) -> dict[str, Any]:
    """CreateQueue for a pinned build's queue ("<task queue>@<build>"): the work
    queue's settings, and the task queue's dead-letter queue. Idempotent: SQS
    returns the existing queue when the attributes match."""
    url = settings.queue_url_for(key)
    return {
        "QueueName": url.rstrip("/").rsplit("/", 1)[-1],
        "Attributes": {
            "SqsManagedSseEnabled": "true",  # as the stack's queues
            "VisibilityTimeout": str(settings.lease_seconds + 5),
            "MessageRetentionPeriod": str(r.QUEUE_RETENTION_SECONDS),
            "RedrivePolicy": json.dumps(
                {
                    "deadLetterTargetArn": settings.dlq_arn_for(key),
                    "maxReceiveCount": str(r.MAX_RECEIVE_COUNT),
                }
            ),
        },
    }


def missing_queue_message(key: str, url: str) -> str:
    build = r.split_queue_key(key)[1]
    return (
        f"the queue of build {build!r} ({url.rsplit('/', 1)[-1]}) does not exist: start a "
        "worker of that build (it creates its queue when allowed to), or declare the build "
        "in the stack's pinned_builds"
    )


def is_missing_queue(e: ClientError) -> bool:
    code = e.response.get("Error", {}).get("Code", "")
    return "NonExistentQueue" in code or "QueueDoesNotExist" in code


def queue_exists(sqs: Any, settings: Settings, key: str) -> bool:
    """Whether a queue key's SQS queue exists: one GetQueueAttributes (which
    workers and the API may call; GetQueueUrl they may not)."""
    try:
        sqs.get_queue_attributes(QueueUrl=settings.queue_url_for(key), AttributeNames=["QueueArn"])
        return True
    except ClientError as e:
        if is_missing_queue(e):
            return False
        raise


def schedule_name(workflow_id: str, op_id: str | int, seq: int = 0) -> str:
    """Deterministic, so that a retried park cannot create two schedules; `seq`
    tells apart successive timers of one operation (a step's retry attempts).
    Scheduler names allow 64 characters of [0-9a-zA-Z-_.]: a root operation's id
    is kept as it is, a nested one (which can be long) is hashed."""
    digest = hashlib.sha256(workflow_id.encode()).hexdigest()[:40]
    op = str(op_id)
    if not op.isdigit():
        op = "h" + hashlib.sha256(op.encode()).hexdigest()[:10]
    return f"wake-{digest}-{op}" + (f"-{seq}" if seq else "")


def at_expression(epoch_ms: int) -> str:
    # at() has one-second resolution; round up so the run is never woken early.
    ts = datetime.fromtimestamp(math.ceil(epoch_ms / 1000), tz=UTC)
    return f"at({ts.strftime('%Y-%m-%dT%H:%M:%S')})"


def schedule_request(
    settings: Settings,
    workflow_id: str,
    name: str,
    wake_at_ms: int,
    task_queue: str | None = None,
) -> dict[str, Any]:
    return {
        "Name": name,
        "GroupName": settings.schedule_group,
        "ScheduleExpression": at_expression(wake_at_ms),
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "ActionAfterCompletion": "DELETE",
        "Target": {
            "Arn": settings.queue_arn_for(task_queue),
            "RoleArn": settings.scheduler_role_arn,
            "Input": message_body(workflow_id, "timer"),
        },
    }


def timer_plan(now_ms: int, wake_at_ms: int) -> tuple[str, int]:
    """("delay", seconds) for a wake-up at most 15 minutes away, else
    ("schedule", 0)."""
    remaining = max(0, math.ceil((wake_at_ms - now_ms) / 1000))
    if remaining <= r.MAX_SQS_DELAY_SECONDS:
        return "delay", remaining
    return "schedule", 0


def is_conflict(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code") == "ConflictException"


class Dispatcher:
    """Synchronous sender for the API and the sweeper."""

    def __init__(self, sqs: Any, settings: Settings, scheduler: Any = None) -> None:
        self._sqs = sqs
        self._scheduler = scheduler
        self._settings = settings

    @property
    def scheduler(self) -> Any:
        """The EventBridge Scheduler client (None when this dispatcher has none)."""
        return self._scheduler

    def send(
        self,
        workflow_id: str,
        reason: str,
        delay_s: int = 0,
        task_queue: str | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self._sqs.send_message(
            **send_request(self._settings, workflow_id, reason, delay_s, task_queue, name=name)
        )

    def queue_exists(self, key: str) -> bool:
        return queue_exists(self._sqs, self._settings, key)

    def delete_schedule(self, name: str) -> None:
        if self._scheduler is None:
            return
        try:
            self._scheduler.delete_schedule(Name=name, GroupName=self._settings.schedule_group)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
