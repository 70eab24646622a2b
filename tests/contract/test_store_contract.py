"""One contract for the store a run's worker uses (`worker/_store_api.RunStore`):
each case runs against the DynamoDB store on the moto server and against the
in-memory fake (`tests/fakes/memory_store.py`). The fake may only be used for
unit tests because these cases hold for it exactly as for DynamoDB: what one
refuses, the other refuses. The fixture and the probes are in conftest.py and
backends.py; the messages, timers, raw DynamoDB and value cases in
test_store_contract_effects.py, which also checks that every member of the
interface has a case."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.model import ClaimFailure, ErrorInfo, Run, Status, StepKind, StepRecord
from tests.contract.backends import LEASE, Backend, covers
from worker._store import Refused


# --- claims -----------------------------------------------------------------------------------
@covers("claim", "create_run")
async def test_one_claim_wins_until_the_lease_ends(backend: Backend) -> None:
    t = backend.now
    await backend.create("r1")
    won = await backend.claim("r1", "w1", t)
    assert isinstance(won, Run)
    assert (won.status, won.epoch, won.owner, won.lease_until) == (
        Status.RUNNING,
        1,
        "w1",
        t + LEASE,
    )
    lost = await backend.claim("r1", "w2", t + LEASE)  # the lease's last millisecond
    assert isinstance(lost, Refused) and lost.old is not None
    assert (lost.old.owner, lost.old.epoch) == ("w1", 1)  # the holder, without a read
    taken = await backend.claim("r1", "w2", t + LEASE + 1)
    assert isinstance(taken, Run) and (taken.epoch, taken.owner) == (2, "w2")


@covers("claim")
async def test_a_claim_is_refused_for_a_missing_run_an_unserved_name_or_queue(
    backend: Backend,
) -> None:
    t = backend.now
    missing = await backend.claim("nope", "w1", t)
    assert isinstance(missing, Refused) and missing.old is None
    await backend.create("r1")
    assert isinstance(await backend.claim("r1", "w1", t, names=["other"]), Refused)
    await backend.create("r2", task_queue="gpu")
    on_default = await backend.claim("r2", "w1", t, queues={"default": ["count"]})
    assert isinstance(on_default, Refused)
    on_gpu = await backend.claim("r2", "w1", t, queues={"gpu": ["count"]})
    assert isinstance(on_gpu, Run) and on_gpu.epoch == 1


# --- owner writes -----------------------------------------------------------------------------
@covers("claim", "pin")
async def test_a_pinned_run_is_claimed_by_its_own_build_only(backend: Backend) -> None:
    t = backend.now
    await backend.create("p1")
    first = await backend.claim("p1", "a1", t, build_id="A", pinned_names=["count"])
    assert isinstance(first, Run) and (first.build_id, first.pinned) == ("A", False)
    stale = await backend.store.pin(Run(**{**vars(first), "epoch": first.epoch - 1}))
    assert isinstance(stale, Refused)  # a stale owner pins nothing
    # Between A's first claim and its pin, a worker that pins "count" refuses it.
    later = t + 2 * LEASE
    early = await backend.claim("p1", "b1", later, build_id="B", pinned_names=["count"])
    assert isinstance(early, Refused)
    pinned = await backend.store.pin(first)
    assert isinstance(pinned, Run) and pinned.pinned and pinned.route == "default@A"
    # Once pinned, no other build (pinning the name or not) and no build-less worker.
    for kw in ({"build_id": "B"}, {}):
        refused = await backend.claim("p1", "x", later, **kw)
        assert isinstance(refused, Refused) and refused.old is not None
        assert refused.old.epoch == first.epoch
    again = await backend.claim("p1", "a2", later, build_id="A")
    assert isinstance(again, Run) and again.epoch == first.epoch + 1


@covers("heartbeat")
async def test_only_the_current_epoch_extends_the_lease(backend: Backend) -> None:
    t = backend.now
    await backend.create("r1")
    await backend.claim("r1", "w1", t)
    await backend.claim("r1", "w2", t + LEASE + 1)  # w1's lease lapsed: epoch 2
    assert await backend.store.heartbeat("r1", epoch=1, lease_until=t + 10 * LEASE) is None
    beat = await backend.store.heartbeat("r1", epoch=2, lease_until=t + 10 * LEASE)
    assert beat is not None and beat.lease_until == t + 10 * LEASE


@covers("park_sleep", "get_run")
async def test_a_sleeping_run_is_claimed_only_once_its_time_has_come(backend: Backend) -> None:
    t = backend.now
    await backend.create("r1")
    await backend.claim("r1", "w1", t)
    stale = await backend.store.park_sleep("r1", epoch=0, now=t, wake_at=t + 5000)
    assert isinstance(stale, Refused)
    assert await backend.store.park_sleep("r1", epoch=1, now=t, wake_at=t + 5000) is None
    run = await backend.store.get_run("r1")
    assert run is not None and (run.status, run.wake_at, run.owner) == (
        Status.SLEEPING,
        t + 5000,
        None,
    )
    assert isinstance(await backend.claim("r1", "w2", t + 4999), Refused)
    woke = await backend.claim("r1", "w2", t + 5000)
    assert isinstance(woke, Run) and (woke.epoch, woke.wake_at) == (2, None)


@covers("park_wait")
async def test_a_park_on_a_signal_is_refused_once_a_signal_arrived_since_the_look(
    backend: Backend,
) -> None:
    t = backend.now
    await backend.create("r1")
    await backend.claim("r1", "w1", t)
    assert backend.deliver("r1", "go", '"early"') is False  # running: stored, nothing woken
    late = await backend.store.park_wait(
        "r1", epoch=1, now=t, signal="go", seen_seq=0, deadline=None
    )
    assert isinstance(late, Refused) and late.old is not None and late.old.signal_seq == 1
    parked = await backend.store.park_wait(
        "r1", epoch=1, now=t, signal="go", seen_seq=1, deadline=None
    )
    assert parked is None
    assert backend.deliver("r1", "other", '"x"') is False  # not what it waits for
    assert backend.deliver("r1", "go", '"now"') is True  # wakes it: pending, claimable
    run = await backend.store.get_run("r1")
    assert run is not None and run.status == Status.PENDING
    assert isinstance(await backend.claim("r1", "w2", t + 1), Run)


@covers("finish")
async def test_an_ended_run_is_final(backend: Backend) -> None:
    t = backend.now
    await backend.create("r1")
    await backend.claim("r1", "w1", t)
    assert not await backend.store.finish("r1", epoch=2, now=t, status=Status.COMPLETED)
    assert await backend.store.finish("r1", epoch=1, now=t, status=Status.COMPLETED, output="7")
    err = ErrorInfo("Boom", "late")
    assert not await backend.store.finish("r1", epoch=1, now=t, status=Status.FAILED, error=err)
    run = await backend.store.get_run("r1")
    assert run is not None and (run.status, run.output) == (Status.COMPLETED, "7")
    assert isinstance(await backend.claim("r1", "w2", t + 10 * LEASE), Refused)


@covers("release")
async def test_a_released_run_is_claimed_at_once(backend: Backend) -> None:
    t = backend.now
    await backend.create("r1")
    await backend.claim("r1", "w1", t)
    assert not await backend.store.release("r1", epoch=3, now=t)
    assert await backend.store.release("r1", epoch=1, now=t)
    taken = await backend.claim("r1", "w2", t + 1)  # well inside the old lease
    assert isinstance(taken, Run) and taken.epoch == 2


@covers("record_claim_failure")
async def test_a_failed_claim_is_counted_fenced_and_cleared_by_a_park(backend: Backend) -> None:
    t = backend.now
    await backend.create("r1")
    await backend.claim("r1", "w1", t)
    gone = ClaimFailure("ValueUnavailableError", "value 1a2b… is no longer stored (expired)", 1)
    store = backend.store
    # A stale owner counts nothing.
    assert not await store.record_claim_failure("r1", epoch=0, now=t, failure=gone, retry_at=t)
    assert await store.record_claim_failure("r1", epoch=1, now=t, failure=gone, retry_at=t + 1000)
    # The lease is kept until the retry time: the next claim waits for it.
    assert isinstance(await backend.claim("r1", "w2", t + 1000), Refused)
    again = await backend.claim("r1", "w2", t + 1001)
    assert isinstance(again, Run) and (again.epoch, again.claim_failure) == (2, gone)
    twice = ClaimFailure(gone.type, gone.message, 2)
    assert await store.record_claim_failure("r1", epoch=2, now=t, failure=twice, retry_at=t + 2001)
    third = await backend.claim("r1", "w3", t + 2002)
    assert isinstance(third, Run) and third.claim_failure == twice
    # The run went on: the park removes the count.
    assert await store.park_sleep("r1", epoch=3, now=t, wake_at=t + 5000) is None
    parked = await store.get_run("r1")
    assert parked is not None and parked.claim_failure is None
    # Counting into a run that parked meanwhile (not running) is refused.
    assert not await store.record_claim_failure("r1", epoch=3, now=t, failure=gone, retry_at=t)


async def test_the_terminal_write_removes_the_count(backend: Backend) -> None:
    t = backend.now
    await backend.create("r1")
    await backend.claim("r1", "w1", t)
    gone = ClaimFailure("AccessDenied", "Access Denied", 4)
    assert await backend.store.record_claim_failure(
        "r1", epoch=1, now=t, failure=gone, retry_at=t + 1
    )
    err = ErrorInfo("AccessDenied", "Access Denied")
    assert await backend.store.finish("r1", epoch=1, now=t, status=Status.FAILED, error=err)
    run = await backend.store.get_run("r1")
    assert run is not None and (run.status, run.claim_failure) == (Status.FAILED, None)


# --- the history ------------------------------------------------------------------------------
def _step(op: str, *, resolved: bool, attempts: int = 0, result: str | None = None) -> StepRecord:
    return StepRecord(
        op_id=op,
        name=f"s{op}",
        kind=StepKind.STEP,
        epoch=1,
        recorded_at=1,
        result=result,
        resolved=resolved,
        attempts=[{"n": i} for i in range(attempts)],
    )


@covers("put_step", "get_step")
async def test_a_position_keeps_its_first_outcome(backend: Backend) -> None:
    await backend.create("r1")
    first = await backend.store.put_step("r1", _step("0", resolved=True, result="1"))
    second = await backend.store.put_step("r1", _step("0", resolved=True, result="2"))
    assert (first.result, second.result) == ("1", "1")  # the loser reads the winner's
    assert (await backend.store.get_step("r1", "0")).result == "1"


@covers("put_step", "history")
async def test_retry_states_only_move_forward_and_an_outcome_ends_them(backend: Backend) -> None:
    await backend.create("r1")
    s = backend.store
    assert len((await s.put_step("r1", _step("1", resolved=False, attempts=2))).attempts) == 2
    back = await s.put_step("r1", _step("1", resolved=False, attempts=1))  # a stale owner
    assert len(back.attempts) == 2
    assert len((await s.put_step("r1", _step("1", resolved=False, attempts=3))).attempts) == 3
    done = await s.put_step("r1", _step("1", resolved=True, result="ok"))
    assert done.resolved and done.result == "ok"
    after = await s.put_step("r1", _step("1", resolved=False, attempts=9))
    assert after.resolved and after.result == "ok"
    history = await s.history("r1")
    assert list(history) == ["1"] and history["1"].result == "ok"


@covers("put_step")
async def test_one_writer_starts_each_at_most_once_attempt(backend: Backend) -> None:
    """An at-most-once start marker (attempt n started: n attempts, no retry
    time) is written by one of two writers; the retry state of attempt n
    replaces it once, and no second marker or retry state of n replaces that."""
    await backend.create("r1")
    s = backend.store

    def marker(n: int, at: int) -> StepRecord:
        return replace(_step("2", resolved=False, attempts=n), recorded_at=at)

    def retry(n: int, at: int) -> StepRecord:
        return replace(_step("2", resolved=False, attempts=n), recorded_at=at, retry_at=at + 1)

    assert (await s.put_step("r1", marker(1, 10))).recorded_at == 10
    assert (await s.put_step("r1", marker(1, 20))).recorded_at == 10  # the other writer
    assert (await s.put_step("r1", retry(1, 30))).recorded_at == 30  # attempt 1 failed
    assert (await s.put_step("r1", retry(1, 40))).recorded_at == 30  # once
    assert (await s.put_step("r1", marker(1, 50))).recorded_at == 30  # never started again
    assert (await s.put_step("r1", marker(2, 60))).recorded_at == 60  # attempt 2 starts
    assert (await s.put_step("r1", marker(2, 70))).recorded_at == 60
    done = await s.put_step("r1", replace(_step("2", resolved=True, result="1"), recorded_at=80))
    assert done.resolved and (await s.get_step("r1", "2")).recorded_at == 80


@covers("put_batch", "history")
async def test_a_batch_is_written_by_the_current_owner_only(backend: Backend) -> None:
    t = backend.now
    await backend.create("r1")
    old = await backend.claim("r1", "w1", t)
    assert isinstance(old, Run)
    await backend.store.put_step("r1", _step("0", resolved=True, result='"single"'))
    batch = [_step(str(i), resolved=True, result=f'"r{i}"') for i in (1, 2, 3)]
    # w1's lease expires and w2 claims: w1's flush is refused and writes nothing.
    new = await backend.claim("r1", "w2", t + LEASE + 1)
    assert isinstance(new, Run) and new.epoch == old.epoch + 1
    assert not await backend.store.put_batch("r1", epoch=old.epoch, now=t, records=batch)
    assert list(await backend.store.history("r1")) == ["0"]
    # The owner's flush lands; one history read returns each entry at its own id,
    # in order with the single record, as if each had been recorded alone.
    assert await backend.store.put_batch("r1", epoch=new.epoch, now=t, records=batch)
    history = await backend.store.history("r1")
    assert [(op, rec.name, rec.result, rec.resolved) for op, rec in history.items()] == [
        ("0", "s0", '"single"', True),
        ("1", "s1", '"r1"', True),
        ("2", "s2", '"r2"', True),
        ("3", "s3", '"r3"', True),
    ]
    assert {rec.epoch for op, rec in history.items() if op != "0"} == {new.epoch}
    # A run that is not running takes no batch, even from its last owner.
    await backend.store.finish("r1", epoch=new.epoch, now=t, status=Status.COMPLETED, output="1")
    late = [_step("4", resolved=True, result='"late"')]
    assert not await backend.store.put_batch("r1", epoch=new.epoch, now=t, records=late)
    assert "4" not in await backend.store.history("r1")


@covers("finish", "history")
async def test_a_terminal_write_carries_a_last_batch_for_its_owner_only(backend: Backend) -> None:
    t = backend.now
    await backend.create("r1")
    old = await backend.claim("r1", "w1", t)
    assert isinstance(old, Run)
    new = await backend.claim("r1", "w2", t + LEASE + 1)
    assert isinstance(new, Run)
    last = [_step(str(i), resolved=True, result=f'"r{i}"') for i in (0, 1)]

    async def finish(epoch: int) -> bool:
        done = Status.COMPLETED
        return await backend.store.finish("r1", epoch=epoch, now=t, status=done, last_batch=last)

    assert not await finish(old.epoch)
    run = await backend.store.get_run("r1")
    assert run is not None and run.last_batch is None  # the refused end wrote nothing
    assert await finish(new.epoch)
    run = await backend.store.get_run("r1")
    assert run is not None and run.last_batch is not None
    history = await backend.store.history("r1", last_batch=run.last_batch)
    assert [(op, rec.result, rec.epoch) for op, rec in history.items()] == [
        ("0", '"r0"', new.epoch),
        ("1", '"r1"', new.epoch),
    ]


@covers("inbox", "consume", "resolve_timeout")
async def test_a_wait_is_resolved_once_by_a_signal_or_its_timeout(backend: Backend) -> None:
    t = backend.now
    await backend.create("r1")
    await backend.claim("r1", "w1", t)
    s = backend.store
    wait = StepRecord(op_id="0", name="w", kind=StepKind.WAIT, epoch=1, recorded_at=t, signal="go")
    other = StepRecord(
        op_id="1", name="w2", kind=StepKind.WAIT, epoch=1, recorded_at=t, signal="go"
    )
    await s.put_step("r1", wait)
    await s.put_step("r1", other)
    backend.deliver("r1", "go", '"a"')
    (sig,) = await s.inbox("r1", "go")
    assert await s.consume("r1", wait=wait, signal=sig, now=t)
    assert not await s.consume("r1", wait=other, signal=sig, now=t)  # one signal, one wait
    assert await s.inbox("r1", "go") == []
    assert not await s.resolve_timeout("r1", op_id="0", now=t)  # resolved by the signal
    assert await s.resolve_timeout("r1", op_id="1", now=t)
    assert not await s.resolve_timeout("r1", op_id="1", now=t)
    backend.deliver("r1", "go", '"b"')
    (sig2,) = await s.inbox("r1", "go")
    assert not await s.consume("r1", wait=other, signal=sig2, now=t)  # timed out already
    history = await s.history("r1")
    assert (history["0"].result, history["0"].timed_out) == ('"a"', False)
    assert (history["1"].timed_out, history["1"].resolved) == (True, True)


@covers("inbox", "consume", "finish", "expire_inbox")
async def test_the_inbox_counts_what_is_unconsumed_and_the_end_expires_the_rest(
    backend: Backend,
) -> None:
    t = backend.now
    s = backend.store
    await backend.create("r1")
    claimed = await backend.claim("r1", "w1", t)
    assert isinstance(claimed, Run)
    for name, payload in (("go", '"a"'), ("go", '"bb"'), ("other", '"c"')):
        backend.deliver("r1", name, payload)
    run = await s.get_run("r1")
    assert run is not None and (run.inbox_count, run.inbox_bytes) == (3, 3 + 4 + 3)
    wait = StepRecord(op_id="0", name="w", kind=StepKind.WAIT, epoch=1, recorded_at=t, signal="go")
    await s.put_step("r1", wait)
    first = (await s.inbox("r1", "go"))[0]
    assert (first.seq, first.attempt, first.size) == (1, 0, 3)
    assert await s.consume("r1", wait=wait, signal=first, now=t)
    run = await s.get_run("r1")
    assert run is not None and (run.inbox_count, run.inbox_bytes) == (2, 4 + 3)
    assert await s.finish("r1", epoch=claimed.epoch, now=t + 1, status=Status.COMPLETED)
    run = await s.get_run("r1")
    assert run is not None and (run.inbox_count, run.inbox_bytes) == (0, 0)
    assert await backend.probe.expiring("r1") == {2, 3}  # what no wait consumed
    assert await s.expire_inbox("r1", now=t + 2) == 0  # again: nothing left to expire
