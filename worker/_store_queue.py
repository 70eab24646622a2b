"""The worker's SQS and Scheduler requests (a part of `AsyncStore`,
worker/_store.py): receiving, the batched deletes, visibility changes, sends to
a run's task queue, pinned builds' queues and a parked run's timer."""

from __future__ import annotations

import contextlib
from typing import Any

from botocore.exceptions import ClientError

from orchestrator.dispatch import (
    is_conflict,
    is_missing_queue,
    missing_queue_message,
    pinned_queue_request,
    schedule_name,
    schedule_request,
    send_request,
    timer_plan,
)
from orchestrator.settings import Settings

from ._deletes import DeleteBatcher


class _QueueRequests:
    """The queue half of AsyncStore. The attributes below are AsyncStore's."""

    settings: Settings
    _sqs: Any
    _scheduler: Any
    _delete_max_wait: float
    _deletes: dict[str, DeleteBatcher]
    _receipt_queue: dict[str, str]
    _run_queue: dict[str, str | None]

    # --- queue and timers -------------------------------------------------------------------
    async def arrange_timer(
        self, workflow_id: str, op_id: str, seq: int, *, now: int, wake_at: int
    ) -> str:
        kind, delay = timer_plan(now, wake_at)
        queue = self._run_queue.get(workflow_id)
        if kind == "delay":
            await self._sqs.send_message(
                **send_request(self.settings, workflow_id, "timer", delay, queue)
            )
            return kind
        name = schedule_name(workflow_id, op_id, seq)
        try:
            await self._scheduler.create_schedule(
                **schedule_request(self.settings, workflow_id, name, wake_at, queue)
            )
        except ClientError as e:
            if not is_conflict(e):  # the same name exists: a retry; one schedule is enough
                raise
        return kind

    @property
    def sqs(self) -> Any:
        return self._sqs

    async def delete_message(self, receipt: str) -> None:
        """Queue the delete and return: it goes out in a DeleteMessageBatch within
        the batcher's max_wait (see worker/_deletes.py). A stale receipt means the
        message was redelivered; the claim path handles it."""
        url = self._receipt_queue.pop(receipt, self.settings.queue_url)
        batcher = self._deletes.get(url)
        if batcher is None:
            batcher = DeleteBatcher(self._sqs, url, max_wait=self._delete_max_wait)
            self._deletes[url] = batcher
        batcher.add(receipt)

    def forget(self, receipt: str, workflow_id: str | None = None) -> None:
        """The message's handling ended without a delete (it comes back by itself)."""
        self._receipt_queue.pop(receipt, None)
        if workflow_id is not None:
            self._run_queue.pop(workflow_id, None)

    async def close(self) -> None:
        """Send the pending deletes. Call before the SQS client closes."""
        for batcher in self._deletes.values():
            await batcher.close()

    async def send(
        self,
        workflow_id: str,
        reason: str,
        task_queue: str | None,
        *,
        delay_s: int = 0,
        waiting_since: int | None = None,
        name: str | None = None,
    ) -> None:
        """A message for a run, to its task queue's SQS queue (`name`: the run's
        workflow name, a hint; only with the run's own route, see send_request)."""
        await self._sqs.send_message(
            **send_request(
                self.settings, workflow_id, reason, delay_s, task_queue, waiting_since, name
            )
        )

    async def ensure_queue(self, key: str) -> None:
        """Create a pinned build's queue ("<task queue>@<build>") if it is missing.
        Where the worker may not create queues (a deployment that declares its
        builds), the queue must exist already: a clear error otherwise."""
        req = pinned_queue_request(self.settings, key)
        try:
            await self._sqs.create_queue(**req)
            return
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if "AccessDenied" not in code and "QueueAlreadyExists" not in code:
                raise
        try:
            await self._sqs.get_queue_attributes(
                QueueUrl=self.settings.queue_url_for(key), AttributeNames=["QueueArn"]
            )
        except ClientError as e:
            if not is_missing_queue(e):
                raise
            raise RuntimeError(missing_queue_message(key, self.settings.queue_url_for(key))) from e

    async def set_visibility(self, receipt: str, seconds: int) -> None:
        with contextlib.suppress(ClientError):
            await self._sqs.change_message_visibility(
                QueueUrl=self._receipt_queue.get(receipt, self.settings.queue_url),
                ReceiptHandle=receipt,
                VisibilityTimeout=max(0, min(seconds, 43_200)),
            )

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility: int, task_queue: str | None = None
    ) -> list[dict[str, Any]]:
        url = self.settings.queue_url_for(task_queue)
        resp = await self._sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        messages = list(resp.get("Messages", []))
        for m in messages:
            self._receipt_queue[m["ReceiptHandle"]] = url
        return messages
