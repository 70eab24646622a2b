"""Schedule expressions as EventBridge Scheduler evaluates them (pure)."""

from __future__ import annotations

import pytest

from orchestrator.model import WORKFLOW_ID_RE, schedule_run_id
from orchestrator.recurring import parse_event, schedule_request, target_input
from orchestrator.schedule_expr import ExpressionError, parse, parse_iso, tick_iso


def _ticks(expr: str, tz: str, start: str, n: int, anchor: str = "2026-01-01T00:00:00Z") -> list:
    e = parse(expr, tz)
    t, out = parse_iso(start), []
    for _ in range(n):
        t = e.next_tick(t, parse_iso(anchor))
        out.append(tick_iso(t))
    return out


def test_a_nightly_cron_in_paris_skips_the_missing_hour_in_spring() -> None:
    # 2026-03-29: 02:00 -> 03:00 in Paris; 02:30 does not exist that night.
    assert _ticks("cron(30 2 * * ? *)", "Europe/Paris", "2026-03-27T00:00:00Z", 4) == [
        "2026-03-27T01:30:00Z",  # UTC+1
        "2026-03-28T01:30:00Z",
        "2026-03-30T00:30:00Z",  # UTC+2, the 29th skipped
        "2026-03-31T00:30:00Z",
    ]


def test_a_nightly_cron_in_paris_fires_once_in_the_repeated_hour_in_autumn() -> None:
    # 2026-10-25: 03:00 -> 02:00 in Paris; 02:30 happens twice, fired at the first.
    assert _ticks("cron(30 2 * * ? *)", "Europe/Paris", "2026-10-24T00:00:00Z", 3) == [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
    ]


def test_a_weekday_cron_in_new_york_follows_its_offset() -> None:
    ticks = _ticks("cron(0 9 ? * MON-FRI *)", "America/New_York", "2026-10-30T00:00:00Z", 3)
    # Fri 30 Oct (EDT, UTC-4), then Mon 2 and Tue 3 Nov (EST, UTC-5)
    assert ticks == ["2026-10-30T13:00:00Z", "2026-11-02T14:00:00Z", "2026-11-03T14:00:00Z"]


def test_rate_ticks_count_from_the_anchor_whatever_the_zone() -> None:
    ticks = _ticks("rate(1 day)", "Europe/Paris", "2026-03-28T00:00:00Z", 2, "2026-03-01T00:00:00Z")
    assert ticks == ["2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z"]  # 24 h, DST or not
    e = parse("rate(5 minutes)")
    assert e.ticks(
        parse_iso("2026-01-01T00:00:00Z"), parse_iso("2026-01-01T00:20:00Z"), 0, limit=10
    )


def test_ticks_in_a_range_are_inclusive_and_bounded() -> None:
    e = parse("cron(0 * * * ? *)")
    got = e.ticks(parse_iso("2026-01-01T00:00:00Z"), parse_iso("2026-01-01T03:00:00Z"), 0, limit=10)
    assert [tick_iso(t) for t in got][::3] == ["2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z"]
    with pytest.raises(ExpressionError):
        e.ticks(parse_iso("2026-01-01T00:00:00Z"), parse_iso("2026-02-01T00:00:00Z"), 0, limit=10)


@pytest.mark.parametrize(
    "text",
    ["cron(0 2 * * * *)", "cron(61 2 * * ? *)", "rate(0 minutes)", "rate(1 days)", "daily", ""],
)
def test_invalid_expressions_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse(text)


def test_unknown_time_zones_are_refused() -> None:
    with pytest.raises(ExpressionError):
        parse("rate(1 hour)", "Europe/Atlantis")


def test_tick_run_ids_fit_the_id_pattern_and_need_no_escaping() -> None:
    run_id = schedule_run_id("a" * 64, parse_iso("2026-11-26T02:00:00Z"))
    assert run_id.endswith("-20261126T020000Z")
    assert WORKFLOW_ID_RE.match(run_id)
    assert ":" not in run_id and "+" not in run_id


def test_the_target_event_round_trips_with_the_scheduled_time() -> None:
    text = target_input("nightly").replace("<aws.scheduler.scheduled-time>", "2026-11-26T02:00:00Z")
    import json

    assert parse_event(json.loads(text)) == ("nightly", parse_iso("2026-11-26T02:00:00Z"))
    assert parse_event({"version": "2.0", "rawPath": "/workflows"}) is None


def test_the_scheduler_request_has_no_flexible_window_and_keeps_a_rate_phase() -> None:
    from orchestrator.model import Overlap, Schedule
    from orchestrator.settings import Settings

    s = Schedule(
        name="sync",
        workflow="sync",
        input="null",
        expression="rate(10 minutes)",
        timezone="UTC",
        overlap=Overlap.SKIP,
        catchup_window_s=3600,
        created_at=0,
        updated_at=0,
        anchor_at=parse_iso("2026-01-01T00:03:00Z"),
    )
    req = schedule_request(Settings(), s, parse_iso("2026-01-02T10:00:01Z"))
    assert req["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert req["StartDate"].isoformat() == "2026-01-02T10:03:00+00:00"
    assert req["Target"]["RetryPolicy"]["MaximumEventAgeInSeconds"] == 3600


def test_a_rate_backfill_before_its_anchor_counts_back_from_the_anchor() -> None:
    """A backfill is mostly wanted for times before the schedule existed: a rate's
    ticks there are anchor - k * rate (the anchor itself included)."""
    e = parse("rate(6 hours)")
    anchor = parse_iso("2026-01-10T01:30:00Z")
    got = e.ticks(
        parse_iso("2026-01-08T00:00:00Z"), parse_iso("2026-01-09T00:00:00Z"), anchor, limit=10
    )
    assert [tick_iso(t) for t in got] == [
        "2026-01-08T01:30:00Z",
        "2026-01-08T07:30:00Z",
        "2026-01-08T13:30:00Z",
        "2026-01-08T19:30:00Z",
    ]
    # Across the anchor: one grid, the anchor included, no tick twice.
    across = e.ticks(anchor - 6 * 3_600_000, anchor + 6 * 3_600_000, anchor, limit=10)
    assert [tick_iso(t) for t in across] == [
        "2026-01-09T19:30:00Z",
        "2026-01-10T01:30:00Z",
        "2026-01-10T07:30:00Z",
    ]
    # After the anchor the ticks are the ones the schedule fires.
    after = e.ticks(anchor + 1, anchor + 24 * 3_600_000, anchor, limit=10)
    fired = [e.next_tick(anchor, anchor)]
    while len(fired) < 4:
        fired.append(e.next_tick(fired[-1], anchor))
    assert after == fired
    # Bounded as before.
    with pytest.raises(ExpressionError):
        e.ticks(anchor - 30 * 86_400_000, anchor, anchor, limit=10)
    # A range between two ticks holds none.
    assert e.ticks(anchor - 3_600_000, anchor - 60_000, anchor, limit=10) == []
