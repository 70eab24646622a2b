"""What the security tests compare before and after a refused request."""

from __future__ import annotations

from orchestrator.local import LocalStack

CONFIGURED_HOST = "orchestrator.internal"  # the tier's stack accepts it besides loopback


def footprint(stack: LocalStack) -> tuple[int, int]:
    """Items in the table, and messages in the queue whatever their state.

    The sum of the three counts, not each: a receive (visible to in flight), a
    visibility timeout running out (back) and a delay ending (delayed to
    visible) move a message between them without anything being written; the
    tier's stack is shared by the tests of one process, and an earlier test's
    message may do any of these while a later test runs. A send or a delete
    changes the sum."""
    count = stack.ddb.scan(TableName=stack.settings.table, Select="COUNT")["Count"]
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.settings.queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return count, sum(int(v) for v in attrs.values())
