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

import json
from datetime import timedelta
from typing import Any

from orchestrator.model import SIGNAL_NAME_RE, StepKind, StepRecord

from .. import _core
from .._outcomes import _check_marker, _wait_outcome
from .._state import RunState, duration_ms


async def wait_for_signal(marker: str, name: str, *, timeout: timedelta | float | None) -> Any:
    _check_marker(marker)
    if not isinstance(name, str) or not SIGNAL_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a valid signal name")
    timeout_ms = None if timeout is None else duration_ms(timeout)
    s, op_id, rec = await _core.enter("wait_for_signal")
    written = rec is not None
    if rec is not None:
        _core.check(s, rec, StepKind.WAIT, marker)
        if rec.resolved:
            return _wait_outcome(rec)
    else:
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
                s.history[op_id] = rec
                return json.loads(sig.payload)
            current = await _core.io(s, _maybe_step(s, op_id))
            if current is not None and current.resolved:
                s.history[op_id] = current
                return _wait_outcome(current)
            continue  # the signal went elsewhere meanwhile; look again
        if not written:
            # Fix the deadline durably before waiting on it.
            rec = await _core.record(s, rec)
            written = True
            if rec.resolved:
                return _wait_outcome(rec)
            if rec.wake_at != deadline:
                continue  # another writer fixed a different deadline: use theirs
        if deadline is not None and s.clock.now_ms() >= deadline:
            if not await _core.io(
                s, s.store.resolve_timeout(s.workflow_id, op_id=op_id, now=s.clock.now_ms())
            ):
                rec = await _core.io(s, s.store.get_step(s.workflow_id, op_id))
                s.history[op_id] = rec
                return _wait_outcome(rec)
            return None
        await _core.wait_parked(op_id, wake_at=deadline, signal=name, seen_seq=seen)


async def _maybe_step(s: RunState, op_id: str) -> StepRecord | None:
    try:
        return await s.store.get_step(s.workflow_id, op_id)
    except KeyError:
        return None
