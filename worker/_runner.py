"""Running a claimed run: the workflow function as the run's root task, the
driver that parks the run when every branch waits (worker/_parking.py), the
terminal write and the effects after it (a child's end delivered to its
parent), continue-as-new, and the heartbeat that keeps the lease and brings
cancels and signals in. A mixin of `Worker` (worker/_worker.py), which owns
receiving, claiming and the lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from pydantic import ValidationError

from orchestrator.children import NOTIFY_GRACE_MS
from orchestrator.clock import Clock
from orchestrator.errors import ExecutionTimeoutError, NonDeterminismError, WorkflowCancelledError
from orchestrator.model import MAX_OUTPUT_BYTES, ErrorInfo, Run, Status, generation_scope
from orchestrator.settings import Settings

from ._checkpoints import Checkpoints
from ._children import notify_parent
from ._claim_failures import counts
from ._context import WorkflowContext, _current
from ._heartbeats import Heartbeats
from ._logs import log_context, set_fields
from ._parking import Parker, cancel_tasks, park_run
from ._registry import WorkflowDefinition
from ._scope import Scope, install_task_factory, start_root
from ._state import ContinueAsNew, ExecutionTimedOut, LeaseLost, RunState, Suspend
from ._state import error_info as _error_info
from ._store import AsyncStore, Refused
from .plugins import Hooks, Invocation

log = logging.getLogger("worker")


class _Runs:
    """The run-driving half of Worker. The attributes below are Worker's."""

    settings: Settings
    clock: Clock
    stats: dict[str, int]
    _store: AsyncStore | None
    _defs: dict[str, WorkflowDefinition]
    _executor: Any  # _StepThreads
    _lease_ms: int
    _step_slots: asyncio.Semaphore | None
    _stopping: bool
    hooks: Hooks
    id: str

    def _count(self, stat: str) -> None:
        raise NotImplementedError  # Worker's

    async def _claim_failed(
        self, run: Run, state: RunState, receipt: str, e: BaseException
    ) -> None:
        raise NotImplementedError  # Worker's (worker/_claim_failures.py)

    def _heartbeats(self) -> Heartbeats:
        raise NotImplementedError  # Worker's (worker/_heartbeats.py)

    def _queue_of(self, receipt: str) -> str | None:
        raise NotImplementedError  # Worker's

    def _state_for(self, run: Run) -> RunState:
        store = self._store
        assert store is not None
        state = RunState(
            workflow_id=run.id,
            name=run.name,
            epoch=run.epoch,
            signal_seq=run.signal_seq,
            lease_until=run.lease_until or 0,
            history={},
            store=store,
            clock=self.clock,
            lease_ms=self._lease_ms,
            generation=run.generation,
            run_attempt=run.redrive_count,
            executor=self._executor,
            deadline_at=run.deadline_at,
            cancel_requested=run.cancel_requested,
            parent_id=run.parent_id,
            parent_op=run.parent_op,
            parent_polls=run.parent_polls,
            hooks=self.hooks,
            root=Scope(generation_scope(run.generation)),
        )
        d = self._defs.get(run.name)
        state.checkpoints = Checkpoints(
            state,
            whole_run=d is not None and d.checkpoint == "batched",
            flush_ms=self.settings.checkpoint_flush_ms,
            carry_last=run.last_batch is None,
            input_bytes=len(run.input.encode()),
        )
        return state

    async def _execute(self, run: Run, receipt: str) -> bool:
        """Run it; True when this worker's own write ended the lease (a finish, a
        park, a release), False when the lease was lost or the run left in
        flight (an error: it comes back after the lease)."""
        store = self._store
        assert store is not None
        state = self._state_for(run)
        runner = asyncio.current_task()
        assert runner is not None
        # The plugins' invocation hooks (worker/plugins.py): their log fields join
        # every line of the claim.
        fields = contextlib.ExitStack()
        inv = self._invocation(run, first=run.epoch == 1)
        fields.enter_context(log_context(**self.hooks.call("invocation_start", inv)))
        beats = self._heartbeats()
        beat = beats.start(state, receipt, runner, self._queue_of(receipt))
        try:
            # Epoch 1 is the first claim ever: no owner before it, and only owners
            # write step records, so there is no history to load.
            state.history = (
                {}
                if run.epoch == 1
                else await store.history(
                    run.id,
                    run.generation,
                    last_batch=run.last_batch,
                    attempt=run.redrive_count,
                )
            )
            while True:
                following = await self._run(self._defs[run.name], run, state, receipt)
                if following is None:
                    break
                # continue-as-new: the next generation, at once, still holding the lease
                # (its history is empty: the write that started it is this worker's).
                await beats.stop(beat)
                self.hooks.call("invocation_end", inv, "continued")
                run, state = following, self._state_for(following)
                inv = self._invocation(run, first=True, continued=True)
                fields.enter_context(log_context(**self.hooks.call("invocation_start", inv)))
                beat = beats.start(state, receipt, runner, self._queue_of(receipt))
            return not state.lost
        except asyncio.CancelledError:
            if state.timed_out and not state.lost:
                await self._finish(state, receipt, Status.FAILED, error=_timeout_error(state))
                return not state.lost
            if state.lost:
                self._count("lost")
                log.warning("run %s: lease lost; abandoned", run.id)
                return False
            if self._stopping and not state.closing:
                # The heartbeat first: one landing after the release would extend
                # the lease again, and the next worker would wait for it.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await beats.stop(beat)
                released = False
                with contextlib.suppress(Exception):
                    # Buffered step results first (batched checkpoints), fenced like
                    # any flush: the next worker replays them instead of running
                    # them again. A refused flush marks the run lost; the release
                    # is then refused too.
                    if state.checkpoints is not None:
                        await state.checkpoints.close()
                    if await store.release(run.id, epoch=state.epoch, now=self.clock.now_ms()):
                        released = True
                        await store.set_visibility(receipt, 0)  # another worker takes it now
                        self.stats["released"] += 1
                        state.ended = "released"
                        log.info("run %s: released at shutdown", run.id)
                return released
            raise
        except BaseException as e:
            # An error that ended the claim before the run could go on: counted on
            # the run, which fails once the same one ended too many claims in a row
            # (worker/_claim_failures.py). A transient one, or a lost claim, is left
            # as before: the run resumes after its lease.
            if state.lost or not counts(e):
                raise
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beats.stop(beat)
            await self._claim_failed(run, state, receipt, e)
            return not state.lost
        finally:
            # Shielded: a cancel of this task while it waits must not leave the
            # heartbeat running for a claim nobody holds.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(beats.stop(beat))
            status = state.ended or ("lost" if state.lost else "error")
            self.hooks.call("invocation_end", inv, status)
            fields.close()

    def _invocation(self, run: Run, *, first: bool, continued: bool = False) -> Invocation:
        return Invocation(
            workflow_id=run.id,
            workflow=run.name,
            epoch=run.epoch,
            generation=run.generation,
            first=first,
            worker_id=self.id,
            continued=continued,
            traceparent=run.traceparent,
        )

    async def _run(
        self, d: WorkflowDefinition, run: Run, state: RunState, receipt: str
    ) -> Run | None:
        """Run the workflow function to its end or its park; the run's next
        generation if it continued as new."""
        store = self._store
        assert store is not None
        if state.past_deadline():
            await self._finish(state, receipt, Status.FAILED, error=_timeout_error(state))
            return None
        # An input a worker wrote (a child's, a continue-as-new's) may be offloaded.
        # Like a history value, one that cannot be read leaves the claim (the run
        # comes back after its lease).
        input_text = await store.values.get(run.input)
        try:
            value = d.parse_input(input_text or "null")
        except (ValidationError, ValueError) as e:
            await self._finish(
                state, receipt, Status.FAILED, error=ErrorInfo("InputValidationError", str(e))
            )
            return None
        ctx = WorkflowContext(state)
        state.parker = Parker(state)
        state.step_slots = self._step_slots

        async def root() -> Any:
            token = _current.set(ctx)
            try:
                return await (d.fn(ctx, value) if d.takes_input else d.fn(ctx))
            finally:
                _current.reset(token)

        install_task_factory(asyncio.get_running_loop())
        task = start_root(state, root())
        state.tasks.add(task)
        try:
            await self._drive(state, task)
        except asyncio.CancelledError:
            cancel_tasks(state.tasks)
            await _settle(state)
            raise
        result: Any = None
        failure: BaseException | None = None
        if not task.cancelled():
            exc = task.exception()
            if exc is None:
                result = task.result()
            elif isinstance(exc, Exception):
                failure = exc
            elif not isinstance(
                exc,
                (
                    Suspend,
                    ContinueAsNew,
                    LeaseLost,
                    ExecutionTimedOut,
                    WorkflowCancelledError,
                    asyncio.CancelledError,
                ),
            ):
                raise exc
        unwinding = state.unwinding  # what the context raised, even if user code swallowed it
        if isinstance(unwinding, Suspend):
            self._count("parked")
            state.ended = "parked"
            set_fields(status="parked")
            log.info("run %s parked", run.id)
            await store.delete_message(receipt)
        elif isinstance(unwinding, LeaseLost) and state.failure is not None:
            raise state.failure  # a park refused for good: counted (worker/_claim_failures.py)
        elif isinstance(unwinding, LeaseLost):
            state.lose()
            self._count("lost")
            log.warning("run %s: lease lost; abandoned", run.id)
        elif isinstance(unwinding, ExecutionTimedOut):
            await self._finish(state, receipt, Status.FAILED, error=_timeout_error(state))
        elif isinstance(unwinding, NonDeterminismError):
            await self._finish(state, receipt, Status.FAILED, error=_error_info(unwinding))
        elif isinstance(unwinding, ContinueAsNew) and not state.cancel_delivered:
            return await self._continue(run, state, receipt, unwinding.input_text)
        elif state.cancel_delivered:
            # Delivered: the run ends as cancelled, whatever the function did after.
            reason = state.cancel_requested or "cancelled"
            await self._finish(
                state, receipt, Status.CANCELLED, error=ErrorInfo("Cancelled", reason)
            )
        elif failure is not None:
            await self._finish(state, receipt, Status.FAILED, error=_error_info(failure))
        else:
            try:
                text = d.dump_output(result)
                limit = min(MAX_OUTPUT_BYTES, store.values.max_bytes)
                if len(text.encode()) > limit:
                    raise ValueError(
                        f"workflow output is {len(text.encode())} bytes; the limit is {limit}"
                    )
            except Exception as e:
                await self._finish(state, receipt, Status.FAILED, error=_error_info(e))
                return None
            await self._finish(state, receipt, Status.COMPLETED, output=text)
        return None

    async def _continue(
        self, run: Run, state: RunState, receipt: str, input_text: str
    ) -> Run | None:
        store = self._store
        assert store is not None
        if not await state.checkpoints.close():  # everything recorded before the write
            if not state.lost:
                state.lose()
            self._count("lost")
            return None
        state.close()
        now = self.clock.now_ms()
        result = await store.continue_run(
            run.id,
            epoch=state.epoch,
            now=now,
            lease_until=now + self._lease_ms,
            input_text=input_text,
            generation=run.generation + 1,
        )
        if isinstance(result, Refused):
            old = result.old
            if old is not None and old.epoch == state.epoch and old.cancel_requested:
                # a cancel came first: the run ends as cancelled instead
                error = ErrorInfo("Cancelled", old.cancel_requested)
                await self._finish(state, receipt, Status.CANCELLED, error=error)
            else:
                state.lose()
                self._count("lost")
                log.warning("run %s: could not continue as new (lease lost); abandoned", run.id)
            return None
        self.stats["continued"] = self.stats.get("continued", 0) + 1
        state.ended = "continued"
        log.info("run %s continued as new: generation %d", run.id, result.generation)
        try:  # effect after the write: the ended generation expires by TTL
            await store.expire_generation(run.id, run.generation, now, list(state.history.values()))
        except Exception:
            log.exception("run %s: could not set the TTL of generation %d", run.id, run.generation)
        return result

    async def _drive(self, state: RunState, root: asyncio.Task[Any]) -> None:
        """Wait for the workflow function to end, parking the run whenever every
        branch waits (worker/_parking.py); then end the run's other tasks."""
        parker = state.parker
        while not root.done():
            await asyncio.wait({root, parker.decided}, return_when=asyncio.FIRST_COMPLETED)
            if root.done():
                break
            if await park_run(state):
                break
            parker.reset()
        if not root.done():
            await asyncio.wait({root}, timeout=1)
        others = {t for t in state.tasks if not t.done()}
        if others and state.cancel_requested is not None and state.unwinding is None:
            # A cancel reaches every branch: the others get it at their next
            # durable call (or where they wait) and may clean up, within a lease.
            await asyncio.wait(others, timeout=self.settings.lease_seconds)
        cancel_tasks(state.tasks)  # tasks the workflow left running, or blocked elsewhere
        await _settle(state)

    async def _finish(
        self,
        state: RunState,
        receipt: str,
        status: Status,
        *,
        output: str | None = None,
        error: ErrorInfo | None = None,
    ) -> None:
        store = self._store
        assert store is not None
        if output is not None:
            # An offloaded output's object first (`finish` keeps a pointer as it
            # is): the run and the parent's signal then carry the pointer, never
            # the value, which could exceed an item.
            output = await store.values.put(output, what="workflow output")
        # Everything recorded by the terminal write (batched checkpoints): the
        # results not yet written go with it, or are flushed just before.
        value_bytes = len(output.encode()) if output is not None else 0
        value_bytes += len(json.dumps(error.as_dict())) if error is not None else 0
        ok, last = True, []
        if state.checkpoints is not None:
            ok, last = await state.checkpoints.take_last(value_bytes)
        ok = ok and not state.lost  # a claim lost meanwhile writes nothing more
        state.close()
        now = self.clock.now_ms()
        ok = ok and await store.finish(
            state.workflow_id,
            epoch=state.epoch,
            now=now,
            status=status,
            output=output,
            error=error,
            # A child stays in the sweeper's index until its parent is told.
            notify_due=now + NOTIFY_GRACE_MS if _notifies(state) else None,
            last_batch=last,
            generation=state.generation,
        )
        if not ok:
            state.lose()
            self._count("lost")
            log.warning(
                "run %s: could not record %s (lease lost); abandoned",
                state.workflow_id,
                status.value,
            )
            return
        state.ended = status.value
        self._count(status.value)
        set_fields(status=status.value)
        log.log(
            logging.INFO if status == Status.COMPLETED else logging.WARNING,
            "run %s %s%s",
            state.workflow_id,
            status.value,
            f": {error.type}: {error.message}" if error else "",
        )
        await store.delete_message(receipt)
        if _notifies(state) and state.parent_id is not None and state.parent_op is not None:
            child = Run(
                id=state.workflow_id,
                name=state.name,
                status=status,
                input="null",
                created_at=now,
                updated_at=now,
                output=output,
                error=error,
                parent_id=state.parent_id,
                parent_op=state.parent_op,
            )
            try:
                await notify_parent(store, child, self.clock)
            except Exception:
                log.exception("could not tell the parent of %s; the sweeper will", child.id)


def _notifies(state: RunState) -> bool:
    """A child run tells its parent of its end (a distributed map's parent polls)."""
    return state.parent_id is not None and not state.parent_polls


async def _settle(state: RunState) -> None:
    """Let the run's tasks finish unwinding (bounded: a task that ignores its
    cancellation is left behind; it can write nothing, the run is fenced)."""
    pending = {t for t in state.tasks if not t.done()}
    if pending:
        await asyncio.wait(pending, timeout=5)
    for t in state.tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: no "exception was never retrieved" noise


def _timeout_error(state: RunState) -> ErrorInfo:
    return ErrorInfo(
        ExecutionTimeoutError.__name__,
        f"the run's execution timeout passed (deadline {state.deadline_at} ms since the epoch)",
    )
