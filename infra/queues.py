"""The work queue and its dead-letter queue.

Both are standard queues, encrypted with SQS-managed keys (no KMS permissions for
workers or for EventBridge Scheduler to manage) and refuse non-TLS requests. The
visibility timeout equals the lease: a message whose worker died becomes visible
again when that worker's lease would have expired. After `MAX_RECEIVE_COUNT`
deliveries a message moves to the DLQ, which the sweeper drains and an alarm
watches.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from orchestrator import resources as r

LONG_POLL_SECONDS = 20  # the SQS maximum; workers long-poll


class WorkQueues(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        lease_seconds: int,
        removal_policy: RemovalPolicy,
        queue_name: str | None = None,
        dlq_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        retention = Duration.seconds(r.QUEUE_RETENTION_SECONDS)
        self.dlq = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=dlq_name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # A standard queue's DLQ keeps the original enqueue time: keep the maximum.
            retention_period=retention,
            removal_policy=removal_policy,
        )
        self._lease_seconds = lease_seconds
        self._removal_policy = removal_policy
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=queue_name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=retention,
            visibility_timeout=Duration.seconds(lease_seconds),
            receive_message_wait_time=Duration.seconds(LONG_POLL_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dlq, max_receive_count=r.MAX_RECEIVE_COUNT
            ),
            removal_policy=removal_policy,
        )

    def build_queue(self, scope: Construct, construct_id: str, *, queue_name: str) -> sqs.Queue:
        """A pinned build's queue on this task queue ("<task queue>@<build>"): the
        work queue's settings, and this pair's dead-letter queue."""
        return sqs.Queue(
            scope,
            construct_id,
            queue_name=queue_name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.seconds(r.QUEUE_RETENTION_SECONDS),
            visibility_timeout=Duration.seconds(self._lease_seconds),
            receive_message_wait_time=Duration.seconds(LONG_POLL_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dlq, max_receive_count=r.MAX_RECEIVE_COUNT
            ),
            removal_policy=self._removal_policy,
        )
