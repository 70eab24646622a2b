"""A worker makes its AWS clients from the session it is given (`session=`)."""

from __future__ import annotations

from typing import Any

import aioboto3

from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import wait_status
from tests.workflows import ALL


class CountingSession(aioboto3.Session):
    def __init__(self) -> None:
        super().__init__()
        self.made: list[str] = []

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        self.made.append(service_name)
        return super().client(service_name, *args, **kwargs)


def test_the_worker_uses_the_session_it_is_given(stack: Any) -> None:
    session = CountingSession()
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock, session=session):
        run, _ = stack.service.start("count", {"steps": 1})
        done = wait_status(stack, run.id, "completed")
    assert done.epoch == 1
    assert sorted(session.made) == ["dynamodb", "scheduler", "sqs"]
