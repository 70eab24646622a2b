"""Parking a run whose branches all wait.

A durable call that must wait (a sleep whose time has not come, a signal wait
with no signal, a retry delay too long to wait in the worker) does not park the
run by itself: its task registers a `ParkRequest` and blocks. Other branches go
on. When nothing of the run can make progress any more, the run parks once:

- no durable call of the run is in flight (no step function running, no store
  request, no in-worker retry delay: `busy == 0`), and
- every task of the run is blocked on a future that is not done (a task that
  is running, or ready to run, is not).

That check runs in a loop callback, when no task of the run is executing, and
must hold over three consecutive loop iterations with no activity in between,
so that a wake-up travelling through a chain of done-callbacks (a branch ends,
`gather` completes, its parent resumes) is seen before the run parks.

The park is one conditional write (`park_sleep`, or `park_wait` with every
waited signal name) with the earliest wake time of all requests, capped by the
execution deadline; then every request is resolved with `Suspend` and the
run's remaining tasks are cancelled. A park refused because a signal came in
sends every signal wait back to its inbox; one refused because of a cancel
delivers the cancel to every parked branch.

Within a claim, a request with a wake time is also resolved by a loop timer at
that time, so a short sleep in one branch does not wait for the others; but
not while the park's write is in flight: a branch woken then would run code
(a step function, a log line) in a claim that is being parked, and the next
claim would run it again. The park resolves it instead (Suspend), or, refused,
lets the timer fire.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._outcomes import _timer_name

if TYPE_CHECKING:
    from ._state import RunState

log = logging.getLogger("worker")

WAKE = "wake"  # the wake time came while the run was still held
RECHECK = "recheck"  # a signal may have arrived: look at the inbox again
CANCEL = "cancel"  # a cancel was requested: deliver it where the branch waits

_CONFIRM_PASSES = 3
_POLL_SECONDS = 0.05


@dataclass
class ParkRequest:
    op_id: str
    wake_at: int | None  # None: no timer (a signal wait without timeout)
    signal: str | None  # a signal wait: the name; None for a timer
    seen_seq: int  # the run's signal_seq when the branch last looked at its inbox
    seq: int  # tells apart successive timers of one operation (retry attempts)
    future: asyncio.Future[str] = field(repr=False)
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class Parker:
    """The run's parked requests and the quiescence check (see the module doc)."""

    def __init__(self, state: RunState) -> None:
        self._s = state
        self.requests: dict[int, ParkRequest] = {}
        self._next = 0
        self.decided: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending = False
        self.activity = 0
        self.parking = False  # the park's write is in flight (park_run)

    # --- branches ----------------------------------------------------------------------
    def add(
        self, op_id: str, wake_at: int | None, signal: str | None, seq: int, seen_seq: int
    ) -> int:
        """`seen_seq`: the run's signal_seq read before the branch looked at its inbox."""
        loop = asyncio.get_running_loop()
        key = self._next
        self._next += 1
        req = ParkRequest(op_id, wake_at, signal, seen_seq, seq, loop.create_future())
        self.requests[key] = req
        if wake_at is not None:
            self._arm(req)
        self.poke()
        return key

    def remove(self, key: int) -> None:
        req = self.requests.pop(key, None)
        if req is not None and req.timer is not None:
            req.timer.cancel()
        self.activity += 1

    def _arm(self, req: ParkRequest) -> None:
        assert req.wake_at is not None
        delay = max(0.0, (req.wake_at - self._s.clock.now_ms()) / 1000)
        req.timer = asyncio.get_running_loop().call_later(delay, self._due, req)

    def _due(self, req: ParkRequest) -> None:
        if req.future.done():
            return
        assert req.wake_at is not None
        if self.parking:
            # The park's write is in flight: a branch woken now would run code
            # of a claim that is being parked. The park's outcome resolves the
            # request (Suspend); if the run does not park, the timer fires after.
            req.timer = asyncio.get_running_loop().call_later(_POLL_SECONDS, self._due, req)
            return
        if self._s.clock.now_ms() >= req.wake_at:
            req.future.set_result(WAKE)
        else:
            self._arm(req)

    def resolve(self, value: str, *, signals_only: bool = False) -> None:
        for req in list(self.requests.values()):
            if req.future.done() or (signals_only and req.signal is None):
                continue
            req.future.set_result(value)

    def fail_all(self, exc: BaseException) -> None:
        for req in list(self.requests.values()):
            if not req.future.done():
                req.future.set_exception(exc)

    def signal_seq_moved(self, seq: int) -> None:
        """The run's signal_seq moved (heartbeat, refused park): every signal wait
        looks at its inbox again before the run may park."""
        if seq != self._s.signal_seq:
            self._s.signal_seq = seq
            self.resolve(RECHECK, signals_only=True)

    # --- the quiescence check --------------------------------------------------------------
    def poke(self) -> None:
        self.activity += 1
        if self._pending or self.decided.done():
            return
        self._pending = True
        asyncio.get_running_loop().call_soon(self._check, 0, self.activity)

    def _check(self, passes: int, activity: int) -> None:
        self._pending = False
        if self.decided.done() or not self.requests:
            return
        loop = asyncio.get_running_loop()
        if not self._quiet():
            # Something runs or is ready; its next event pokes again. The poll
            # covers a task blocked on something the SDK does not see.
            self._pending = True
            loop.call_later(_POLL_SECONDS, self._check, 0, self.activity)
            return
        if activity != self.activity:
            passes = 0
        if passes + 1 < _CONFIRM_PASSES:
            self._pending = True
            loop.call_soon(self._check, passes + 1, self.activity)
            return
        self.decided.set_result(None)

    def _quiet(self) -> bool:
        if self._s.busy:
            return False
        if any(req.future.done() for req in self.requests.values()):
            return False
        for task in self._s.tasks:
            if task.done():
                continue
            waiter = getattr(task, "_fut_waiter", None)
            if waiter is None or waiter.done():
                return False  # running or ready to run
        return True

    def reset(self) -> None:
        """After a park attempt that did not park: watch again."""
        self.decided = asyncio.get_running_loop().create_future()
        self._pending = False
        self.poke()

    # --- the run's park ------------------------------------------------------------------
    def plan(self) -> tuple[int | None, list[str], ParkRequest | None]:
        """(wake time, signal names, the request whose timer wakes the run)."""
        s = self._s
        reqs = [r for r in self.requests.values() if not r.future.done()]
        timed = [r for r in reqs if r.wake_at is not None]
        first = min(timed, key=lambda r: (r.wake_at, r.op_id)) if timed else None
        wake = first.wake_at if first is not None else None
        if s.deadline_at is not None:
            wake = s.deadline_at if wake is None else min(wake, s.deadline_at)
        names = sorted({r.signal for r in reqs if r.signal is not None})
        return wake, names, first

    def stale_waits(self) -> bool:
        """Resolve (RECHECK) the signal waits that looked at their inbox before the
        run's signal_seq last moved; True if there were any."""
        stale = False
        for req in self.requests.values():
            if req.signal is not None and req.seen_seq != self._s.signal_seq:
                if not req.future.done():
                    req.future.set_result(RECHECK)
                stale = True
        return stale

    def due_now(self) -> bool:
        now = self._s.clock.now_ms()
        woke = False
        for req in self.requests.values():
            if req.wake_at is not None and req.wake_at <= now and not req.future.done():
                req.future.set_result(WAKE)
                woke = True
        return woke

    def timer_name(self, first: ParkRequest | None, now: int, wake: int) -> str | None:
        op, seq = (first.op_id, first.seq) if first is not None else ("deadline", 0)
        return _timer_name(self._s.workflow_id, op, seq, now, wake)


async def park_run(state: RunState) -> bool:
    """Park the run (True), or resume its branches (False) when the park is not
    needed any more or was refused for a reason a branch must handle. Raises
    nothing: a lost lease unwinds every branch with LeaseLost."""
    from ._state import LeaseLost, Suspend

    p = state.parker
    if p.stale_waits() or p.due_now():
        return False
    if state.cancel_requested is not None:
        p.resolve(CANCEL)
        return False
    wake, names, first = p.plan()
    now = state.clock.now_ms()
    if wake is not None and wake <= now:  # the execution deadline: the heartbeat fails the run
        state.timed_out = True
        state.unwinding = _timed_out()
        p.fail_all(state.unwinding)
        return False
    if state.checkpoints is not None and not await state.checkpoints.close():
        # The flush before the park was refused: the lease is gone.
        state.unwinding = LeaseLost()
        p.fail_all(LeaseLost())
        return True
    state.close()
    timer = None if wake is None else p.timer_name(first, now, wake)
    p.parking = True
    try:
        if names:
            refused = await state.store.park_wait(
                state.workflow_id,
                epoch=state.epoch,
                now=now,
                signal=",".join(names),
                seen_seq=state.signal_seq,
                deadline=wake,
                timer=timer,
            )
        else:
            assert wake is not None
            refused = await state.store.park_sleep(
                state.workflow_id, epoch=state.epoch, now=now, wake_at=wake, timer=timer
            )
    except Exception as e:
        from ._claim_failures import counts

        log.warning("run %s: park failed (%s); abandoning this claim", state.workflow_id, e)
        if counts(e):
            # Refused for good, not a lost lease: every claim would park and fail
            # here again. The claim stays held; the runner counts the error on the
            # run (worker/_claim_failures.py).
            state.reopen()
            state.failure = e
        else:
            state.lose()
        state.unwinding = LeaseLost()
        p.fail_all(LeaseLost())
        return True
    if refused is not None:
        p.parking = False  # not parked: a branch may go on (its timer fires again)
        state.reopen()  # the decision below: go on, or lose the claim
        old = refused.old
        if old is not None and old.epoch == state.epoch and old.status == "running":
            if old.cancel_requested:
                state.cancel_requested = old.cancel_requested
                p.resolve(CANCEL)
                return False
            if old.signal_seq != state.signal_seq:
                p.signal_seq_moved(old.signal_seq)
                return False
        state.lose()
        state.unwinding = LeaseLost()
        p.fail_all(LeaseLost())
        return True
    if wake is not None:
        op, seq = (first.op_id, first.seq) if first is not None else ("deadline", 0)
        try:
            kind = await state.store.arrange_timer(
                state.workflow_id, op, seq, now=now, wake_at=wake
            )
            state.timers.append(kind)
        except Exception:
            # The park is recorded with due_at: the sweeper wakes the run.
            log.exception(
                "could not arrange the timer of %s; the sweeper will wake it", state.workflow_id
            )
    state.unwinding = Suspend()
    p.fail_all(Suspend())
    return True


def _timed_out() -> BaseException:
    from ._state import ExecutionTimedOut

    return ExecutionTimedOut()


def cancel_tasks(tasks: Any) -> None:
    for t in list(tasks):
        if not t.done():
            t.cancel()
