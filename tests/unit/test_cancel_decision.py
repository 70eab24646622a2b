"""The one decision of a cancel (orchestrator/children.cancel_request), which the
API's store and a worker cancelling its children both call."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.children import NOTIFY_GRACE_MS, cancel_request, notify_due
from orchestrator.model import Run, Status

RUN = Run(id="r", name="w", status=Status.PENDING, input="{}", created_at=1, updated_at=1, epoch=3)


@pytest.mark.parametrize("status", [s for s in Status if s.terminal])
def test_a_finished_run_is_left_alone(status: Status) -> None:
    assert cancel_request("t", replace(RUN, status=status), reason="x", now=5) == (
        f"already_{status.value}",
        None,
    )


def test_a_running_run_gets_a_request_once() -> None:
    running = replace(RUN, status=Status.RUNNING)
    outcome, req = cancel_request("t", running, reason="stop", now=5)
    assert outcome == "requested" and req is not None
    assert req["ExpressionAttributeValues"][":epoch"] == {"N": "3"}  # fenced by the epoch read
    again = replace(running, cancel_requested="stop")
    assert cancel_request("t", again, reason="stop", now=5) == ("already_requested", None)


@pytest.mark.parametrize("status", [Status.PENDING, Status.SLEEPING, Status.WAITING])
def test_a_run_no_worker_holds_is_cancelled_by_the_write_itself(status: Status) -> None:
    outcome, req = cancel_request("t", replace(RUN, status=status), reason="stop", now=5)
    assert outcome == "cancelled" and req is not None
    assert req["ExpressionAttributeValues"][":seen"] == {"S": status.value}


def test_only_a_child_whose_parent_waits_to_be_told_stays_due() -> None:
    assert notify_due(RUN, 100) is None
    child = replace(RUN, parent_id="p", parent_op="0")
    assert notify_due(child, 100) == 100 + NOTIFY_GRACE_MS
    assert notify_due(replace(child, parent_polls=True), 100) is None  # its parent polls
