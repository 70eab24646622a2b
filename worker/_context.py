"""The workflow context: `ctx.step`, `ctx.sleep`, `ctx.sleep_until`,
`ctx.wait_for_signal`.

Every durable call takes the next position in the run. On replay, the record
at that position is checked against the call (kind and name) and its outcome
is returned; a mismatch is a NonDeterminismError that fails the run. A miss
runs the call and records it first-write-wins.

Parking (sleep, wait) and losing the lease unwind the workflow coroutine with
`BaseException`s that `except Exception` cannot swallow; if user code catches
them anyway, the run state remembers and every later durable call raises again.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import traceback
import typing
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from orchestrator.clock import Clock
from orchestrator.errors import (
    NonDeterminismError,
    PayloadTooLargeError,
    StepFailedError,
    WorkflowContextError,
)
from orchestrator.model import (
    MAX_ERROR_BYTES,
    MAX_STEP_RESULT_BYTES,
    STEP_NAME_RE,
    ErrorInfo,
    StepKind,
    StepRecord,
)

from ._registry import adapter_for, to_jsonable
from ._store import AsyncStore

log = logging.getLogger("worker")

_in_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("in_step", default=None)
_current: contextvars.ContextVar[WorkflowContext | None] = contextvars.ContextVar(
    "ctx", default=None
)


class Suspend(BaseException):
    """The run parked (sleep or wait); the worker frees the slot. Internal."""


class LeaseLost(BaseException):
    """Another worker owns the run now (or the run was moved). Internal."""


@dataclass
class RunState:
    """What one claim of a run knows. `lease_until` is the owner's own view of its
    lease: no step is recorded after it (a write after another claim could win
    a position; first-write-wins keeps that harmless, this keeps it rare)."""

    workflow_id: str
    name: str
    epoch: int
    signal_seq: int
    lease_until: int
    history: dict[int, StepRecord]
    store: AsyncStore
    clock: Clock
    lease_ms: int
    position: int = 0
    lost: bool = False
    closing: bool = False  # a park or terminal write is under way: heartbeats stop
    unwinding: BaseException | None = None  # the Suspend/LeaseLost/NonDeterminism in progress
    executed_steps: int = 0
    timers: list[str] = field(default_factory=list)
    executor: Executor | None = None  # runs sync step functions

    def check_lease(self) -> None:
        margin = self.lease_ms // 6
        if self.lost or self.clock.now_ms() >= self.lease_until - margin:
            self.lost = True
            raise LeaseLost()


def _duration_ms(value: timedelta | float | int) -> int:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return int(seconds * 1000)


def _error_info(exc: BaseException) -> ErrorInfo:
    tb = "".join(traceback.format_exception(exc))
    if len(tb) > MAX_ERROR_BYTES:
        tb = "…" + tb[-(MAX_ERROR_BYTES - 1000) :]
    message = str(exc)[:4000]
    return ErrorInfo(type=type(exc).__qualname__, message=message, traceback=tb)


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

    def now(self) -> datetime:
        """The clock's time. Not replay-stable: record it in a step if it matters."""
        return datetime.fromtimestamp(self._s.clock.now_ms() / 1000, tz=UTC)

    # --- plumbing -----------------------------------------------------------------------
    def _enter(self, call: str) -> int:
        inside = _in_step.get()
        if inside is not None:
            raise WorkflowContextError(
                f"ctx.{call} was called inside step {inside!r}: a step function is one side "
                "effect and cannot make durable calls; call it from the workflow function"
            )
        if self._s.unwinding is not None:
            raise self._s.unwinding
        pos = self._s.position
        self._s.position += 1
        return pos

    def _check(self, rec: StepRecord, kind: StepKind, name: str) -> None:
        if rec.kind != kind or rec.name != name:
            err = NonDeterminismError(
                f"replay of run {self._s.workflow_id} reached {kind.value} {name!r} at position "
                f"{rec.position}, but the history records {rec.kind.value} {rec.name!r} there; "
                "the workflow code changed under a running workflow or is not deterministic"
            )
            self._s.unwinding = err
            raise err

    def _unwind(self, exc: BaseException) -> typing.NoReturn:
        self._s.unwinding = exc
        raise exc

    async def _record(self, rec: StepRecord) -> StepRecord:
        try:
            self._s.check_lease()
        except LeaseLost as e:
            self._unwind(e)
        winner = await self._s.store.put_step(self._s.workflow_id, rec)
        self._s.history[rec.position] = winner
        return winner

    # --- steps ----------------------------------------------------------------------------
    async def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` once per run and return its recorded result.

        Sync functions run in a thread, async ones in the worker's loop. The
        result must be JSON-serializable (pydantic models and dataclasses are
        dumped); with a return annotation it is validated back into that type,
        the same on first execution and on replay. An exception in `fn` is
        recorded and raised as StepFailedError, on replay too.
        """
        if not isinstance(name, str) or not STEP_NAME_RE.match(name):
            raise ValueError("a step name is 1 to 200 printable characters")
        pos = self._enter("step")
        adapter = _result_adapter(fn)
        rec = self._s.history.get(pos)
        if rec is not None:
            self._check(rec, StepKind.STEP, name)
            return _outcome(rec, adapter)
        try:
            self._s.check_lease()
        except LeaseLost as e:
            self._unwind(e)
        started = self._s.clock.now_ms()
        try:
            if inspect.iscoroutinefunction(fn):
                token = _in_step.set(name)
                try:
                    value = await fn(*args, **kwargs)
                finally:
                    _in_step.reset(token)
            else:
                call = functools.partial(_call_in_step, name, fn, *args, **kwargs)
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(
                    self._s.executor, contextvars.copy_context().run, call
                )
            text = _encode_result(value, adapter)
            rec = StepRecord(
                pos,
                name,
                StepKind.STEP,
                self._s.epoch,
                self._s.clock.now_ms(),
                result=text,
                started_at=started,
            )
        except Exception as exc:
            rec = StepRecord(
                pos,
                name,
                StepKind.STEP,
                self._s.epoch,
                self._s.clock.now_ms(),
                error=_error_info(exc),
                started_at=started,
            )
        self._s.executed_steps += 1
        winner = await self._record(rec)
        return _outcome(winner, adapter)

    # --- timers ---------------------------------------------------------------------------
    async def sleep(self, marker: str, duration: timedelta | float) -> None:
        """Durable sleep. The wake time is fixed when `marker` is first reached."""
        ms = _duration_ms(duration)
        pos = self._enter("sleep")
        await self._sleep_at(pos, marker, lambda now: now + ms)

    async def sleep_until(self, marker: str, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("sleep_until needs a timezone-aware datetime")
        pos = self._enter("sleep_until")
        wake = int(when.timestamp() * 1000)
        await self._sleep_at(pos, marker, lambda now: wake)

    async def _sleep_at(self, pos: int, marker: str, wake_at: Callable[[int], int]) -> None:
        rec = self._s.history.get(pos)
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
                )
            )
        assert rec.wake_at is not None
        if self._s.clock.now_ms() >= rec.wake_at:
            return
        await self._park_sleep(pos, rec.wake_at)

    async def _park_sleep(self, pos: int, wake_at: int) -> typing.NoReturn:
        s = self._s
        s.closing = True
        now = s.clock.now_ms()
        if not await s.store.park_sleep(s.workflow_id, epoch=s.epoch, now=now, wake_at=wake_at):
            self._unwind(LeaseLost())
        await self._arrange(pos, now, wake_at)
        self._unwind(Suspend())

    async def _arrange(self, pos: int, now: int, wake_at: int) -> None:
        try:
            self._s.timers.append(
                await self._s.store.arrange_timer(
                    self._s.workflow_id, pos, now=now, wake_at=wake_at
                )
            )
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
        from orchestrator.model import SIGNAL_NAME_RE

        if not SIGNAL_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a valid signal name")
        timeout_ms = None if timeout is None else _duration_ms(timeout)
        pos = self._enter("wait_for_signal")
        s = self._s
        rec = s.history.get(pos)
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
            inbox = await s.store.inbox(s.workflow_id, name)
            # A signal stamped after the deadline stays for the next wait.
            eligible = [sig for sig in inbox if deadline is None or sig.sent_at <= deadline]
            if eligible:
                try:
                    s.check_lease()
                except LeaseLost as e:
                    self._unwind(e)
                sig = eligible[0]
                if await s.store.consume(s.workflow_id, wait=rec, signal=sig, now=s.clock.now_ms()):
                    s.history[pos] = rec
                    return json.loads(sig.payload)
                current = await _maybe_step(s, pos)
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
                if not await s.store.resolve_timeout(
                    s.workflow_id, position=pos, now=s.clock.now_ms()
                ):
                    rec = await s.store.get_step(s.workflow_id, pos)
                    s.history[pos] = rec
                    return _wait_outcome(rec)
                return None
            s.closing = True
            now = s.clock.now_ms()
            refused = await s.store.park_wait(
                s.workflow_id, epoch=s.epoch, now=now, signal=name, seen_seq=seen, deadline=deadline
            )
            if refused is None:
                if deadline is not None:
                    await self._arrange(pos, now, deadline)
                self._unwind(Suspend())
            old = refused.old
            if old is None or old.epoch != s.epoch or old.status != "running":
                self._unwind(LeaseLost())
            s.closing = False
            seen = old.signal_seq  # a signal came in since we looked: look again


async def _maybe_step(s: RunState, pos: int) -> StepRecord | None:
    try:
        return await s.store.get_step(s.workflow_id, pos)
    except KeyError:
        return None


def _wait_outcome(rec: StepRecord) -> Any:
    if rec.timed_out or rec.result is None:
        return None
    return json.loads(rec.result)


def _result_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    try:
        target = fn.func if isinstance(fn, functools.partial) else fn
        hints = typing.get_type_hints(target)
    except Exception:
        return None
    return adapter_for(hints.get("return", inspect.Parameter.empty))


def _encode_result(value: Any, adapter: TypeAdapter[Any] | None) -> str:
    try:
        if adapter is not None:
            text = adapter.dump_json(value).decode()
        else:
            text = json.dumps(to_jsonable(value), separators=(",", ":"), allow_nan=False)
    except Exception as e:
        raise TypeError(f"step result is not JSON-serializable: {e}") from e
    size = len(text.encode())
    if size > MAX_STEP_RESULT_BYTES:
        raise PayloadTooLargeError(
            f"step result is {size} bytes; the limit is {MAX_STEP_RESULT_BYTES}"
        )
    return text


def _outcome(rec: StepRecord, adapter: TypeAdapter[Any] | None) -> Any:
    if rec.error is not None:
        raise StepFailedError(rec.name, rec.error.type, rec.error.message, rec.error.traceback)
    text = rec.result if rec.result is not None else "null"
    if adapter is not None:
        return adapter.validate_json(text)
    return json.loads(text)


def current_context() -> WorkflowContext:
    ctx = _current.get()
    if ctx is None:
        raise WorkflowContextError("no workflow is running in this task")
    return ctx
