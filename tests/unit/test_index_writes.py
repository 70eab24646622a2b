"""Which state changes touch the sweeper's `by_due` index: pinned on the request
builders, because every index write is billed (docs/performance.md)."""

from __future__ import annotations

from orchestrator import resources as r
from orchestrator.model import Run, Signal, Status, StepKind, StepRecord
from orchestrator.store import record_requests as rq
from orchestrator.store import requests as q
from orchestrator.store import sweeps
from orchestrator.store.codec import new_run_item, shard

T = "t"
WID = "run-1"
DUE_PK = r.due_pk(shard(WID, r.DUE_SHARDS))


def _sets_due(req: dict) -> bool:
    update = req.get("UpdateExpression", "")
    head = update.split(" REMOVE ")[0]
    values = req.get("ExpressionAttributeValues", {})
    return "#da = " in head and "#dp = :dpk" in head and values[":dpk"] == {"S": DUE_PK}


def _removes_due(req: dict) -> bool:
    update = req.get("UpdateExpression", "")
    return " REMOVE " in update and "#da" in update.split(" REMOVE ")[1]


def test_the_happy_path_never_writes_by_due() -> None:
    run = Run(id=WID, name="n", status=Status.PENDING, input="{}", created_at=1, updated_at=1)
    item = new_run_item(run)
    assert r.BY_DUE.partition_key not in item and r.BY_DUE.sort_key not in item
    assert r.BY_CREATED.partition_key in item  # the list index: once per run
    claim = q.claim(T, WID, owner="w", now=1, lease_ms=1000, names=["n"])
    beat = q.heartbeat(T, WID, epoch=1, lease_until=2)
    step = rq.put_step(T, WID, StepRecord("0", "s", StepKind.STEP, 1, 1, result="1", resolved=True))
    for req in (claim, beat):
        assert "#da" not in req["UpdateExpression"] and "#dp" not in req["UpdateExpression"]
    assert r.BY_DUE.sort_key not in step["Item"]
    finish = q.finish(T, WID, epoch=1, now=2, status=Status.COMPLETED, output="1")
    assert _removes_due(finish)  # a no-op (no index write) when the run never entered


def test_parks_wakes_releases_and_promotions_put_the_run_in_by_due() -> None:
    sleep = q.park_sleep(T, WID, epoch=1, now=1, wake_at=5, due_at=6)
    wait = q.park_wait(T, WID, epoch=1, now=1, signal="go", seen_seq=0, deadline=5, due_at=6)
    sig = Signal(name="go", seq=1, payload="1", sent_at=1)
    wake = rq.send_signal(
        T,
        WID,
        signal=sig,
        prev_seq=0,
        seen_status=Status.WAITING,
        epoch=1,
        now=1,
        wake=True,
        due_at=6,
    )["TransactItems"][0]["Update"]
    promote = sweeps.promote(T, WID, epoch=1, status=Status.RUNNING, due_at=6, dispatch=False)
    for req in (sleep, wait, wake, promote):
        assert _sets_due(req), req["UpdateExpression"]
    assert "attribute_not_exists(#da)" in promote["ConditionExpression"]
    release = q.release(T, WID, epoch=1, due_at=6)
    assert "#da = if_not_exists(#da, :due)" in release["UpdateExpression"]
    assert release["ExpressionAttributeValues"][":dpk"] == {"S": DUE_PK}
    # A wait without a timeout leaves the index: only a signal moves it on.
    forever = q.park_wait(
        T, WID, epoch=1, now=1, signal="go", seen_seq=0, deadline=None, due_at=None
    )
    assert _removes_due(forever) and not _sets_due(forever)
    # A signal that does not wake the run leaves the index alone.
    quiet = rq.send_signal(
        T,
        WID,
        signal=sig,
        prev_seq=0,
        seen_status=Status.RUNNING,
        epoch=1,
        now=1,
        wake=False,
        due_at=6,
    )["TransactItems"][0]["Update"]
    assert "#da" not in quiet["UpdateExpression"]
