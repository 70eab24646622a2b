"""The workflow context: `ctx.step`, `ctx.sleep`, `ctx.sleep_until`,
`ctx.wait_for_signal`.

Every durable call takes the next position in the run. On replay, the record
at that position is checked against the call (kind and name) and its outcome
is returned; a mismatch is a NonDeterminismError that fails the run. A miss
runs the call and records it first-write-wins.

Parking (sleep, wait, a long retry delay) and losing the lease unwind the
workflow coroutine with `BaseException`s that `except Exception` cannot
swallow; if user code catches them anyway, the run state remembers and every
later durable call raises again.

A cancel is delivered at the first durable call that is not a replay, and
the delivery is recorded at that position (kind "cancel"), so a replay raises
it at the same point and cleanup steps keep their positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import json
import logging
import typing
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.errors import (
    NonDeterminismError,
    StepTimeoutError,
    WorkflowCancelledError,
    WorkflowContextError,
)
from orchestrator.model import (
    SIGNAL_NAME_RE,
    STEP_NAME_RE,
    StepKind,
    StepRecord,
)

from ._logs import ReplayAwareLogger, log_context
from ._outcomes import (
    _check_marker,
    _encode_result,
    _outcome,
    _result_adapter,
    _timer_name,
    _transient,
    _wait_outcome,
)
from ._retry import DEFAULT_RETRY, IN_WORKER_RETRY_MAX_MS, RetryPolicy
from ._state import (
    ExecutionTimedOut,
    LeaseLost,
    RunState,
    StoreUnavailable,
    Suspend,
    duration_ms,
    error_info,
)
from ._store import OWNER_LEASE, LeaseExpiredBeforeSend

log = logging.getLogger("worker")
_T = typing.TypeVar("_T")

_in_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("in_step", default=None)
_current: contextvars.ContextVar[WorkflowContext | None] = contextvars.ContextVar(
    "ctx", default=None
)


def _call_in_step(label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    _in_step.set(label)
    return fn(*args, **kwargs)


class WorkflowContext:
    """Passed to every workflow function as its first argument."""

    def __init__(self, state: RunState) -> None:
        self._s = state

    @property
    def workflow_id(self) -> str:
        return self._s.workflow_id

    @property
    def workflow_name(self) -> str:
        return self._s.name

    @property
    def logger(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """A logger for the workflow function: lines carry the run's context, and
        lines logged while replaying recorded calls are dropped, not repeated."""
        return ReplayAwareLogger(
            logging.getLogger(f"workflow.{self._s.name}"), lambda: self.is_replaying
        )

    @property
    def is_replaying(self) -> bool:
        """True while the run re-executes calls it already recorded."""
        return self._s.position in self._s.history

    def now(self) -> datetime:
        """The clock's time. Not replay-stable: record it in a step if it matters."""
        return datetime.fromtimestamp(self._s.clock.now_ms() / 1000, tz=UTC)

    # --- plumbing -----------------------------------------------------------------------
    def _unwind(self, exc: BaseException) -> typing.NoReturn:
        self._s.unwinding = exc
        raise exc

    async def _io(self, call: Awaitable[_T]) -> _T:
        """Await a store request. One that failed transiently after the SDK's retries
        (throttling, 5xx, a connection error or a lost answer) unwinds the run
        (StoreUnavailable) instead of reaching workflow code as an exception, which
        would fail the run or be swallowed by `except Exception`."""
        s = self._s
        token = OWNER_LEASE.set(s.lease_valid)  # checked again before each HTTP attempt
        try:
            return await call
        except LeaseExpiredBeforeSend:
            log.warning("run %s: lease ran out before a request was sent; abandoned", s.workflow_id)
            s.lost = True
            self._unwind(LeaseLost())
        except (ClientError, BotoCoreError) as e:
            if not _transient(e):
                raise  # a request this code should not have made: fails the run, clearly
            log.warning(
                "run %s: %s; abandoning this claim (the run resumes after its lease)",
                self._s.workflow_id,
                e,
            )
            self._unwind(StoreUnavailable(str(e)))
        finally:
            OWNER_LEASE.reset(token)

    async def _enter(self, call: str) -> tuple[int, StepRecord | None]:
        """Take the next position: (position, its record if this is a replay).
        Delivers a pending cancel, the execution timeout and a lost lease first."""
        inside = _in_step.get()
        if inside is not None:
            raise WorkflowContextError(
                f"ctx.{call} was called inside step {inside!r}: a step function is one side "
                "effect and cannot make durable calls; call it from the workflow function"
            )
        s = self._s
        if s.unwinding is not None:
            raise s.unwinding
        if s.past_deadline():
            self._unwind(ExecutionTimedOut())
        pos = s.position
        rec = s.history.get(pos)
        if rec is not None and rec.kind == StepKind.CANCEL:
            s.position += 1
            s.cancel_delivered = True
            raise WorkflowCancelledError(rec.result or "cancelled")
        if rec is None and s.cancel_requested is not None and not s.cancel_delivered:
            now = s.clock.now_ms()
            marker = StepRecord(
                pos,
                "cancel",
                StepKind.CANCEL,
                s.epoch,
                now,
                result=s.cancel_requested,
                resolved=True,
            )
            winner = await self._record(marker)
            if winner.kind == StepKind.CANCEL:
                s.position += 1
                s.cancel_delivered = True
                raise WorkflowCancelledError(s.cancel_requested)
            rec = winner  # another writer recorded this position first: replay it
        s.position += 1
        return pos, rec

    def _check(self, rec: StepRecord, kind: StepKind, name: str) -> None:
        if rec.kind != kind or rec.name != name:
            self._unwind(
                NonDeterminismError(
                    f"replay of run {self._s.workflow_id} reached {kind.value} {name!r} at position "
                    f"{rec.position}, but the history records {rec.kind.value} {rec.name!r} there; "
                    "the workflow code changed under a running workflow or is not deterministic"
                )
            )

    async def _record(self, rec: StepRecord) -> StepRecord:
        try:
            self._s.check_lease()
        except LeaseLost as e:
            self._unwind(e)
        winner = await self._io(self._s.store.put_step(self._s.workflow_id, rec))
        self._s.history[rec.position] = winner
        return winner

    # --- steps ----------------------------------------------------------------------------
    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` and return its recorded result.

        Sync functions run in a thread, async ones in the worker's loop. The
        result must be JSON-serializable (pydantic models and dataclasses are
        dumped); with a return annotation it is validated back into that type,
        the same on first execution and on replay. A failed attempt is retried
        per `retry` (default: DEFAULT_RETRY); `timeout` bounds one attempt. When
        the attempts run out the last error is recorded and raised as
        StepFailedError, on replay too. (`retry` and `timeout` are taken by this
        method: pass such keyword arguments to `fn` with functools.partial.)
        """
        if not isinstance(name, str) or not STEP_NAME_RE.match(name):
            raise ValueError("a step name is 1 to 200 printable characters")
        policy = retry or DEFAULT_RETRY
        timeout_s = None if timeout is None else duration_ms(timeout) / 1000
        pos, rec = await self._enter("step")
        adapter = _result_adapter(fn)
        s = self._s
        attempts: list[dict[str, Any]] = []
        if rec is not None:
            self._check(rec, StepKind.STEP, name)
            if rec.resolved or rec.retry_at is None:
                if s.metrics is not None:
                    s.metrics.inc("orchestrator_steps_total", workflow=s.name, outcome="replayed")
                return _outcome(rec, adapter)
            attempts = list(rec.attempts)
            await self._wait_retry(pos, rec.retry_at, len(attempts))
        while True:
            if s.past_deadline():
                self._unwind(ExecutionTimedOut())
            try:
                s.check_lease()
            except LeaseLost as e:
                self._unwind(e)
            n = len(attempts) + 1
            started = s.clock.now_ms()
            failure: Exception | None = None
            text = None
            with (
                log_context(step=name, position=pos, step_attempt=n),
                _span(s, name, pos, n) as span,
            ):
                try:
                    value = await self._attempt(name, fn, args, kwargs, timeout_s)
                    text = _encode_result(value, adapter)
                except Exception as exc:
                    failure = exc
                    if span is not None:
                        span.record_exception(exc)
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
                    pos,
                    name,
                    StepKind.STEP,
                    s.epoch,
                    finished,
                    result=text,
                    started_at=first_start,
                    resolved=True,
                    attempts=attempts,
                )
                return _outcome(await self._record(done), adapter)
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
                    pos,
                    name,
                    StepKind.STEP,
                    s.epoch,
                    finished,
                    error=info,
                    started_at=first_start,
                    resolved=True,
                    attempts=attempts if len(attempts) > 1 else [],
                )
                return _outcome(await self._record(failed), adapter)
            retry_at = finished + policy.delay_ms(n)
            pending = StepRecord(
                pos,
                name,
                StepKind.STEP,
                s.epoch,
                finished,
                started_at=first_start,
                attempts=attempts,
                retry_at=retry_at,
            )
            winner = await self._record(pending)
            if winner.resolved:
                return _outcome(winner, adapter)
            attempts = list(winner.attempts)
            await self._wait_retry(pos, winner.retry_at or retry_at, len(attempts))

    async def _attempt(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout_s: float | None,
    ) -> Any:
        if inspect.iscoroutinefunction(fn):
            token = _in_step.set(name)
            try:
                work: asyncio.Future[Any] = asyncio.ensure_future(fn(*args, **kwargs))
            finally:
                _in_step.reset(token)
        else:
            call = functools.partial(_call_in_step, name, fn, *args, **kwargs)
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(self._s.executor, contextvars.copy_context().run, call)
        if timeout_s is None:
            return await work
        done, _ = await asyncio.wait({work}, timeout=timeout_s)
        if not done:
            # An async function is cancelled; a thread cannot be stopped: it runs
            # on and its result is dropped.
            work.cancel()
            raise StepTimeoutError(f"step {name!r} attempt ran over its timeout of {timeout_s:g}s")
        return work.result()

    async def _wait_retry(self, pos: int, retry_at: int, attempts: int) -> None:
        remaining = retry_at - self._s.clock.now_ms()
        if remaining <= 0:
            return
        if remaining <= IN_WORKER_RETRY_MAX_MS:
            await asyncio.sleep(remaining / 1000)  # the heartbeat keeps the lease meanwhile
            return
        await self._park_sleep(pos, retry_at, seq=attempts)

    # --- timers ---------------------------------------------------------------------------
    async def sleep(self, marker: str, duration: timedelta | float) -> None:
        """Durable sleep. The wake time is fixed when `marker` is first reached."""
        _check_marker(marker)
        ms = duration_ms(duration)
        pos, rec = await self._enter("sleep")
        await self._sleep_at(pos, rec, marker, lambda now: now + ms)

    async def sleep_until(self, marker: str, when: datetime) -> None:
        _check_marker(marker)
        if when.tzinfo is None:
            raise ValueError("sleep_until needs a timezone-aware datetime")
        wake = int(when.timestamp() * 1000)
        pos, rec = await self._enter("sleep_until")
        await self._sleep_at(pos, rec, marker, lambda now: wake)

    async def _sleep_at(
        self, pos: int, rec: StepRecord | None, marker: str, wake_at: Callable[[int], int]
    ) -> None:
        if rec is not None:
            self._check(rec, StepKind.SLEEP, marker)
        else:
            now = self._s.clock.now_ms()
            rec = await self._record(
                StepRecord(
                    pos,
                    marker,
                    StepKind.SLEEP,
                    self._s.epoch,
                    now,
                    started_at=now,
                    wake_at=wake_at(now),
                    resolved=True,
                )
            )
        assert rec.wake_at is not None
        if self._s.clock.now_ms() >= rec.wake_at:
            return
        await self._park_sleep(pos, rec.wake_at)

    def _refuse_park_after_cancel(self) -> None:
        if self._s.cancel_delivered:
            raise WorkflowContextError(
                "the run was cancelled: cleanup can run steps, but cannot sleep or wait for signals"
            )

    async def _park_sleep(self, pos: int, wake_at: int, *, seq: int = 0) -> typing.NoReturn:
        self._refuse_park_after_cancel()
        s = self._s
        s.closing = True
        now = s.clock.now_ms()
        wake = wake_at if s.deadline_at is None else min(wake_at, s.deadline_at)
        timer = _timer_name(s.workflow_id, pos, seq, now, wake)
        refused = await self._io(
            s.store.park_sleep(s.workflow_id, epoch=s.epoch, now=now, wake_at=wake, timer=timer)
        )
        if refused is not None:
            await self._park_refused(refused.old)
        await self._arrange(pos, seq, now, wake)
        self._unwind(Suspend())

    async def _park_refused(self, old: Any) -> None:
        """A park lost its condition: a cancel arrived (deliver it now), or the
        lease is gone."""
        s = self._s
        s.closing = False
        if (
            old is not None
            and old.epoch == s.epoch
            and old.status == "running"
            and old.cancel_requested
        ):
            s.cancel_requested = old.cancel_requested
            pos = s.position
            s.position += 1
            marker = StepRecord(
                pos,
                "cancel",
                StepKind.CANCEL,
                s.epoch,
                s.clock.now_ms(),
                result=old.cancel_requested,
                resolved=True,
            )
            await self._record(marker)
            s.cancel_delivered = True
            raise WorkflowCancelledError(old.cancel_requested)
        self._unwind(LeaseLost())

    async def _arrange(self, pos: int, seq: int, now: int, wake_at: int) -> None:
        try:
            kind = await self._s.store.arrange_timer(
                self._s.workflow_id, pos, seq, now=now, wake_at=wake_at
            )
            self._s.timers.append(kind)
        except Exception:
            # The park is recorded with due_at: the sweeper wakes the run.
            log.exception(
                "could not arrange the timer of %s; the sweeper will wake it", self._s.workflow_id
            )

    # --- signals --------------------------------------------------------------------------
    async def wait_for_signal(
        self, marker: str, name: str, *, timeout: timedelta | float | None = None
    ) -> Any:
        """Wait for the next signal `name` (buffered signals count), in arrival order.

        Returns its payload, or None if `timeout` passed first. The deadline is
        fixed when `marker` is first reached.
        """
        _check_marker(marker)
        if not isinstance(name, str) or not SIGNAL_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a valid signal name")
        timeout_ms = None if timeout is None else duration_ms(timeout)
        pos, rec = await self._enter("wait_for_signal")
        s = self._s
        written = rec is not None
        if rec is not None:
            self._check(rec, StepKind.WAIT, marker)
            if rec.resolved:
                return _wait_outcome(rec)
        else:
            now = s.clock.now_ms()
            rec = StepRecord(
                pos,
                marker,
                StepKind.WAIT,
                s.epoch,
                now,
                started_at=now,
                signal=name,
                wake_at=None if timeout_ms is None else now + timeout_ms,
            )
        seen = s.signal_seq
        while True:
            deadline = rec.wake_at
            inbox = await self._io(s.store.inbox(s.workflow_id, name))
            # A signal stamped after the deadline stays for the next wait.
            eligible = [sig for sig in inbox if deadline is None or sig.sent_at <= deadline]
            if eligible:
                try:
                    s.check_lease()
                except LeaseLost as e:
                    self._unwind(e)
                sig = eligible[0]
                consumed = s.store.consume(
                    s.workflow_id, wait=rec, signal=sig, now=s.clock.now_ms()
                )
                if await self._io(consumed):
                    s.history[pos] = rec
                    return json.loads(sig.payload)
                current = await self._io(_maybe_step(s, pos))
                if current is not None and current.resolved:
                    s.history[pos] = current
                    return _wait_outcome(current)
                continue  # the signal went elsewhere meanwhile; look again
            if not written:
                # Fix the deadline durably before waiting on it.
                rec = await self._record(rec)
                written = True
                if rec.resolved:
                    return _wait_outcome(rec)
                if rec.wake_at != deadline:
                    continue  # another writer fixed a different deadline: use theirs
            if deadline is not None and s.clock.now_ms() >= deadline:
                if not await self._io(
                    s.store.resolve_timeout(s.workflow_id, position=pos, now=s.clock.now_ms())
                ):
                    rec = await self._io(s.store.get_step(s.workflow_id, pos))
                    s.history[pos] = rec
                    return _wait_outcome(rec)
                return None
            self._refuse_park_after_cancel()
            s.closing = True
            now = s.clock.now_ms()
            wake = (
                deadline if s.deadline_at is None else min(deadline or s.deadline_at, s.deadline_at)
            )
            timer = None if wake is None else _timer_name(s.workflow_id, pos, 0, now, wake)
            refused = await self._io(
                s.store.park_wait(
                    s.workflow_id,
                    epoch=s.epoch,
                    now=now,
                    signal=name,
                    seen_seq=seen,
                    deadline=wake,
                    timer=timer,
                )
            )
            if refused is None:
                if wake is not None:
                    await self._arrange(pos, 0, now, wake)
                self._unwind(Suspend())
            old = refused.old
            if (
                old is not None
                and old.epoch == s.epoch
                and old.status == "running"
                and old.signal_seq != seen
            ):
                s.closing = False
                seen = old.signal_seq  # a signal came in since we looked: look again
                continue
            await self._park_refused(old)


def _span(s: RunState, name: str, pos: int, attempt: int) -> Any:
    if s.tracing is None:
        return contextlib.nullcontext()
    return s.tracing.span(
        "workflow.step",
        workflow_id=s.workflow_id,
        step_name=name,
        step_position=pos,
        step_attempt=attempt,
    )


async def _maybe_step(s: RunState, pos: int) -> StepRecord | None:
    try:
        return await s.store.get_step(s.workflow_id, pos)
    except KeyError:
        return None


def current_context() -> WorkflowContext:
    ctx = _current.get()
    if ctx is None:
        raise WorkflowContextError("no workflow is running in this task")
    return ctx
