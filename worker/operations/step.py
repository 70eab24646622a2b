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
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from orchestrator.errors import StepTimeoutError
from orchestrator.model import STEP_NAME_RE, StepKind, StepRecord

from .. import _core
from .._logs import log_context
from .._outcomes import _encode_result, _outcome, _result_adapter
from .._retry import DEFAULT_RETRY, IN_WORKER_RETRY_MAX_MS, RetryPolicy
from .._scope import outside_var
from .._state import ExecutionTimedOut, RunState, duration_ms, error_info


def _call_in_step(label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    _core.in_step.set(label)
    return fn(*args, **kwargs)


async def step(
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    retry: RetryPolicy | None,
    timeout: timedelta | float | None,
) -> Any:
    if not isinstance(name, str) or not STEP_NAME_RE.fullmatch(name):
        raise ValueError("a step name is 1 to 200 printable characters")
    policy = retry or DEFAULT_RETRY
    timeout_s = None if timeout is None else duration_ms(timeout) / 1000
    s, op_id, rec = await _core.enter("step")
    adapter = _result_adapter(fn)
    attempts: list[dict[str, Any]] = []
    if rec is not None:
        _core.check(s, rec, StepKind.STEP, name)
        if rec.resolved or rec.retry_at is None:
            if s.metrics is not None:
                s.metrics.inc("orchestrator_steps_total", workflow=s.name, outcome="replayed")
            return _outcome(rec, adapter)
        attempts = list(rec.attempts)
        await _wait_retry(s, op_id, rec.retry_at, len(attempts))
    while True:
        if s.past_deadline():
            _core.unwind(s, ExecutionTimedOut())
        _core.check_lease(s)
        n = len(attempts) + 1
        failure: Exception | None = None
        text = None
        with (
            log_context(step=name, position=op_id, step_attempt=n),
            _span(s, name, op_id, n) as span,
        ):
            s.enter_busy()
            try:
                started = s.clock.now_ms()
                value = await _attempt(s, name, fn, args, kwargs, timeout_s)
                text = _encode_result(value, adapter, s.store.values.max_bytes)
            except Exception as exc:
                failure = exc
                if span is not None:
                    span.record_exception(exc)
            finally:
                s.leave_busy()
        finished = s.clock.now_ms()
        if s.metrics is not None:
            outcome = "ok" if failure is None else "error"
            s.metrics.inc("orchestrator_steps_total", workflow=s.name, outcome=outcome)
            s.metrics.observe(
                "orchestrator_step_seconds", (finished - started) / 1000, workflow=s.name
            )
        s.executed_steps += 1
        first_start = attempts[0]["started_at"] if attempts else started
        if failure is None:
            if attempts:
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
            return _outcome(await _core.record(s, done), adapter)
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
                attempts=attempts if len(attempts) > 1 else [],
            )
            return _outcome(await _core.record(s, failed), adapter)
        retry_at = finished + policy.delay_ms(n)
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
        await _wait_retry(s, op_id, winner.retry_at or retry_at, len(attempts))


async def _attempt(
    s: RunState,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout_s: float | None,
) -> Any:
    slots = s.step_slots or contextlib.nullcontext()
    async with slots:  # type: ignore[attr-defined]
        if inspect.iscoroutinefunction(fn):
            token = _core.in_step.set(name)
            outside = outside_var.set(True)
            try:
                work: asyncio.Future[Any] = asyncio.ensure_future(fn(*args, **kwargs))
            finally:
                outside_var.reset(outside)
                _core.in_step.reset(token)
        else:
            call = functools.partial(_call_in_step, name, fn, *args, **kwargs)
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


def _span(s: RunState, name: str, op_id: str, attempt: int) -> Any:
    if s.tracing is None:
        return contextlib.nullcontext()
    return s.tracing.span(
        "workflow.step",
        workflow_id=s.workflow_id,
        step_name=name,
        step_position=op_id,
        step_attempt=attempt,
    )
