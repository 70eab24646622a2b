"""Invariant 1 (one owner) under real concurrency: racing claimers, a stale
owner after a takeover, a worker killed mid-step, a worker frozen past its lease."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from orchestrator.aws import client as aws_client
from orchestrator.model import ErrorInfo, Status, StepKind, StepRecord
from orchestrator.store import requests as q
from orchestrator.store.codec import run_from_item
from tests.conftest import executions, worker_env
from tests.helpers import WorkerProcess, wait_for, wait_status
from worker._store import AsyncStore, Refused


def _claim_round(clients, table: str, workflow_id: str, now: int) -> list[int | str]:
    """All clients claim at once (a barrier). Returns each claimer's answer: the
    epoch it won, or the error code that refused it. Threads only collect; the
    caller asserts, so a surprise in a thread fails the test."""
    barrier = threading.Barrier(len(clients))
    answers: list[int | str] = ["no answer"] * len(clients)

    def claim(i: int, ddb) -> None:
        req = q.claim(table, workflow_id, owner=f"w{i}", now=now, lease_ms=60_000, names=["count"])
        try:
            barrier.wait(timeout=30)
            resp = ddb.update_item(**req)
            answers[i] = run_from_item(resp["Attributes"]).epoch
        except ClientError as e:
            answers[i] = e.response["Error"]["Code"]
        except BaseException as e:  # reported by the caller's assertions
            answers[i] = repr(e)

    threads = [threading.Thread(target=claim, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


@pytest.mark.timeout(600)  # 1,700 serialized requests: slow, not stuck, on a loaded machine
@pytest.mark.parametrize(
    "rounds", [40, pytest.param(1000, marks=pytest.mark.slow, id="1000-rounds")]
)
def test_sixteen_concurrent_claimers_have_exactly_one_winner_each_round(stack, rounds) -> None:
    """The claim's condition gives one winner per round. The local moto server
    serializes DynamoDB requests (moto alone is not atomic under concurrency;
    AWS is, see orchestrator/local/aws.py), so this proves the condition and the
    epoch arithmetic under concurrent clients, not DynamoDB's own isolation."""
    claimers = 16
    clients = [
        aws_client("dynamodb", stack.settings, boto3.session.Session()) for _ in range(claimers)
    ]
    run, _ = stack.service.start("count", {})
    for n in range(rounds):
        # Each round: hand the run back (lease expired) so that every claimer may win.
        now = stack.clock.now_ms()
        answers = _claim_round(clients, stack.settings.table, run.id, now)
        winners = [a for a in answers if isinstance(a, int)]
        losers = [a for a in answers if not isinstance(a, int)]
        assert winners == [n + 1], f"round {n}: {answers}"
        assert set(losers) == {"ConditionalCheckFailedException"}, f"round {n}: {answers}"
        stack.ddb.update_item(**q.release(stack.settings.table, run.id, epoch=n + 1, due_at=now))
    assert stack.store.get(run.id).epoch == rounds


async def _async_store(stack):
    import aioboto3

    session = aioboto3.Session()
    kw = {"region_name": stack.settings.region, "endpoint_url": stack.settings.endpoint_url}
    return session, kw


def test_two_workers_racing_for_one_run_one_wins_and_the_loser_writes_nothing(stack) -> None:
    run, _ = stack.service.start("count", {})

    async def race():
        import aioboto3

        session = aioboto3.Session()
        kw = {"region_name": stack.settings.region, "endpoint_url": stack.settings.endpoint_url}
        async with session.client("dynamodb", **kw) as d1, session.client("dynamodb", **kw) as d2:
            a = AsyncStore(d1, None, None, stack.settings)
            b = AsyncStore(d2, None, None, stack.settings)
            now = stack.clock.now_ms()
            return await asyncio.gather(
                a.claim(run.id, owner="a", now=now, lease_ms=30_000, names=["count"]),
                b.claim(run.id, owner="b", now=now, lease_ms=30_000, names=["count"]),
            )

    results = asyncio.run(race())
    won = [r for r in results if not isinstance(r, Refused)]
    lost = [r for r in results if isinstance(r, Refused)]
    assert len(won) == 1 and len(lost) == 1
    assert lost[0].old is not None and lost[0].old.owner == won[0].owner  # it saw the winner
    stored = stack.store.get(run.id)
    assert stored.owner == won[0].owner and stored.epoch == 1


def test_a_stale_owner_cannot_change_the_run_after_a_takeover(stack) -> None:
    run, _ = stack.service.start("count", {})

    async def scenario():
        import aioboto3

        session = aioboto3.Session()
        kw = {"region_name": stack.settings.region, "endpoint_url": stack.settings.endpoint_url}
        async with session.client("dynamodb", **kw) as ddb:
            store = AsyncStore(ddb, None, None, stack.settings)
            now = stack.clock.now_ms()
            old = await store.claim(run.id, owner="old", now=now, lease_ms=1000, names=["count"])
            assert not isinstance(old, Refused)
            # The old owner's lease expires; a new owner claims.
            new = await store.claim(
                run.id, owner="new", now=now + 2000, lease_ms=30_000, names=["count"]
            )
            assert not isinstance(new, Refused) and new.epoch == old.epoch + 1
            # New owner records position 0.
            mine = StepRecord(
                "0", "s0", StepKind.STEP, new.epoch, now, result='"new"', resolved=True
            )
            assert await store.put_step(run.id, mine) == mine
            e = old.epoch
            refused = {
                "heartbeat": await store.heartbeat(run.id, epoch=e, lease_until=now + 60_000)
                is None,
                "complete": not await store.finish(
                    run.id, epoch=e, now=now, status=Status.COMPLETED, output='"x"'
                ),
                "fail": not await store.finish(
                    run.id, epoch=e, now=now, status=Status.FAILED, error=ErrorInfo("E", "m")
                ),
                "sleep": await store.park_sleep(run.id, epoch=e, now=now, wake_at=now + 10_000)
                is not None,
                "wait": await store.park_wait(
                    run.id, epoch=e, now=now, signal="go", seen_seq=0, deadline=None
                )
                is not None,
                "release": not await store.release(run.id, epoch=e, now=now),
            }
            # A stale step write at a recorded position gets the recorded outcome back.
            stale = StepRecord("0", "s0", StepKind.STEP, e, now, result='"old"', resolved=True)
            winner = await store.put_step(run.id, stale)
            return refused, winner, new

    refused, winner, new = asyncio.run(scenario())
    assert all(refused.values()), refused
    assert winner.result == '"new"' and winner.epoch == new.epoch
    stored = stack.store.get(run.id)
    assert stored.status == Status.RUNNING and stored.owner == "new" and stored.epoch == new.epoch
    assert [s.result for s in stack.store.steps(run.id)] == ['"new"']


def test_a_worker_killed_mid_step_is_taken_over_and_recorded_steps_are_kept(
    stack, exec_log: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    env = worker_env(stack, exec_log)
    run, _ = stack.service.start("count", {"steps": 5, "pause": 4, "marker": str(marker)})
    with WorkerProcess(env) as first:
        wait_for(marker.exists, timeout=30)
        first.kill()  # SIGKILL in the middle of step s2
    before = stack.store.steps(run.id)
    assert [s.name for s in before] == ["s0", "s1"]
    # The dead owner's lease (3 s) expires, its in-flight message comes back, and a
    # second worker replays: s0 and s1 from the record, s2 onwards for real.
    fast = {**env}
    with WorkerProcess(fast) as second:
        marker.unlink()
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
        second.terminate()
    assert done.status == Status.COMPLETED, done.error
    assert done.epoch == 2
    log = executions(exec_log)
    assert log.count(f"{run.id}:s0") == 1 and log.count(f"{run.id}:s1") == 1
    assert log.count(f"{run.id}:s2:start") == 2  # interrupted once, run again: at-least-once
    after = stack.store.steps(run.id)
    assert [(s.name, s.epoch) for s in after[:2]] == [(s.name, s.epoch) for s in before]


def test_a_frozen_owner_past_its_lease_writes_nothing_after_the_takeover(
    stack, exec_log: Path, tmp_path: Path
) -> None:
    """SIGSTOP stands in for a GC pause or a partition: the owner stops mid-step,
    its lease expires, another worker takes over and finishes; when the first
    resumes, its step finishes but it must record nothing."""
    marker = tmp_path / "started"
    env = worker_env(stack, exec_log)
    run, _ = stack.service.start("count", {"steps": 3, "pause": 2, "marker": str(marker)})
    with WorkerProcess(env) as first:
        wait_for(marker.exists, timeout=30)
        first.pause()
        try:
            marker.unlink()
            with WorkerProcess(env) as second:
                done = wait_status(stack, run.id, "completed", timeout=60)
                second.terminate()
            snapshot = (stack.store.get(run.id), stack.store.steps(run.id))
        finally:
            first.resume()
        # The first owner wakes and finishes its step (its second execution, after
        # the second worker's); SIGTERM then drains it: whatever it tries next is done
        # by the time it exits.
        wait_for(lambda: executions(exec_log).count(f"{run.id}:s1") == 2, timeout=30)
        first.terminate()
    assert done.epoch == 2
    assert (stack.store.get(run.id), stack.store.steps(run.id)) == snapshot
    assert all(s.epoch == 2 or s.name == "s0" for s in snapshot[1])
