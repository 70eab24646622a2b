"""Runs recorded before operation ids had parts keep replaying: their step
items carry a flat `position` and the key STEP#<position:06d>, which is exactly
the key of the root scope's id, so the upgraded worker finds them where its
replay looks."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from tests.conftest import executions
from tests.helpers import wait_status
from tests.workflows import ALL


def _old_step_item(run_id: str, position: int, **values: object) -> dict:
    """A step item exactly as the engine wrote it before operation ids (no "op")."""
    item = {"pk": f"WF#{run_id}", "sk": f"STEP#{position:06d}", "position": position, "epoch": 1}
    item.update(values)
    return item


def test_a_run_recorded_with_flat_positions_replays_after_the_upgrade(
    stack, exec_log: Path
) -> None:
    run, _ = stack.service.start("sleeper", {"seconds": 60})
    now = stack.clock.now_ms()
    ddb = stack.session.resource("dynamodb", endpoint_url=stack.settings.endpoint_url)
    table = ddb.Table(stack.settings.table)
    table.put_item(
        Item=_old_step_item(
            run.id,
            0,
            name="before",
            kind="step",
            recorded_at=now,
            started_at=now,
            result='"before"',
            resolved=True,
        )
    )
    table.put_item(
        Item=_old_step_item(
            run.id,
            1,
            name="nap",
            kind="sleep",
            recorded_at=now,
            started_at=now,
            wake_at=now - 1,
            resolved=True,
        )
    )
    # The run as the old engine left it: parked on the sleep, due now.
    table.update_item(
        Key={"pk": f"WF#{run.id}", "sk": "RUN"},
        UpdateExpression="SET #st = :s, epoch = :e, wake_at = :w",
        ExpressionAttributeNames={"#st": "status"},
        ExpressionAttributeValues={":s": "sleeping", ":e": 1, ":w": now - 1},
    )
    steps = stack.store.steps(run.id)
    assert [(s.op_id, s.name) for s in steps] == [("0", "before"), ("1", "nap")]
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        done = wait_status(stack, run.id, "completed", "failed")
    assert done.status == Status.COMPLETED, done.error
    assert json.loads(done.output) == "awake"
    assert executions(exec_log) == [f"{run.id}:after"]  # "before" replayed from the old record
    assert [s.op_id for s in stack.store.steps(run.id)] == ["0", "1", "2"]
