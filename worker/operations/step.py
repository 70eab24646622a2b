"""`ctx.step`: run a function once and record its outcome.

A replay returns the recorded result (or raises the recorded failure as
StepFailedError) without running the function. A miss runs it (sync functions
in the worker's thread pool, async ones on its loop), within the worker's cap on
step functions running at once, and records the outcome first-write-wins. A
failed attempt is retried per the policy: delays up to IN_WORKER_RETRY_MAX_MS
are waited in the worker; longer ones park this branch (and the run, when
nothing else can go on) after recording the attempt count and the next
attempt's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import time
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from typing import Any

from orchestrator.errors import StepInterruptedError, StepTimeoutError
from orchestrator.model import STEP_NAME_RE, StepKind, StepRecord

from .. import _core
from .._logs import log_context
from .._outcomes import _encode_result, _outcome, _result_adapter
from .._retry import DEFAULT_RETRY, IN_WORKER_RETRY_MAX_MS, RetryPolicy
from .._scope import outside_var
from .._state import ExecutionTimedOut, RunState, duration_ms, error_info
from ..plugins import Attempt, Hooks


class StepSemantics(StrEnum):
    """What a crash in the middle of an attempt does (`ctx.step(semantics=)`).

    - AT_LEAST_ONCE_PER_RETRY (the default): nothing is written before the
      function runs; an attempt a crash interrupted runs again, from the start.
    - AT_MOST_ONCE_PER_RETRY: the attempt's start is recorded before the
      function runs (one more write per attempt). An attempt that started and
      never ended counts as failed (StepInterruptedError) and is never run
      again; the retry policy decides whether a next attempt runs. For payments
      and emails, with a policy of one attempt for never-twice.
    """

    AT_LEAST_ONCE_PER_RETRY = "at_least_once_per_retry"
    AT_MOST_ONCE_PER_RETRY = "at_most_once_per_retry"


AT_LEAST_ONCE_PER_RETRY = StepSemantics.AT_LEAST_ONCE_PER_RETRY
AT_MOST_ONCE_PER_RETRY = StepSemantics.AT_MOST_ONCE_PER_RETRY


def _call_in_step(
    label: str, hooked: _Hooked | None, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    _core.in_step.set(label)
    if hooked is None:
        return fn(*args, **kwargs)
    with hooked:
        return hooked.done(fn(*args, **kwargs))


async def _await_in_step(hooked: _Hooked, work: Any) -> Any:
    with hooked:
        return hooked.done(await work)


class _Hooked:
    """The plugins' attempt hooks around one attempt of a step's function, in the
    function's own thread and context (worker/plugins.py)."""

    def __init__(self, hooks: Hooks, attempt: Attempt) -> None:
        self.hooks = hooks
        self.attempt = attempt
        self._fields: contextlib.ExitStack | None = None
        self._started = 0.0

    def __enter__(self) -> _Hooked:
        fields = self.hooks.call("attempt_start", self.attempt)
        self._fields = contextlib.ExitStack()
        self._fields.enter_context(log_context(**fields))
        self._started = time.monotonic()
        return self

    def done(self, value: Any) -> Any:
        self._end("succeeded", None)
        return value

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            self._end("failed", exc)

    def _end(self, outcome: str, exc: BaseException | None) -> None:
        seconds = time.monotonic() - self._started
        try:
            self.hooks.call("attempt_end", self.attempt, outcome, exc, seconds)
        finally:
            assert self._fields is not None
            self._fields.close()


async def step(
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    retry: RetryPolicy | None,
    timeout: timedelta | float | None,
    semantics: StepSemantics | str = "at_least_once_per_retry",
) -> Any:
    if not isinstance(name, str) or not STEP_NAME_RE.fullmatch(name):
        raise ValueError("a step name is 1 to 200 printable characters")
    semantics = StepSemantics(semantics)
    policy = retry or DEFAULT_RETRY
    timeout_s = None if timeout is None else duration_ms(timeout) / 1000
    s, op_id, rec = await _core.enter("step")
    adapter = _result_adapter(fn)
    attempts: list[dict[str, Any]] = []
    interrupted: dict[str, Any] | None = None
    if rec is not None:
        _core.check(s, rec, StepKind.STEP, name)
        if rec.resolved or (rec.retry_at is None and not _started_only(rec)):
            _core.replayed(s, rec)
            return _outcome(rec, adapter)
        attempts = list(rec.attempts)
        if rec.retry_at is None:
            interrupted = attempts.pop()  # an at-most-once attempt that never ended
        else:
            await _wait_retry(s, op_id, rec.retry_at, len(attempts))
    while True:
        n = len(attempts) + 1
        failure: Exception | None = None
        text = None
        if interrupted is not None:
            # Counted as failed, never run again: the retry policy decides.
            started, interrupted = interrupted["started_at"], None
            failure = StepInterruptedError(
                f"attempt {n} of step {name!r} started at {started} and never ended "
                "(its worker stopped or lost the run); at most once: not run again"
            )
        else:
            if s.past_deadline():
                _core.unwind(s, ExecutionTimedOut())
            _core.check_lease(s)
            if n == 1:
                _core.started(s, StepKind.STEP, op_id, name)
            started = s.clock.now_ms()
            if semantics is StepSemantics.AT_MOST_ONCE_PER_RETRY:
                other = await _record_start(s, op_id, name, attempts, n, started)
                if other is not None:
                    if other.resolved:  # another writer recorded the outcome first
                        return _outcome(other, adapter)
                    attempts = list(other.attempts)  # another writer started it: not ours
                    if other.retry_at is None:
                        interrupted = attempts.pop()
                    continue
            with log_context(step=name, position=op_id, step_attempt=n):
                s.enter_busy()
                try:
                    value = await _attempt(s, name, op_id, n, fn, args, kwargs, timeout_s)
                    text = _encode_result(value, adapter, s.store.values.max_bytes)
                except Exception as exc:
                    failure = exc
                finally:
                    s.leave_busy()
            s.executed_steps += 1
        finished = s.clock.now_ms()
        first_start = attempts[0]["started_at"] if attempts else started
        # At most once: the attempts are always kept (the record replaces the start
        # marker, and is never batched: it is written before the function's result
        # is returned).
        keep = semantics is StepSemantics.AT_MOST_ONCE_PER_RETRY
        if failure is None:
            if attempts or keep:
                attempts.append({"attempt": n, "started_at": started, "finished_at": finished})
            done = StepRecord(
                op_id,
                name,
                StepKind.STEP,
                s.epoch,
                finished,
                result=text,
                started_at=first_start,
                resolved=True,
                attempts=attempts,
            )
            return _outcome(_core.ended(s, await _core.record(s, done)), adapter)
        info = error_info(failure)
        attempts.append(
            {
                "attempt": n,
                "started_at": started,
                "finished_at": finished,
                "error": {"type": info.type, "message": info.message[:500]},
            }
        )
        if n >= policy.max_attempts or not policy.retryable(failure):
            failed = StepRecord(
                op_id,
                name,
                StepKind.STEP,
                s.epoch,
                finished,
                error=info,
                started_at=first_start,
                resolved=True,
                attempts=attempts if len(attempts) > 1 or keep else [],
            )
            return _outcome(_core.ended(s, await _core.record(s, failed)), adapter)
        delay = policy.delay_ms(n)
        attempts[-1]["delay_ms"] = delay  # the policy's delay before the next attempt
        retry_at = finished + delay
        pending = StepRecord(
            op_id,
            name,
            StepKind.STEP,
            s.epoch,
            finished,
            started_at=first_start,
            attempts=attempts,
            retry_at=retry_at,
        )
        winner = await _core.record(s, pending)
        if winner.resolved:
            return _outcome(winner, adapter)
        attempts = list(winner.attempts)
        if winner.retry_at is None:  # a start marker of a later attempt: not ours
            interrupted = attempts.pop()
            continue
        await _wait_retry(s, op_id, winner.retry_at or retry_at, len(attempts))


def _started_only(rec: StepRecord) -> bool:
    """An at-most-once attempt's start marker: its last attempt has no end."""
    return bool(rec.attempts) and "finished_at" not in rec.attempts[-1]


async def _record_start(
    s: RunState, op_id: str, name: str, attempts: list[dict[str, Any]], n: int, started: int
) -> StepRecord | None:
    """At most once per retry: record that attempt `n` starts, before the function
    runs (`put_step` lets one writer start each attempt). None when this writer
    recorded it, else what is recorded there."""
    marker = StepRecord(
        op_id,
        name,
        StepKind.STEP,
        s.epoch,
        started,
        started_at=attempts[0]["started_at"] if attempts else started,
        attempts=[*attempts, {"attempt": n, "started_at": started}],
    )
    winner = await _core.record(s, marker)
    return None if winner is marker or winner == _core.stamped(s, marker) else winner


async def _attempt(
    s: RunState,
    name: str,
    op_id: str,
    n: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout_s: float | None,
) -> Any:
    slots = s.step_slots or contextlib.nullcontext()
    hooked = None
    if s.hooks and (s.hooks.has("attempt_start") or s.hooks.has("attempt_end")):
        hooked = _Hooked(s.hooks, Attempt(s.workflow_id, s.name, op_id, name, n))
    async with slots:  # type: ignore[attr-defined]
        if inspect.iscoroutinefunction(fn):
            token = _core.in_step.set(name)
            outside = outside_var.set(True)
            try:
                coro = fn(*args, **kwargs)
                if hooked is not None:
                    coro = _await_in_step(hooked, coro)
                work: asyncio.Future[Any] = asyncio.ensure_future(coro)
            finally:
                outside_var.reset(outside)
                _core.in_step.reset(token)
        else:
            call = functools.partial(_call_in_step, name, hooked, fn, *args, **kwargs)
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(s.executor, contextvars.copy_context().run, call)
        try:
            if timeout_s is None:
                return await work
            done, _ = await asyncio.wait({work}, timeout=timeout_s)
        except asyncio.CancelledError:
            work.cancel()  # an async function stops; a thread runs on, its result dropped
            raise
        if not done:
            # An async function is cancelled; a thread cannot be stopped: it runs
            # on and its result is dropped.
            work.cancel()
            raise StepTimeoutError(f"step {name!r} attempt ran over its timeout of {timeout_s:g}s")
        return work.result()


async def _wait_retry(s: RunState, op_id: str, retry_at: int, attempts: int) -> None:
    while True:
        remaining = retry_at - s.clock.now_ms()
        if remaining <= 0:
            return
        if remaining <= IN_WORKER_RETRY_MAX_MS:
            s.enter_busy()  # the heartbeat keeps the lease meanwhile; the run does not park
            try:
                await asyncio.sleep(remaining / 1000)
            finally:
                s.leave_busy()
            return
        await _core.wait_parked(op_id, wake_at=retry_at, seq=attempts)
