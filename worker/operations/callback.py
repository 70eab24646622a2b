"""`ctx.create_callback` and `ctx.wait_for_callback`: wait for an outside system.

`create_callback` takes one operation id. The first time it is reached it
draws a token (192 random bits) and records, in one transaction, the
operation record (kind "callback": the token, the deadline = creation +
timeout) and the token's lookup item that the API completes it through
(`orchestrator/store/callbacks.py`). The record is first-write-wins: a writer
that lost uses the winner's token, and a replay returns the recorded one, so
the token handed to the outside system never changes.

`Callback.result()` waits at that record, through the signal wait loop
(`operations/signal.py: receive`), for the reserved signal `sys:cb:<op id>`
that the API stores when the callback is completed; a completion that came
before the wait is in the inbox and is taken at once. The wait ends at the
deadline, or at the heartbeat deadline (the last heartbeat, or the creation,
plus the heartbeat timeout). Heartbeats only move that deadline in the lookup
item: the wait, woken at the heartbeat deadline it knew, reads the lookup
item once and waits again if a heartbeat moved it. No schedule per heartbeat.

At a deadline the wait first closes the lookup item (`closed_at`, unless
`completed_at` is there), then records the timeout. A completion is stamped by
the API's clock before its write commits; the close makes the two exclusive
whatever the latency: a completion that committed first wins (the close is
refused and the wait takes it from the inbox), one that comes after is refused
(409), so a 202 from the API always means the workflow gets the result.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter

from orchestrator.errors import CallbackFailedError, CallbackTimeoutError, WorkflowContextError
from orchestrator.model import STEP_NAME_RE, StepKind, StepRecord
from orchestrator.store import callbacks as cbstore
from orchestrator.store.codec import from_item

from .. import _core
from .._retry import RetryPolicy
from .._state import RunState, duration_ms
from .signal import receive

log = logging.getLogger("worker")

TOKEN_BYTES = 24  # secrets.token_urlsafe: 32 characters, 192 random bits


def new_token() -> str:
    """A callback id: 32 URL-safe characters, never starting with "-", which a
    command line would read as an option (`orchestrator callback heartbeat
    -Xq...` failed one time in 64); 191.9 random bits."""
    while (token := secrets.token_urlsafe(TOKEN_BYTES)).startswith("-"):
        pass
    return token


@dataclass(frozen=True)
class Callback:
    """A callback created by `ctx.create_callback`. Give `id` to the outside
    system; it completes the callback with `POST /callbacks/{id}/succeed` or
    `/fail` (and keeps it alive with `/heartbeat`)."""

    id: str
    name: str
    op_id: str
    heartbeat_timeout_ms: int | None = None
    result_type: Any = None  # the posted result is validated into it (pydantic)

    async def result(self) -> Any:
        """The result the outside system sent. Raises CallbackFailedError if it
        failed the callback, CallbackTimeoutError if the timeout (counted from the
        callback's creation) or the heartbeat timeout passed first. With the
        callback's `result_type`, the result is validated into it (a pydantic
        ValidationError, a ValueError, if it does not fit: the same on every
        replay, since the recorded result is the same)."""
        return await _result(self)

    def __repr__(self) -> str:  # the token is a capability: never shown in full
        return f"Callback(name={self.name!r}, id={cbstore.token_prefix(self.id)!r})"


async def create_callback(
    name: str,
    *,
    timeout: timedelta | float | None,
    heartbeat_timeout: timedelta | float | None,
    result_type: Any = None,
) -> Callback:
    if not isinstance(name, str) or not STEP_NAME_RE.fullmatch(name):
        raise ValueError("a callback name is 1 to 200 printable characters")
    timeout_ms = None if timeout is None else duration_ms(timeout)
    heartbeat_ms = None if heartbeat_timeout is None else duration_ms(heartbeat_timeout)
    if heartbeat_ms is not None and heartbeat_ms <= 0:
        raise ValueError("heartbeat_timeout must be positive")
    s, op_id, rec = await _core.enter("create_callback")
    if rec is None:
        now = s.clock.now_ms()
        rec = StepRecord(
            op_id,
            name,
            StepKind.CALLBACK,
            s.epoch,
            now,
            started_at=now,
            signal=cbstore.callback_signal(op_id),
            wake_at=None if timeout_ms is None else now + timeout_ms,
            callback_id=new_token(),
        )
        _core.check_lease(s)
        rec = await _core.io(s, _create(s, _core.stamped(s, rec), heartbeat_ms or 0))
        s.history[op_id] = rec
        assert rec.callback_id is not None
        log.info(
            "run %s: callback %r created at %s (id %s)",
            s.workflow_id,
            name,
            op_id,
            cbstore.token_prefix(rec.callback_id),
        )
    else:
        _core.check(s, rec, StepKind.CALLBACK, name)
    assert rec.callback_id is not None
    return Callback(rec.callback_id, name, op_id, heartbeat_ms, result_type)


async def wait_for_callback(
    ctx: Any,
    name: str,
    submitter: Callable[..., Any],
    *,
    timeout: timedelta | float | None,
    heartbeat_timeout: timedelta | float | None,
    retry: RetryPolicy | None,
    result_type: Any = None,
) -> Any:
    """create_callback, then the step `<name>-submit` that runs
    `submitter(callback_id)`, then the callback's result."""
    cb = await create_callback(
        name, timeout=timeout, heartbeat_timeout=heartbeat_timeout, result_type=result_type
    )
    await ctx.step(f"{name}-submit", submitter, cb.id, retry=retry)
    return await cb.result()


async def _create(s: RunState, rec: StepRecord, heartbeat_ms: int) -> StepRecord:
    """Record the callback and its lookup item; the recorded one if another writer won."""
    from botocore.exceptions import ClientError

    req = cbstore.create(s.store.settings.table, s.workflow_id, rec, heartbeat_ms=heartbeat_ms)
    try:
        await s.store.ddb.transact_write_items(**req)
        return rec
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "TransactionCanceledException":
            raise
    return await s.store.get_step(s.workflow_id, rec.op_id)


async def _heartbeat_deadline(s: RunState, token: str) -> int | None:
    resp = await s.store.ddb.get_item(**cbstore.get_lookup(s.store.settings.table, token))
    item = resp.get("Item")
    if item is None:
        return None
    return int(from_item(item).get("heartbeat_deadline", 0)) or None


async def _result(cb: Callback) -> Any:
    inside = _core.in_step.get()
    if inside is not None:
        raise WorkflowContextError(
            f"Callback.result() was called inside step {inside!r}; call it from the workflow"
        )
    s, _, _ = _core.current()
    if s.unwinding is not None:
        raise s.unwinding
    rec = s.history[cb.op_id]
    if not rec.resolved:
        rec = await _wait(s, rec, cb.heartbeat_timeout_ms)
    value = _outcome(rec, cb.heartbeat_timeout_ms)
    if cb.result_type is not None:
        return TypeAdapter(cb.result_type).validate_python(value)
    return value


async def _wait(s: RunState, rec: StepRecord, heartbeat_ms: int | None) -> StepRecord:
    """Wait for the completion until the deadline or the heartbeat deadline, then
    close the callback and record the timeout (or take a completion that won)."""
    overall = rec.wake_at
    assert rec.started_at is not None and rec.callback_id is not None
    beat = None if heartbeat_ms is None else rec.started_at + heartbeat_ms
    while True:
        ends = [t for t in (overall, beat) if t is not None]
        if not ends:
            return await receive(s, rec, written=True)
        until = min(ends)
        if s.clock.now_ms() < until:
            # Each heartbeat deadline gets its own schedule name: the schedule of the
            # previous one may not be deleted yet when the run parks again.
            seq = 0 if until == overall else (until // 1000) % 1_000_000 or 1
            done = await receive(s, rec, written=True, until=until, seq=seq)
            if done.resolved:
                return done
        if until != overall:
            # At the heartbeat deadline this wait knew: did a heartbeat move it?
            assert beat is not None
            moved = await _core.io(s, _heartbeat_deadline(s, rec.callback_id))
            if moved is not None and moved > beat:
                beat = moved
                continue
        _core.check_lease(s)
        now = s.clock.now_ms()
        if not await _core.io(s, _close(s, rec.callback_id, now)):
            # A completion committed first: its signal is in the inbox.
            return await receive(s, rec, written=True)
        if not await _core.io(
            s,
            s.store.resolve_timeout(s.workflow_id, op_id=rec.op_id, now=now, attempt=s.run_attempt),
        ):
            rec = await _core.io(s, s.store.get_step(s.workflow_id, rec.op_id))
            s.history[rec.op_id] = rec
            return rec
        done = replace(rec, resolved=True, timed_out=True, recorded_at=now)
        s.history[rec.op_id] = done
        return done


async def _close(s: RunState, token: str, now: int) -> bool:
    """Close the callback to completions: True, or False if one committed first."""
    from botocore.exceptions import ClientError

    try:
        await s.store.ddb.update_item(**cbstore.close(s.store.settings.table, token, now=now))
        return True
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        item: Any = e.response.get("Item")
    # No item: it expired, and nobody can complete it any more.
    return not (item and "completed_at" in item)


def _outcome(rec: StepRecord, heartbeat_ms: int | None) -> Any:
    if rec.timed_out:
        # A timeout resolved before the overall deadline was the heartbeat's.
        early = rec.wake_at is None or rec.recorded_at < rec.wake_at
        raise CallbackTimeoutError(rec.name, "heartbeat" if heartbeat_ms and early else "timeout")
    body = json.loads(rec.result or "null")
    if not isinstance(body, dict) or not body.get("ok"):
        error = (body or {}).get("error") or {} if isinstance(body, dict) else {}
        raise CallbackFailedError(
            rec.name, str(error.get("type", "Error")), str(error.get("message", ""))
        )
    return body.get("result")
