"""The security tier: one embedded stack for the whole tier (its own API and
moto server), with no background sweeps, so that "nothing written" is a
before/after comparison of the table and the queue.

moto's state is global to the process: a reset by any test (other tiers reset
per test, and xdist interleaves tiers in one process) empties this stack too.
`sec_stack` therefore checks, per test, that the table is there, and recreates
the resources (same names, same URLs) when it is not.

The same names also mean that this tier's queue holds the messages the last
test of another tier left in the process: one in flight (its worker was
killed) or delayed becomes visible by itself a few seconds later, and moto
counts visible, in-flight and delayed messages one after another, so a message
that changes state between two of the counts is counted twice or not at all:
the queue's footprint moves by one with nothing written. `sec_stack` starts
each test with a new queue when the queue holds such messages; this tier's
own never move (it sends none with a delay and receives none, but for the
test that runs a worker, which waits until that worker has deleted them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from orchestrator.clock import SkippingClock
from orchestrator.local import LocalStack
from orchestrator.local.bootstrap import bootstrap
from tests.conftest import TEST_SETTINGS
from tests.security._state import CONFIGURED_HOST, footprint


@pytest.fixture(scope="package")
def _tier_stack() -> Iterator[LocalStack]:
    stack = LocalStack(
        clock=SkippingClock(),
        settings=TEST_SETTINGS,
        background_interval=3600,
        allowed_hosts=(CONFIGURED_HOST,),  # as `orchestrator dev --allowed-host`
    ).start()
    yield stack
    stack.stop()


@pytest.fixture
def sec_stack(_tier_stack: LocalStack) -> LocalStack:
    stack = _tier_stack
    assert stack.moto is not None
    if stack.settings.table not in stack.ddb.list_tables()["TableNames"]:
        bootstrap(stack.session, stack.moto.url, stack.settings)
    elif _moving(stack):
        # PurgeQueue would do, but moto allows one per queue a minute, as SQS does.
        stack.sqs.delete_queue(QueueUrl=stack.settings.queue_url)
        bootstrap(stack.session, stack.moto.url, stack.settings)  # the same URL again
    return stack


def _moving(stack: LocalStack) -> bool:
    """Messages in flight or delayed: another tier's, to become visible by themselves."""
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.settings.queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return any(int(v) for v in attrs.values())


@pytest.fixture
def unchanged(sec_stack: LocalStack) -> Iterator[Callable[[], None]]:
    """Call it to assert that nothing was written since the test began."""
    before = footprint(sec_stack)

    def check() -> None:
        assert footprint(sec_stack) == before

    yield check
