"""The sweeper's walk of `by_created`: new runs start outside `by_due`, and the
walk looks at each run once, a grace period after its start, putting a run that
is still pending or running into `by_due` (and sending a pending one).

The stacks here have no background sweeper (interval of an hour) and a grace of
a minute: each test drives the sweeps itself, and only the skipping clock it
advances moves a run past the grace (real time never does).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from orchestrator import resources as r
from orchestrator import sweeper as sweeper_module
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from orchestrator.store import requests as q
from orchestrator.store.codec import list_sk, run_key, shard
from orchestrator.sweeper import RUNNING_RECHECK_MS, Sweeper
from tests.conftest import TEST_SETTINGS
from tests.helpers import queued, wait_status
from tests.workflows import ALL

# A grace no real delay reaches, even under -n 4 on two cores: a run is past it
# only when a test advances the skipping clock.
GRACE_S = 60


class LostSend:
    def send(self, *a: Any, **k: Any) -> None:
        raise ConnectionError("network gone")


@pytest.fixture
def quiet(make_stack: Any) -> Any:
    return make_stack(interval=3600, settings=TEST_SETTINGS.with_(sweep_grace_ms=GRACE_S * 1000))


def _raw(stack: Any, workflow_id: str) -> dict[str, Any]:
    item: dict[str, Any] = stack.ddb.get_item(
        TableName=stack.settings.table, Key=run_key(workflow_id), ConsistentRead=True
    )["Item"]
    return item


def _lost_starts(stack: Any, n: int) -> list[str]:
    """n pending runs whose start message never reached the queue."""
    real = stack.service.dispatcher
    stack.service.dispatcher = LostSend()
    try:
        return [stack.service.start("count", {"steps": 1})[0].id for _ in range(n)]
    finally:
        stack.service.dispatcher = real


def test_a_run_finished_within_the_grace_is_walked_once_and_never_indexed(quiet: Any) -> None:
    with BackgroundWorker(ALL, quiet.settings, clock=quiet.clock):
        run, _ = quiet.service.start("count", {"steps": 2})
        assert r.BY_DUE.partition_key not in _raw(quiet, run.id)  # the start: out of by_due
        wait_status(quiet, run.id, "completed")
        item = _raw(quiet, run.id)
        assert r.BY_DUE.partition_key not in item and r.BY_DUE.sort_key not in item
        # (Before the worker stops: its stop waits for its long poll, up to a second.)
        early = quiet.sweeper.sweep_once()  # younger than the grace: not walked yet
        assert early.walked == 0 and quiet.store.sweep_marks() == {}
    quiet.clock.advance(GRACE_S + 1)
    report = quiet.sweeper.sweep_once()
    assert (report.walked, report.promoted, report.sent) == (1, [], [])
    assert quiet.store.sweep_marks() == {
        shard(run.id, r.LIST_SHARDS): list_sk(run.created_at, run.id)
    }
    assert quiet.sweeper.sweep_once().walked == 0  # each run is walked once
    assert quiet.store.get(run.id).dispatches == 0


def test_a_lost_start_is_promoted_and_sent_once_after_the_grace(quiet: Any) -> None:
    (wid,) = _lost_starts(quiet, 1)
    assert quiet.sweeper.sweep_once().sent == [] and queued(quiet) == 0

    quiet.clock.advance(GRACE_S + 1)
    before = quiet.clock.now_ms()
    report = quiet.sweeper.sweep_once()
    after = quiet.clock.now_ms()
    assert report.promoted == [wid] and report.sent == [wid]
    stored = quiet.store.get(wid)
    assert stored.status == Status.PENDING and stored.dispatches == 1
    grace = quiet.settings.sweep_grace_ms  # the first backoff step, from the sweep's now
    assert stored.due_at is not None and before + grace <= stored.due_at <= after + grace
    assert _raw(quiet, wid)[r.BY_DUE.partition_key]["S"].startswith("DUE#")
    assert queued(quiet) == 1
    # Not sent again before its backoff ends: the walk has passed it, by_due has it.
    again = quiet.sweeper.sweep_once()
    assert again.walked == 0 and again.sent == []
    with BackgroundWorker(ALL, quiet.settings, clock=quiet.clock):
        done = wait_status(quiet, wid, "completed")
    assert done.due_at is None and done.epoch == 1


def test_a_promoted_run_whose_send_failed_is_sent_by_the_next_sweep(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (wid,) = _lost_starts(quiet, 1)
    quiet.clock.advance(GRACE_S + 1)
    with monkeypatch.context() as m:
        m.setattr(quiet.dispatcher, "send", LostSend().send)
        before = quiet.clock.now_ms()
        report = quiet.sweeper.sweep_once()
        after = quiet.clock.now_ms()
    assert report.promoted == [wid] and report.sent == [] and queued(quiet) == 0
    stored = quiet.store.get(wid)
    # Nothing went out: due just after this sweep (not after the backoff), the
    # attempt counted once (this sweep's due pass did not try again).
    assert stored.due_at is not None and before + 1 <= stored.due_at <= after + 1
    assert stored.dispatches == 1
    again = quiet.sweeper.sweep_once()  # no clock advance: the next sweep sends it
    assert again.sent == [wid] and queued(quiet) == 1
    assert quiet.store.get(wid).dispatches == 2


def test_a_parked_run_whose_wake_up_send_failed_is_sent_by_the_next_sweep(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with BackgroundWorker(ALL, quiet.settings, clock=quiet.clock):
        run, _ = quiet.service.start("sleeper", {"seconds": 3600})
        parked = wait_status(quiet, run.id, "sleeping")
    assert parked.wake_at is not None
    # Its timer never fires (no background round here), and the sweeper's first
    # wake-up send fails: before the fix it waited a minute for the next try.
    quiet.clock.advance(3600 + GRACE_S + 1)
    with monkeypatch.context() as m:
        m.setattr(quiet.dispatcher, "send", LostSend().send)
        before = quiet.clock.now_ms()
        report = quiet.sweeper.sweep_once()
        after = quiet.clock.now_ms()
    assert report.rearmed == 1 and report.sent == []
    # Due just after the sweep's own now (the skipping clock moves with real time).
    assert before + 1 <= quiet.store.get(run.id).due_at <= after + 1
    again = quiet.sweeper.sweep_once()
    assert again.sent == [run.id]
    with BackgroundWorker(ALL, quiet.settings, clock=quiet.clock):
        assert wait_status(quiet, run.id, "completed").epoch == 2


def test_a_slow_run_is_promoted_unsent_and_rechecked_after_its_owner_dies(quiet: Any) -> None:
    (wid,) = _lost_starts(quiet, 1)
    # The lease outlasts the grace on the skipping clock, whatever real time the
    # test takes: only `advance` below moves the run past it.
    lease_ms = (GRACE_S + 60) * 1000
    claimed = quiet.ddb.update_item(  # an owner that then dies (no message anywhere)
        **q.claim(
            quiet.settings.table,
            wid,
            owner="owner-that-dies",
            now=quiet.clock.now_ms(),
            lease_ms=lease_ms,
            names=["count"],
        )
    )
    lease_until = int(claimed["Attributes"]["lease_until"]["N"])
    quiet.clock.advance(GRACE_S + 1)
    before = quiet.clock.now_ms()
    report = quiet.sweeper.sweep_once()
    after = quiet.clock.now_ms()
    assert report.promoted == [wid] and report.sent == []  # its owner may be alive
    stored = quiet.store.get(wid)
    assert stored.due_at is not None
    low, high = (max(lease_until, t + RUNNING_RECHECK_MS) for t in (before, after))
    assert low <= stored.due_at <= high
    assert stored.dispatches == 0

    quiet.clock.advance(RUNNING_RECHECK_MS / 1000 + 1)  # past the re-check and the lease
    recheck = quiet.sweeper.sweep_once()
    assert recheck.walked == 0 and recheck.sent == [wid]  # by_due's re-check found it
    with BackgroundWorker(ALL, quiet.settings, clock=quiet.clock):
        assert wait_status(quiet, wid, "completed").epoch == 2


def test_the_walk_resumes_at_the_first_run_it_could_not_settle(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeper_module, "WALK_PAGE", 2)  # several pages per shard
    ids = _lost_starts(quiet, 14)
    by_shard: dict[int, list[str]] = {}
    for wid in ids:
        by_shard.setdefault(shard(wid, r.LIST_SHARDS), []).append(wid)
    # A shard with at least three runs; in it, fail the second run (in key order) once.
    runs = {wid: quiet.store.get(wid) for wid in ids}
    order = {
        s: sorted(w, key=lambda i: list_sk(runs[i].created_at, i)) for s, w in by_shard.items()
    }
    victim_shard = next(s for s, w in order.items() if len(w) >= 3)
    first, victim = order[victim_shard][0], order[victim_shard][1]
    real_promote = quiet.store.promote
    failed: list[str] = []

    def flaky_promote(run: Any, **kw: Any) -> bool:
        if run.id == victim and not failed:
            failed.append(run.id)
            raise ConnectionError("throttled")
        return bool(real_promote(run, **kw))

    monkeypatch.setattr(quiet.store, "promote", flaky_promote)
    quiet.clock.advance(GRACE_S + 1)
    one = quiet.sweeper.sweep_once()
    assert failed == [victim]
    assert victim not in one.promoted
    # In the victim's shard the walk stopped right before it; other shards finished.
    assert [w for w in one.promoted if w in order[victim_shard]] == [first]
    assert quiet.store.sweep_marks()[victim_shard] == list_sk(runs[first].created_at, first)
    assert set(one.promoted) == set(ids) - set(order[victim_shard][1:])

    two = quiet.sweeper.sweep_once()
    assert set(two.promoted) == set(order[victim_shard][1:])
    assert Counter(one.promoted + two.promoted) == Counter(ids)  # each run once
    assert quiet.sweeper.sweep_once().walked == 0


def test_a_stale_read_is_decided_again_on_a_strongly_consistent_read(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (wid,) = _lost_starts(quiet, 1)
    before = quiet.store.get(wid)  # pending, epoch 0
    quiet.ddb.update_item(
        **q.claim(
            quiet.settings.table,
            wid,
            owner="live-owner",
            now=quiet.clock.now_ms(),
            lease_ms=(GRACE_S + 60) * 1000,  # still live after the grace is skipped
            names=["count"],
        )
    )
    # The walk's eventually consistent BatchGetItem returns the image before the claim.
    monkeypatch.setattr(quiet.store, "runs", lambda ids: {wid: before})
    quiet.clock.advance(GRACE_S + 1)
    report = quiet.sweeper.sweep_once()
    assert report.promoted == [wid] and report.sent == []  # running: not re-sent
    stored = quiet.store.get(wid)
    assert stored.status == Status.RUNNING and stored.epoch == 1
    assert stored.due_at is not None and stored.due_at >= stored.lease_until
    assert stored.dispatches == 0 and queued(quiet) == 0


def test_two_sweepers_walking_at_once_promote_and_send_each_run_once(quiet: Any) -> None:
    ids = _lost_starts(quiet, 30)
    quiet.clock.advance(GRACE_S + 1)
    other = Sweeper(quiet.store, quiet.dispatcher, quiet.clock, quiet.settings)
    reports: list[Any] = []
    barrier = threading.Barrier(2)

    def sweep(s: Sweeper) -> None:
        barrier.wait()
        reports.append(s.sweep_once())

    threads = [threading.Thread(target=sweep, args=(s,)) for s in (quiet.sweeper, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reports) == 2
    promoted = Counter(w for rep in reports for w in rep.promoted)
    sent = Counter(w for rep in reports for w in rep.sent)
    assert promoted == Counter(ids) and sent == Counter(ids)
    assert queued(quiet) == 30
    assert all(quiet.store.get(w).dispatches == 1 for w in ids)


def test_a_wait_without_timeout_stays_out_of_by_due_until_its_signal(quiet: Any) -> None:
    with BackgroundWorker(ALL, quiet.settings, clock=quiet.clock):
        run, _ = quiet.service.start("waiter", {})
        wait_status(quiet, run.id, "waiting")
    quiet.clock.advance(GRACE_S + 1)
    report = quiet.sweeper.sweep_once()
    assert (report.walked, report.promoted) == (1, [])  # only a signal moves it
    assert r.BY_DUE.sort_key not in _raw(quiet, run.id)
    now = quiet.clock.now_ms()
    # No worker runs now: the woken run cannot be claimed and finished (which
    # takes it out of the index again) before it is read.
    quiet.service.signal(run.id, "go", {"ok": True})
    woken = _raw(quiet, run.id)
    assert woken[r.BY_DUE.partition_key]["S"] == r.due_pk(shard(run.id, r.DUE_SHARDS))
    assert int(woken[r.BY_DUE.sort_key]["N"]) >= now + quiet.settings.sweep_grace_ms
    with BackgroundWorker(ALL, quiet.settings, clock=quiet.clock):
        done = wait_status(quiet, run.id, "completed")
    assert done.due_at is None


# --- runs no worker holds, past their execution deadline ----------------------------------
def test_a_pending_run_no_worker_serves_is_failed_by_the_sweeper_at_its_deadline(
    quiet: Any,
) -> None:
    run, _ = quiet.service.start("nobody-serves-this", {}, execution_timeout_s=GRACE_S + 20)
    quiet.clock.advance(GRACE_S + 1)
    first = quiet.sweeper.sweep_once()
    assert first.promoted == [run.id] and first.timed_out == []
    # Due again at its deadline at the latest, not after the (longer) backoff alone.
    assert quiet.store.get(run.id).due_at <= run.deadline_at
    quiet.clock.advance(20)
    report = quiet.sweeper.sweep_once()
    assert report.timed_out == [run.id] and report.sent == []
    failed = quiet.store.get(run.id)
    assert failed.status == Status.FAILED and failed.due_at is None
    assert failed.error is not None and failed.error.type == "ExecutionTimeoutError"
    assert "pending" in failed.error.message


def test_a_parked_run_past_its_deadline_is_failed_and_its_schedule_deleted(quiet: Any) -> None:
    def schedules() -> list[str]:
        group = quiet.settings.schedule_group
        return [s["Name"] for s in quiet.scheduler.list_schedules(GroupName=group)["Schedules"]]

    with BackgroundWorker(ALL, quiet.settings, clock=quiet.clock):
        run, _ = quiet.service.start("sleeper", {"seconds": 3600}, execution_timeout_s=2000)
        parked = wait_status(quiet, run.id, "sleeping")
    # The wake-up is the deadline (2,000 s: a schedule, not an SQS delay).
    assert parked.wake_at == run.deadline_at and parked.timer in schedules()
    quiet.clock.advance(2000 + GRACE_S + 1)  # no worker, and the schedule never fired
    report = quiet.sweeper.sweep_once()
    assert report.timed_out == [run.id]
    assert quiet.store.get(run.id).status == Status.FAILED
    assert schedules() == []


def test_a_run_claimed_since_the_sweeper_read_it_is_not_failed(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = quiet.service.start("count", {"steps": 1}, execution_timeout_s=5)
    quiet.clock.advance(6)
    seen = quiet.store.get(run.id)
    quiet.ddb.update_item(  # a claim lands between the sweeper's read and its write
        **q.claim(
            quiet.settings.table,
            run.id,
            owner="w",
            now=quiet.clock.now_ms(),
            lease_ms=3000,
            names=["count"],
        )
    )
    assert quiet.store.fail_timed_out(seen, now=quiet.clock.now_ms()) is False
    assert quiet.store.get(run.id).status == Status.RUNNING


# --- how much one sweep does -----------------------------------------------------------------
def test_a_walk_out_of_time_budget_does_a_page_per_shard_and_resumes_next_sweep(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeper_module, "WALK_PAGE", 2)
    monkeypatch.setattr(sweeper_module, "WALK_BUDGET_S", 0.0)  # spent before it starts
    ids = _lost_starts(quiet, 14)
    quiet.clock.advance(GRACE_S + 1)
    promoted: list[str] = []
    for _ in range(10):
        report = quiet.sweeper.sweep_once()
        assert report.walked <= 2 * r.LIST_SHARDS  # one page per shard, no more
        promoted += report.promoted
        if report.walked == 0:
            break
    assert Counter(promoted) == Counter(ids)


def test_the_due_pass_pages_through_a_shard_in_one_sweep(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _lost_starts(quiet, 7)  # four shards: one of them holds at least two
    quiet.clock.advance(GRACE_S + 1)
    assert sorted(quiet.sweeper.sweep_once().sent) == sorted(ids)  # promoted by the walk
    monkeypatch.setattr(sweeper_module, "DUE_PAGE", 1)
    quiet.clock.advance(GRACE_S + 1)  # their first backoff has passed: all due again
    report = quiet.sweeper.sweep_once()
    assert report.walked == 0
    assert sorted(report.sent) == sorted(ids)
    assert all(quiet.store.get(w).dispatches == 2 for w in ids)


def test_the_sweeper_lambda_entry_point_sweeps_and_reports(
    quiet: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`orchestrator.sweeper.handler`, as the deployed Lambda runs it (settings
    from the environment, the system clock): a run created two minutes ago for a
    name no worker serves, past its deadline, is walked and failed."""
    import time

    from orchestrator.model import Run

    for key, value in quiet.exports().items():
        monkeypatch.setenv(key, value)
    now = int(time.time() * 1000)
    quiet.store.create(
        Run(
            id="expired-1",
            name="nobody-serves-this",
            status=Status.PENDING,
            input="{}",
            created_at=now - 120_000,
            updated_at=now - 120_000,
            deadline_at=now - 60_000,
        )
    )
    result = sweeper_module.handler({}, None)
    assert result["walked"] == 1 and result["timed_out"] == 1 and result["promoted"] == 0
    assert quiet.store.get("expired-1").status == Status.FAILED
    out = capsys.readouterr().out
    assert '"RunsTimedOut"' in out and '"RunsWalked"' in out  # EMF metrics on stdout
