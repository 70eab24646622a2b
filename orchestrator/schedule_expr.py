"""Recurring schedule expressions, evaluated as EventBridge Scheduler does.

`cron(min hour day-of-month month day-of-week year)` is parsed by
`aws_croniter` (a maintained parser of the EventBridge cron dialect: `?`, `L`,
`W`, `#`, names of months and days) and evaluated in the schedule's time zone:
the cron fields are wall-clock times there. Daylight saving time follows the
service's documented rules: a wall-clock time that does not exist (the hour
skipped in spring) is not fired, and a wall-clock time that occurs twice (the
hour repeated in autumn) is fired once, at its first occurrence.

`rate(n minutes|hours|days)` fires every n units of elapsed time from an
anchor (the schedule's start: its creation minute), whatever the time zone,
as the service does ("a day is 24 hours"). A backfill (`Expression.ticks`)
extends that grid backwards from the anchor.

Pure: no clock, no AWS. Times are epoch milliseconds; ticks fall on whole
minutes (the service's precision). Every time is within [`MIN_TIME_MS`,
`MAX_TIME_MS`] (1970 to the end of 9999: what the code, ISO 8601's four-digit
year and the service represent): a time given outside is refused, and an
expression has no tick past the end (`next_tick` returns None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from aws_croniter import AwsCroniter

MINUTE_MS = 60_000
_RATE = re.compile(r"rate\(([0-9]{1,6}) (minute|minutes|hour|hours|day|days)\)")
_CRON = re.compile(r"cron\((.+)\)")
_UNIT_MS = {"minute": MINUTE_MS, "hour": 60 * MINUTE_MS, "day": 24 * 60 * MINUTE_MS}
_MAX_SEARCH = 2_000  # cron candidates examined per call before giving up (DST gaps are short)
MIN_TIME_MS = 0  # 1970-01-01T00:00:00Z
MAX_TIME_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z
UPCOMING = 3  # fire times a schedule shows, and must have within the range to be created


class ExpressionError(ValueError):
    """The expression or the time zone is not one EventBridge Scheduler accepts."""


@dataclass(frozen=True)
class Expression:
    text: str
    timezone: str
    rate_ms: int | None  # rate(...) expressions
    cron: AwsCroniter | None  # cron(...) expressions

    def next_tick(self, after_ms: int, anchor_ms: int) -> int | None:
        """The first tick strictly after `after_ms` (None: the expression has no more)."""
        if self.rate_ms is not None:
            if after_ms < anchor_ms + self.rate_ms:
                t = anchor_ms + self.rate_ms
            else:
                t = anchor_ms + ((after_ms - anchor_ms) // self.rate_ms + 1) * self.rate_ms
        else:
            found = _next_cron(self, after_ms) if after_ms < MAX_TIME_MS else None
            if found is None:
                return None
            t = found
        return t if t <= MAX_TIME_MS else None

    def upcoming(self, after_ms: int, anchor_ms: int, n: int = UPCOMING) -> list[int]:
        """The next `n` ticks after `after_ms` (fewer: the expression has no more)."""
        out: list[int] = []
        t = self.next_tick(after_ms, anchor_ms)
        while t is not None and len(out) < n:
            out.append(t)
            t = self.next_tick(t, anchor_ms) if len(out) < n else None
        return out

    def ticks(self, start_ms: int, end_ms: int, anchor_ms: int, *, limit: int) -> list[int]:
        """Ticks in [start_ms, end_ms], oldest first; ExpressionError past `limit`.

        What a backfill starts. A rate's ticks here are its whole grid, the anchor
        plus or minus whole multiples of the rate (`anchor - k * rate` before it,
        the anchor itself included), since a backfill is mostly wanted for times
        before the schedule existed; the schedule itself fires only after its
        anchor (`next_tick`)."""
        out = self.first_ticks(start_ms, end_ms, anchor_ms, count=limit + 1)
        if len(out) > limit:
            raise ExpressionError(f"the range holds more than {limit} ticks")
        return out

    def first_ticks(self, start_ms: int, end_ms: int, anchor_ms: int, *, count: int) -> list[int]:
        """The first `count` ticks in [start_ms, end_ms], oldest first (as `ticks`):
        a backfill job's page."""
        out: list[int] = []
        for ms in (start_ms, end_ms):
            check_time(ms)
        if self.rate_ms is not None:
            ahead = -((anchor_ms - start_ms) // self.rate_ms)  # ceil((start - anchor) / rate)
            t: int | None = anchor_ms + ahead * self.rate_ms
        else:
            t = self.next_tick(start_ms - 1, anchor_ms)
        while t is not None and t <= end_ms and len(out) < count:
            out.append(t)
            t = t + self.rate_ms if self.rate_ms is not None else self.next_tick(t, anchor_ms)
        return out


def parse(text: str, timezone: str = "UTC") -> Expression:
    _zone(timezone)  # validates the name
    m = _RATE.fullmatch(text)
    if m:
        value, unit = int(m.group(1)), m.group(2)
        if value < 1:
            raise ExpressionError("a rate's value must be a positive integer")
        if (value == 1) != (not unit.endswith("s")):
            raise ExpressionError(
                f"write rate(1 {unit.rstrip('s')}) for one unit and rate(n {unit.rstrip('s')}s) "
                "for more, as EventBridge Scheduler does"
            )
        return Expression(text, timezone, value * _UNIT_MS[unit.rstrip("s")], None)
    m = _CRON.fullmatch(text)
    if m:
        try:
            cron = AwsCroniter(m.group(1))
        except Exception as e:  # the library raises its own hierarchy and ValueError
            raise ExpressionError(f"invalid cron expression {text!r}: {e}") from None
        return Expression(text, timezone, None, cron)
    raise ExpressionError(
        f"{text!r} is neither cron(min hour day month weekday year) nor rate(n unit)"
    )


def _zone(name: str) -> ZoneInfo:
    if name == "UTC":
        return ZoneInfo("UTC")
    if name not in _zones():
        raise ExpressionError(f"unknown time zone {name!r} (use an IANA name: Europe/Paris)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExpressionError(f"unknown time zone {name!r}") from None


_ZONES: set[str] | None = None


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones()
    return _ZONES


def _next_cron(expr: Expression, after_ms: int) -> int | None:
    assert expr.cron is not None
    zone = _zone(expr.timezone)
    # Start from the minute `after_ms` falls in: the next tick is strictly after it.
    floor = datetime.fromtimestamp((after_ms // MINUTE_MS) * MINUTE_MS / 1000, tz=UTC)
    wall = floor.astimezone(zone).replace(tzinfo=UTC)  # wall-clock time, tagged UTC for the parser
    for _ in range(_MAX_SEARCH):
        found = expr.cron.get_next(wall)[0]
        if found is None:
            return None
        wall = found
        local = found.replace(tzinfo=zone)  # fold=0: the first of a repeated wall time
        back = local.astimezone(UTC).astimezone(zone)
        if back.replace(tzinfo=None) != found.replace(tzinfo=None):
            continue  # a wall time skipped by daylight saving time: not fired
        ms = int(local.astimezone(UTC).timestamp() * 1000)
        if ms > after_ms:
            return ms
    return None


def tick_iso(ms: int) -> str:
    """A tick as it appears in run ids: UTC, whole seconds, `Z` (`2026-11-26T02:00:00Z`)."""
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_time(ms: int) -> int:
    """`ms`, or ExpressionError when it is outside the range times may take."""
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise ExpressionError(
            "times run from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z; "
            f"{ms} ms since the epoch is outside"
        )
    return ms


def parse_iso(text: str) -> int:
    """Epoch ms of an ISO 8601 time; a time without an offset is UTC. Refused
    outside [1970, 9999] (`check_time`)."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        ms = int(t.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise ExpressionError(f"{text!r} is not an ISO 8601 time") from None
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise ExpressionError(
            f"{text!r} is outside the times a schedule has: 1970-01-01T00:00:00Z to "
            "9999-12-31T23:59:59Z"
        )
    return ms


def minute_floor(ms: int) -> int:
    return ms // MINUTE_MS * MINUTE_MS


__all__ = [
    "MAX_TIME_MS",
    "MIN_TIME_MS",
    "Expression",
    "ExpressionError",
    "check_time",
    "minute_floor",
    "parse",
    "parse_iso",
    "tick_iso",
]
