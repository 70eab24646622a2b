"""`ctx.wait_for_signal`: the next signal of a name, or None after a timeout.

The deadline is fixed when the operation is first reached. Signals are
consumed from the run's inbox in arrival order, each exactly once (a
transaction resolves the wait and marks the signal consumed). With no signal
in the inbox the branch waits; the run parks when every branch waits, with a
write conditioned on the run's `signal_seq` as it was before every waiting
branch last looked at its inbox, so a signal that arrives in between makes the
park fail and the branches look again (docs/architecture.md has the proof).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from orchestrator.model import RESERVED_SIGNAL_PREFIX, SIGNAL_NAME_RE, StepKind, StepRecord

from .. import _core
from .._outcomes import _check_marker, _wait_outcome
from .._state import RunState, duration_ms


async def wait_for_signal(marker: str, name: str, *, timeout: timedelta | float | None) -> Any:
    _check_marker(marker)
    if not isinstance(name, str) or not SIGNAL_NAME_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid signal name")
    if name.startswith(RESERVED_SIGNAL_PREFIX):
        raise ValueError(
            f"signal names starting with {RESERVED_SIGNAL_PREFIX!r} are the engine's own"
        )
    timeout_ms = None if timeout is None else duration_ms(timeout)
    s, op_id, rec = await _core.enter("wait_for_signal")
    if rec is not None:
        _core.check(s, rec, StepKind.WAIT, marker)
        if rec.resolved:
            return _wait_outcome(rec)
        return _wait_outcome(await receive(s, rec, written=True))
    now = s.clock.now_ms()
    rec = StepRecord(
        op_id,
        marker,
        StepKind.WAIT,
        s.epoch,
        now,
        started_at=now,
        signal=name,
        wake_at=None if timeout_ms is None else now + timeout_ms,
    )
    return _wait_outcome(await receive(s, rec, written=False))


async def receive(
    s: RunState, rec: StepRecord, *, written: bool, until: int | None = None, seq: int = 0
) -> StepRecord:
    """Wait at `rec` (any kind: a signal wait, a child run's end, a callback's
    completion) for the next signal named `rec.signal`, until `rec.wake_at` (None:
    no deadline). Returns the resolved record: `result` holds the consumed
    signal's payload, or `timed_out` is set. `written`: `rec` is already recorded
    (its deadline fixed); otherwise it is recorded before the branch waits.
    `until`: stop waiting then (even at or past the deadline) and return `rec`
    unresolved, for the caller to decide (a callback checks whether a heartbeat
    moved its deadline, and closes itself before it times out). `seq` tells
    apart the timers of successive waits at one record (it names the schedule)."""
    op_id, name = rec.op_id, rec.signal
    assert name is not None
    while True:
        deadline = rec.wake_at
        seen = s.signal_seq  # read before the inbox: the park is conditioned on it
        inbox = await _core.io(s, s.store.inbox(s.workflow_id, name))
        # A signal stamped after the deadline stays for the next wait.
        eligible = [sig for sig in inbox if deadline is None or sig.sent_at <= deadline]
        if eligible:
            _core.check_lease(s)
            sig = eligible[0]
            consumed = s.store.consume(s.workflow_id, wait=rec, signal=sig, now=s.clock.now_ms())
            if await _core.io(s, consumed):
                done = replace(
                    rec,
                    resolved=True,
                    result=sig.payload,
                    signal_seq=sig.seq,
                    recorded_at=s.clock.now_ms(),
                )
                s.history[op_id] = done
                return done
            current = await _core.io(s, _maybe_step(s, op_id))
            if current is not None and current.resolved:
                s.history[op_id] = current
                return current
            continue  # the signal went elsewhere meanwhile; look again
        if not written:
            # Fix the deadline durably before waiting on it.
            rec = await _core.record(s, rec)
            written = True
            if rec.resolved:
                return rec
            if rec.wake_at != deadline:
                continue  # another writer fixed a different deadline: use theirs
        if until is not None and s.clock.now_ms() >= until:
            return rec
        if deadline is not None and s.clock.now_ms() >= deadline:
            if not await _core.io(
                s,
                s.store.resolve_timeout(
                    s.workflow_id, op_id=op_id, now=s.clock.now_ms(), attempt=s.run_attempt
                ),
            ):
                rec = await _core.io(s, s.store.get_step(s.workflow_id, op_id))
                s.history[op_id] = rec
                return rec
            done = replace(rec, resolved=True, timed_out=True, recorded_at=s.clock.now_ms())
            s.history[op_id] = done
            return done
        wake = deadline if until is None else until if deadline is None else min(deadline, until)
        await _core.wait_parked(op_id, wake_at=wake, signal=name, seq=seq, seen_seq=seen)


async def _maybe_step(s: RunState, op_id: str) -> StepRecord | None:
    try:
        return await s.store.get_step(s.workflow_id, op_id)
    except KeyError:
        return None
