"""A worker makes its AWS clients from the session it is given (`session=`)."""

from __future__ import annotations

from typing import Any

import aioboto3
import pytest

from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from orchestrator.payloads import is_pointer
from tests.helpers import wait_status
from tests.workflows_large import LARGE


class CountingSession(aioboto3.Session):
    def __init__(self) -> None:
        super().__init__()
        self.made: list[str] = []

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        self.made.append(service_name)
        return super().client(service_name, *args, **kwargs)


@pytest.mark.parametrize(
    ("bucket", "clients"),
    # DynamoDB and SQS twice: the heartbeats' own clients (worker/_heartbeats.py).
    [
        (True, ["dynamodb", "dynamodb", "s3", "scheduler", "sqs", "sqs"]),
        (False, ["dynamodb", "dynamodb", "scheduler", "sqs", "sqs"]),
    ],
)
def test_the_worker_uses_the_session_it_is_given(
    stack: Any, bucket: bool, clients: list[str]
) -> None:
    """And makes an S3 client only when a value bucket is configured: without
    one, values stay in DynamoDB (a 40 KB result here, above the offload size)."""
    session = CountingSession()
    settings = stack.settings if bucket else stack.settings.with_(bucket="")
    with BackgroundWorker(LARGE, settings, clock=stack.clock, session=session):
        run, _ = stack.service.start("large.twice", {"size": 40_000})
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
    assert done.status == Status.COMPLETED, done.error
    assert sorted(session.made) == clients
    assert is_pointer(done.output) is False
    results = [s.result for s in stack.store.steps(run.id)]
    assert [is_pointer(x) for x in results] == [bucket, bucket]
