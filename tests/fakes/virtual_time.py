"""An asyncio event loop on virtual time, for unit tests of timer logic.

The loop's clock (`loop.time()`, which `asyncio.sleep`, `wait_for` and
`call_later` use) starts at 0 and moves only when no callback is ready: it then
jumps to the earliest timer. So a test of what happens 0.2 s after something
runs in no wall time, and what it measures with `loop.time()` is exact however
loaded the machine is: "nothing happened by then" is a fact about the timers,
not about the scheduler.

Only for code that waits on timers and on other tasks of the loop. A wait on a
socket or a thread would let time jump ahead of it.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
from collections.abc import Callable, Coroutine
from typing import Any


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def _run_once(self) -> None:
        # Idle (nothing ready): jump to the earliest live timer, which the base
        # loop then runs without waiting. Cancelled timers at the head are dropped
        # first, as the base loop does, so that time never jumps for nothing.
        if not self._ready and not self._stopping:  # type: ignore[attr-defined]
            scheduled = self._scheduled  # type: ignore[attr-defined]
            while scheduled and scheduled[0]._cancelled:
                heapq.heappop(scheduled)._scheduled = False
                self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
            if scheduled:
                self._now = max(self._now, scheduled[0]._when)
        super()._run_once()  # type: ignore[misc]


def on_virtual_time(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., None]:
    """Run an `async def` test on a fresh VirtualTimeLoop (fixtures still apply)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        loop = VirtualTimeLoop()
        try:
            loop.run_until_complete(test(*args, **kwargs))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    return run
