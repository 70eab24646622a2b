"""What the security tests compare before and after a refused request."""

from __future__ import annotations

from orchestrator.local import LocalStack

CONFIGURED_HOST = "orchestrator.internal"  # the tier's stack accepts it besides loopback


def footprint(stack: LocalStack) -> tuple[int, int]:
    """Items in the table, and messages in the queue whatever their state.

    The sum of the three counts, not each: a receive (visible to in flight), a
    visibility timeout running out (back) and a delay ending (delayed to
    visible) move a message between them without anything being written. A
    send or a delete changes the sum. Moto takes the three counts one after
    another, not at one instant, so a message that changes state during the
    call can still move the sum: `sec_stack` (conftest.py) empties the queue
    before each test of messages another tier left in flight or delayed."""
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
