"""`ctx.sleep` and `ctx.sleep_until`: durable timers.

The wake time is recorded the first time the operation is reached and never
moves on replay; a sleep whose time has passed returns at once. Otherwise the
branch waits: in the worker if the run is still held when the time comes, or
parked with the rest of the run (see worker/_parking.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from orchestrator.model import StepKind, StepRecord

from .. import _core
from .._outcomes import _check_marker
from .._state import duration_ms


async def sleep(marker: str, duration: timedelta | float) -> None:
    _check_marker(marker)
    ms = duration_ms(duration)
    await _sleep_at("sleep", marker, lambda now: now + ms)


async def sleep_until(marker: str, when: datetime) -> None:
    _check_marker(marker)
    if when.tzinfo is None:
        raise ValueError("sleep_until needs a timezone-aware datetime")
    wake = int(when.timestamp() * 1000)
    await _sleep_at("sleep_until", marker, lambda now: wake)


async def _sleep_at(call: str, marker: str, wake_at: Callable[[int], int]) -> None:
    s, op_id, rec = await _core.enter(call)
    if rec is not None:
        _core.check(s, rec, StepKind.SLEEP, marker)
    else:
        now = s.clock.now_ms()
        rec = await _core.record(
            s,
            StepRecord(
                op_id,
                marker,
                StepKind.SLEEP,
                s.epoch,
                now,
                started_at=now,
                wake_at=wake_at(now),
                resolved=True,
            ),
        )
    assert rec.wake_at is not None
    while s.clock.now_ms() < rec.wake_at:
        await _core.wait_parked(op_id, wake_at=rec.wake_at)
