"""What the security tests compare before and after a refused request."""

from __future__ import annotations

from orchestrator.local import LocalStack

CONFIGURED_HOST = "orchestrator.internal"  # the tier's stack accepts it besides loopback


def footprint(stack: LocalStack) -> tuple[int, str, str]:
    """Items in the table and messages in the queue (visible, in flight)."""
    count = stack.ddb.scan(TableName=stack.settings.table, Select="COUNT")["Count"]
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.settings.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        count,
        attrs["ApproximateNumberOfMessages"],
        attrs["ApproximateNumberOfMessagesNotVisible"],
    )
