"""Time, from one place.

The engine, the sweeper and the scheduler emulator read time only through a
`Clock`, in integer epoch milliseconds. `SkippingClock` lets a test (or a user
testing their own workflows) move workflow time forward by a day in an
instant: durable timers compare against this clock, and the local stack's
sweeper and scheduler emulator fire what became due.

A clock only tells time; it does not wait. Waits (heartbeat intervals, short
retry delays, SQS long polls) are real `asyncio.sleep`s: a lease, a visibility
timeout and a poll are wall-time contracts with AWS that a skipped clock cannot
shorten.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class SkippingClock:
    """Real time plus an offset that only grows. `advance` skips ahead.

    The clock never runs slower than wall time, so leases and polls behave as
    usual while timers far in the future are reached by `advance`.
    """

    def __init__(self) -> None:
        self._offset_ms = 0
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return time.time_ns() // 1_000_000 + self._offset_ms

    def advance(self, by: timedelta | float) -> None:
        seconds = by.total_seconds() if isinstance(by, timedelta) else float(by)
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._offset_ms += int(seconds * 1000)


SYSTEM_CLOCK = SystemClock()
