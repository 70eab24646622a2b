"""Recurring schedules end to end: the API, the scheduler emulator on the
skipping clock, the sweeper's catch-up, and a worker.

Ticks that must not race the emulator are fired through the service directly
(`env.stack.service.schedules.fire`), the way the API Lambda receives them, on
schedules whose own expression fires far in the future."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator import resources
from orchestrator.errors import BadInputError, ConflictError, NotFoundError
from orchestrator.model import schedule_run_id
from orchestrator.testing import WorkflowTestEnvironment
from worker import workflow

NEVER = "cron(0 0 1 1 ? 2199)"  # the emulator never fires it during a test


@workflow("nightly-job")
async def nightly_job(ctx, input) -> str:
    return await ctx.step("work", lambda: f"done {ctx.workflow_id}")


@workflow("long-job")
async def long_job(ctx, input) -> str:
    await ctx.sleep("hold", timedelta(hours=30))
    return "done"


@pytest.fixture(scope="module")
def env() -> Iterator[WorkflowTestEnvironment]:
    with WorkflowTestEnvironment(workflows=[nightly_job, long_job]) as e:
        yield e


def _runs(env: WorkflowTestEnvironment, prefix: str) -> list[dict]:
    page = env.client.list(limit=200)
    return [r for r in page["workflows"] if r["id"].startswith(prefix + "-")]


def _minute(env: WorkflowTestEnvironment, minutes_ago: int = 0) -> int:
    now = env.clock.now_ms()
    return now - now % 60_000 - minutes_ago * 60_000


def test_a_skipped_week_shows_seven_nightly_runs(env: WorkflowTestEnvironment) -> None:
    created = env.client.create_schedule(
        "nightly", "nightly-job", {"k": 1}, expression="cron(0 2 * * ? *)", timezone="Europe/Paris"
    )
    assert created["state"] == "active"
    assert len(created["next_fire_times"]) == 3
    env.skip(timedelta(days=7))
    runs = _runs(env, "sched-nightly")
    assert len(runs) == 7
    for r in runs:
        assert env.client.wait(r["id"], timeout=20)["status"] == "completed"
        tick = datetime.strptime(r["id"].rsplit("-", 1)[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert tick.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris")).hour == 2
    listed = {s["name"]: s for s in env.client.schedules()}
    recent = listed["nightly"]["recent"]
    assert [e["outcome"] for e in recent] == ["started"] * 5  # the last five decisions
    assert all(e["status"] == "completed" for e in recent)
    env.client.delete_schedule("nightly")


def test_a_tick_fired_twice_and_a_trigger_at_once_start_one_run(
    env: WorkflowTestEnvironment,
) -> None:
    for round_no in range(8):
        name = f"race-{round_no}"
        # A workflow no worker serves: its run stays pending, so it overlaps.
        env.client.create_schedule(name, "unserved-job", expression=NEVER)
        outcomes = _race(env, name, _minute(env))
        assert outcomes.count("started") == 1, outcomes
        assert len(_runs(env, f"sched-{name}")) == 1


def _race(env: WorkflowTestEnvironment, name: str, tick: int) -> list[str]:
    """Fire `tick` twice and trigger the schedule, all at once."""
    schedules = env.stack.service.schedules
    calls = [
        lambda: schedules.fire(name, tick),
        lambda: schedules.fire(name, tick),
        lambda: schedules.trigger(name),
    ]
    barrier = threading.Barrier(len(calls))
    results: list[str] = []

    def call(fn) -> None:
        barrier.wait()
        results.append(fn().outcome.value)

    threads = [threading.Thread(target=call, args=(fn,)) for fn in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(results)


@pytest.mark.parametrize(
    ("overlap", "second", "runs_after_second"),
    [("skip", "skipped", 1), ("buffer_one", "buffered", 1), ("allow_all", "started", 2)],
)
def test_overlap_policies_with_a_long_running_run(
    env: WorkflowTestEnvironment, overlap: str, second: str, runs_after_second: int
) -> None:
    name = f"overlap-{overlap.replace('_', '-')}"
    schedules = env.stack.service.schedules
    env.client.create_schedule(name, "long-job", expression=NEVER, overlap=overlap)
    t1, t2, t3 = _minute(env, 3), _minute(env, 2), _minute(env, 1)
    first = schedules.fire(name, t1)
    assert first.outcome.value == "started"
    env.wait_for_status(first.run_id, "sleeping")  # 30 hours to go: it overlaps
    decision = schedules.fire(name, t2)
    assert decision.outcome.value == second
    assert len(_runs(env, f"sched-{name}")) == runs_after_second
    third = schedules.fire(name, t3)
    # skip skips again; buffer_one holds one tick only; allow_all starts again
    assert third.outcome.value == {"skip": "skipped", "buffer_one": "skipped"}.get(
        overlap, "started"
    )
    if overlap == "buffer_one":
        # The buffered tick starts once the running one ends (the sweeper's pass).
        env.client.cancel(first.run_id)
        buffered = schedule_run_id(name, t2)
        _wait_exists(env, buffered)
        view = env.client.schedule(name)
        assert view["buffered_tick"] is None
        assert view["last_run_id"] == buffered


def test_backfill_twice_starts_each_tick_once(env: WorkflowTestEnvironment) -> None:
    env.client.create_schedule("hourly", "nightly-job", expression="cron(0 * * * ? *)")
    now = datetime.fromtimestamp(env.clock.now_ms() / 1000, tz=UTC)
    start = (now - timedelta(hours=5)).isoformat()
    end = (now - timedelta(hours=1)).isoformat()
    first = env.client.backfill_schedule("hourly", start, end)
    assert len(first["started"]) == first["ticks"] in (4, 5)
    again = env.client.backfill_schedule("hourly", start, end)
    assert again["started"] == [] and sorted(again["skipped"]) == sorted(first["started"])
    for run_id in first["started"]:
        assert env.client.wait(run_id, timeout=20)["status"] == "completed"
    with pytest.raises(BadInputError):
        env.client.backfill_schedule("hourly", end, start)
    env.client.delete_schedule("hourly")


def test_a_rate_backfill_before_the_schedule_existed_starts_its_ticks_once(
    env: WorkflowTestEnvironment,
) -> None:
    created = env.client.create_schedule("every6h", "nightly-job", expression="rate(6 hours)")
    created_at = datetime.fromisoformat(created["created_at"].replace("Z", "+00:00"))
    anchor = created_at.replace(second=0, microsecond=0)  # a rate counts from its creation minute
    start = (anchor - timedelta(days=1, minutes=30)).isoformat()
    end = (anchor - timedelta(minutes=1)).isoformat()
    first = env.client.backfill_schedule("every6h", start, end)
    ticks = [anchor - timedelta(hours=6 * k) for k in (4, 3, 2, 1)]
    assert first["ticks"] == 4 and "note" not in first
    assert first["started"] == [
        schedule_run_id("every6h", int(t.timestamp() * 1000)) for t in ticks
    ]
    again = env.client.backfill_schedule("every6h", start, end)
    assert again["started"] == [] and again["skipped"] == first["started"]
    for run_id in first["started"]:
        assert env.client.wait(run_id, timeout=20)["status"] == "completed"
    # A range between two ticks holds none, and says so.
    none = env.client.backfill_schedule("every6h", (anchor - timedelta(hours=5)).isoformat(), end)
    assert none["ticks"] == 0 and "rate(6 hours)" in none["note"]
    env.client.delete_schedule("every6h")


def test_pause_resume_and_delete(env: WorkflowTestEnvironment) -> None:
    env.client.create_schedule("daily", "nightly-job", expression="rate(1 day)")
    paused = env.client.pause_schedule("daily", note="partner API down")
    assert paused["state"] == "paused" and paused["note"] == "partner API down"
    assert paused["next_fire_times"] == []
    env.skip(timedelta(days=2))
    assert _runs(env, "sched-daily") == []
    resumed = env.client.resume_schedule("daily", note="back")
    assert resumed["state"] == "active" and resumed["note"] == "back"
    env.skip(timedelta(days=1))
    assert len(_runs(env, "sched-daily")) == 1
    triggered = env.client.trigger_schedule("daily")
    assert triggered["outcome"] == "started"
    assert env.client.wait(triggered["run_id"], timeout=20)["status"] == "completed"
    env.client.delete_schedule("daily")
    with pytest.raises(NotFoundError):
        env.client.schedule("daily")
    assert env.stack.service.schedules.fire("daily", _minute(env)).outcome.value == "not_found"


def test_a_tick_that_fell_in_a_pause_is_not_caught_up_after_the_resume(
    env: WorkflowTestEnvironment,
) -> None:
    """Found in a loaded full-suite run: the sweeper's catch-up fired, right after
    a resume, the tick that fell a second before it, in the pause."""
    env.client.create_schedule("in-pause", "nightly-job", expression="rate(1 day)")
    env.client.pause_schedule("in-pause")
    # Plain clock time, not skip(): the Scheduler side is not stepped through.
    env.clock.advance(timedelta(days=1, seconds=2))
    env.client.resume_schedule("in-pause")
    env.clock.advance(2)  # past the sweeper's grace (1 s here)
    decisions = env.stack.service.schedules.catch_up(grace_ms=1000)
    assert [d.outcome.value for d in decisions] == []
    assert _runs(env, "sched-in-pause") == []
    # The first tick after the resume is caught up as before.
    env.clock.advance(timedelta(days=1))
    started = env.stack.service.schedules.catch_up(grace_ms=1000)
    runs = _runs(env, "sched-in-pause")
    assert len(runs) == 1 and [d.run_id for d in started] in ([runs[0]["id"]], [])
    env.client.delete_schedule("in-pause")


def test_a_tick_later_than_the_catchup_window_is_missed(env: WorkflowTestEnvironment) -> None:
    env.client.create_schedule("late", "nightly-job", expression=NEVER, catchup_window=60)
    decision = env.stack.service.schedules.fire("late", _minute(env, 5))
    assert decision.outcome.value == "missed"
    assert _runs(env, "sched-late") == []
    assert env.client.schedule("late")["recent"][0]["outcome"] == "missed"


def test_the_sweeper_fires_a_tick_the_scheduler_never_delivered(
    env: WorkflowTestEnvironment,
) -> None:
    env.client.create_schedule("lost", "nightly-job", expression="rate(5 minutes)")
    # The Scheduler schedule is lost: only the definition in DynamoDB is left.
    env.stack.scheduler.delete_schedule(Name="lost", GroupName=env.stack.settings.recurring_group)
    env.skip(timedelta(minutes=6))  # plain time: no recurring tick to step through
    env.wait_for_status(_lost_run(env), "completed")


def _wait_exists(env: WorkflowTestEnvironment, run_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            env.client.get(run_id)
            return
        except NotFoundError:
            time.sleep(0.05)
    raise AssertionError(f"{run_id} was not started")


def _lost_run(env: WorkflowTestEnvironment) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = _runs(env, "sched-lost")
        if runs:
            return str(runs[0]["id"])
        time.sleep(0.05)
    raise AssertionError("the sweeper did not start the missed tick")


def test_bad_definitions_are_refused(env: WorkflowTestEnvironment) -> None:
    c = env.client
    for kwargs in (
        {"expression": "cron(0 2 * * * *)"},  # day-of-month and day-of-week both set
        {"expression": "every day"},
        {"expression": "rate(1 minutes)"},
        {"expression": "rate(5 minutes)", "timezone": "Mars/Olympus"},
        {"expression": "rate(5 minutes)", "overlap": "sometimes"},
        {"expression": "rate(5 minutes)", "task_queue": "gpu"},  # not a queue of this stack
        {"expression": "rate(5 minutes)", "catchup_window": 1},
    ):
        with pytest.raises(BadInputError):
            c.create_schedule("bad", "nightly-job", **kwargs)
    with pytest.raises(BadInputError):
        c.create_schedule("9starts-with-a-digit", "nightly-job", expression="rate(5 minutes)")
    with pytest.raises(NotFoundError):
        c.schedule("bad")
    c.create_schedule("twice", "nightly-job", expression="rate(5 minutes)")
    assert c.create_schedule("twice", "nightly-job", expression="rate(5 minutes)")["name"]
    with pytest.raises(ConflictError):
        c.create_schedule("twice", "nightly-job", expression="rate(10 minutes)")
    c.delete_schedule("twice")


def test_a_schedule_whose_fire_times_pass_the_year_9999_is_refused_unwritten(
    env: WorkflowTestEnvironment,
) -> None:
    """rate(999999 days) fires a third time in the year 10240: it was written,
    created in the Scheduler, and answered 500, and then every listing failed."""
    c = env.client
    with pytest.raises(BadInputError, match="9999"):
        c.create_schedule("far", "nightly-job", expression="rate(999999 days)")
    with pytest.raises(NotFoundError):
        c.schedule("far")
    assert all(s["name"] != "far" for s in c.schedules())
    # A schedule already stored whose ticks run out before its third (its anchor
    # moved near the end of 9999) still lists, with the fire times it has.
    c.create_schedule("near-the-end", "nightly-job", expression="rate(900000 days)")
    table = env.stack.settings.table
    env.stack.ddb.update_item(
        TableName=table,
        Key={
            "pk": {"S": resources.SCHEDULES_PK},
            "sk": {"S": resources.schedule_sk("near-the-end")},
        },
        UpdateExpression="SET anchor_at = :a",
        ExpressionAttributeValues={":a": {"N": str(253_300_000_000_000)}},
    )
    shown = c.schedule("near-the-end")
    assert shown["next_fire_times"] == []
    assert any(s["name"] == "near-the-end" for s in c.schedules())
    c.delete_schedule("near-the-end")


@pytest.mark.parametrize(
    ("start", "end"),
    [("0001-01-01T00:00:00Z", "2020-01-01T00:00:00Z"), ("1969-12-31T23:00:00Z", "1970-01-02")],
)
def test_a_backfill_outside_the_times_a_schedule_has_is_a_400(
    env: WorkflowTestEnvironment, start: str, end: str
) -> None:
    c = env.client
    c.create_schedule("old-times", "nightly-job", expression="rate(5 minutes)")
    try:
        with pytest.raises(BadInputError, match="1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"):
            c.backfill_schedule("old-times", start, end)
    finally:
        c.delete_schedule("old-times")
