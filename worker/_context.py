"""The workflow context: the durable calls a workflow makes.

`ctx.step`, `ctx.sleep`, `ctx.sleep_until`, `ctx.wait_for_signal`,
`ctx.create_callback`, `ctx.wait_for_callback`, `ctx.wait_for_condition`,
`ctx.run_in_child_context`, `ctx.parallel`, `ctx.map`, `ctx.invoke`,
`ctx.patched` and `ctx.deprecate_patch`, each implemented in
its own module under `worker/operations/` over the core in `worker/_core.py`.

Every operation takes the next id of the scope it runs in (`worker/_scope.py`):
on replay the record at that id is checked against the call (kind and name)
and its outcome returned; a mismatch is a NonDeterminismError that fails the
run. A miss runs the call and records it first-write-wins.

Waiting (sleep, signal wait, a long retry delay) blocks the branch; the run
parks when every branch waits (`worker/_parking.py`). Parking and losing the
lease unwind the workflow with `BaseException`s that `except Exception` cannot
swallow; if user code catches them anyway, the run state remembers and every
later durable call raises again.

A cancel is delivered once to each task of the run, at its first durable call
that is not a replay (or where it waits), and the delivery is recorded at that
id (kind "cancel"), so a replay raises it at the same point and cleanup steps
keep their ids.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.errors import WorkflowContextError
from orchestrator.model import CHECKPOINT_MODES, StepKind

from . import _core
from ._logs import ReplayAwareLogger
from ._names import default_name
from ._retry import RetryPolicy
from ._scope import scope_var
from ._state import RunState
from .operations import batch as _batch
from .operations import callback as _callback
from .operations import child as _child
from .operations import condition as _condition
from .operations import continue_as_new as _continue
from .operations import distributed as _distributed
from .operations import invoke as _invoke
from .operations import patch as _patch
from .operations import s3_map as _s3_map
from .operations import signal as _signal
from .operations import sleep as _sleep
from .operations import step as _step
from .operations.batch import BatchResult, BatchSerializer, CompletionConfig
from .operations.callback import Callback
from .operations.condition import WaitStrategy
from .operations.s3_map import S3Items

log = logging.getLogger("worker")

_current: contextvars.ContextVar[WorkflowContext | None] = contextvars.ContextVar(
    "ctx", default=None
)


class WorkflowContext:
    """Passed to every workflow function as its first argument (and to the
    functions of child contexts, branches and map items)."""

    def __init__(self, state: RunState) -> None:
        self._s = state

    @property
    def workflow_id(self) -> str:
        """The run's id."""
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
        """True while the current scope re-executes calls it already recorded."""
        scope = scope_var.get()
        return scope is not None and _core.replaying(self._s, scope)

    def now(self) -> datetime:
        """The clock's time. Not replay-stable: record it in a step if it matters."""
        return datetime.fromtimestamp(self._s.clock.now_ms() / 1000, tz=UTC)

    # --- operations -----------------------------------------------------------------------
    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
        semantics: str = "at_least_once_per_retry",
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` and return its recorded result.

        Sync functions run in a thread, async ones in the worker's loop. The
        result must be JSON-serializable (pydantic models and dataclasses are
        dumped); with a return annotation (`Annotated` serializers included) it
        is validated back into that type, the same on first execution and on
        replay. A failed attempt is retried per `retry` (default: DEFAULT_RETRY);
        `timeout` bounds one attempt. When the attempts run out the last error
        is recorded and raised as StepFailedError, on replay too.

        `semantics=AT_MOST_ONCE_PER_RETRY` records each attempt's start before
        the function runs (one more write per attempt): an attempt a crash
        interrupted counts as failed (StepInterruptedError) and is never run
        again; the retry policy decides what follows. The default,
        AT_LEAST_ONCE_PER_RETRY, runs an interrupted attempt again. (`retry`,
        `timeout` and `semantics` are taken by this method: pass such keyword
        arguments to `fn` with functools.partial.)
        """
        return await _step.step(
            name, fn, args, kwargs, retry=retry, timeout=timeout, semantics=semantics
        )

    async def sleep(self, marker: str, duration: timedelta | float) -> None:
        """Durable sleep. The wake time is fixed when `marker` is first reached."""
        await _sleep.sleep(marker, duration)

    async def sleep_until(self, marker: str, when: datetime) -> None:
        """Durable sleep until a timezone-aware time."""
        await _sleep.sleep_until(marker, when)

    async def wait_for_signal(
        self, marker: str, name: str, *, timeout: timedelta | float | None = None
    ) -> Any:
        """Wait for the next signal `name` (buffered signals count), in arrival order.

        Returns its payload, or None if `timeout` passed first. The deadline is
        fixed when `marker` is first reached.
        """
        return await _signal.wait_for_signal(marker, name, timeout=timeout)

    async def create_callback(
        self,
        name: str,
        *,
        timeout: timedelta | float | None = None,
        heartbeat_timeout: timedelta | float | None = None,
        result_type: Any = None,
    ) -> Callback:
        """Create a callback an outside system completes: give it `cb.id` (an
        unguessable token, the same on every replay), then `await cb.result()`.
        `timeout` counts from the creation; with `heartbeat_timeout` the outside
        system must also heartbeat (`POST /callbacks/{id}/heartbeat`) at least
        that often. Raises CallbackTimeoutError / CallbackFailedError from `result()`.
        With `result_type` (a pydantic model, a type, any type pydantic validates),
        `result()` returns the posted JSON validated into it."""
        return await _callback.create_callback(
            name, timeout=timeout, heartbeat_timeout=heartbeat_timeout, result_type=result_type
        )

    async def wait_for_callback(
        self,
        name: str | Callable[..., Any],
        submitter: Callable[..., Any] | None = None,
        *,
        timeout: timedelta | float | None = None,
        heartbeat_timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
        result_type: Any = None,
    ) -> Any:
        """Create a callback, run `submitter(callback_id)` as the step `<name>-submit`
        (it hands the id to the outside system), and return the callback's result
        (validated into `result_type` if given). Without a name,
        `ctx.wait_for_callback(submitter)`, the default is the submitter's
        qualified name ("wait_for_callback" for a lambda)."""
        if not isinstance(name, str):
            if submitter is not None:
                raise TypeError("wait_for_callback takes (name, submitter) or (submitter)")
            submitter, label = name, default_name(name, "wait_for_callback")
        elif submitter is None:
            raise TypeError("wait_for_callback needs its submitter function")
        else:
            label = name
        return await _callback.wait_for_callback(
            self,
            label,
            submitter,
            timeout=timeout,
            heartbeat_timeout=heartbeat_timeout,
            retry=retry,
            result_type=result_type,
        )

    async def wait_for_condition(
        self,
        name: str,
        check: Callable[[Any], Any],
        *,
        initial_state: Any = None,
        wait_strategy: WaitStrategy,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """Poll: run `check(state) -> state` as the step `<name>-<attempt>`, ask
        `wait_strategy(state, attempt)` for the delay before the next check
        (None: done), and sleep durably in between. Returns the final state."""
        return await _condition.wait_for_condition(
            self,
            name,
            check,
            initial_state=initial_state,
            wait_strategy=wait_strategy,
            retry=retry,
        )

    async def run_in_child_context(
        self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        """Run `fn(ctx, *args, **kwargs)` as one named unit whose result is recorded:
        once it has completed, a replay returns the record without running `fn`.
        An error inside it is raised as ChildContextError naming the context."""
        return await _child.run_in_child_context(self, name, fn, args, kwargs)

    async def invoke(
        self,
        name: str,
        workflow: str,
        input: Any = None,
        *,
        execution_timeout: timedelta | float | None = None,
        result_type: Any = None,
        task_queue: str | None = None,
    ) -> Any:
        """Start the workflow `workflow` as a child run with `input`, wait for its
        end and return its output (validated into `result_type` if given). The
        child's id is derived from this run's id and this operation, so it is
        started once whatever happens. A child that fails, is cancelled or times
        out raises ChildWorkflowError. Cancelling this run cancels the child.
        `task_queue` routes the child to that queue's workers (default: "default")."""
        return await _invoke.invoke(
            name,
            workflow,
            input,
            execution_timeout=execution_timeout,
            result_type=result_type,
            task_queue=task_queue,
        )

    async def parallel(
        self,
        name: str | Sequence[Any],
        branches: Sequence[Any] | None = None,
        *,
        max_concurrency: int | None = None,
        completion: CompletionConfig | None = None,
        nesting: str = "flat",
        serializer: BatchSerializer | None = None,
    ) -> BatchResult[Any]:
        """Run `branch(ctx)` for each branch, at most `max_concurrency` at once, until
        the completion rule decides (default: every branch, or the first failure).
        Returns a BatchResult; it raises only through `throw_if_error()`.

        The name may be left out, `ctx.parallel([a, b])` (the default name is
        "parallel"), and a branch may be named, `("charge", fn)`: `BatchItem.name`.
        `nesting="nested"` records each branch's outcome at its own id (one more
        write per branch; a replay that runs branches again returns recorded ones
        instead). `serializer` turns the whole BatchResult into the recorded
        text and back (`dumps`, `loads`)."""
        if not isinstance(name, str):
            if branches is not None:
                raise TypeError("parallel takes (name, branches) or (branches)")
            name, branches = "parallel", name
        elif branches is None:
            raise TypeError("parallel needs its branches: ctx.parallel(name, [branch, ...])")
        units, names = _batch.parallel_units(branches)
        return await _batch.run_batch(
            self,
            StepKind.PARALLEL,
            name,
            units,
            max_concurrency=max_concurrency,
            completion=completion,
            names=names,
            nesting=nesting,
            serializer=serializer,
        )

    async def map(
        self,
        name: str | Sequence[Any] | S3Items,
        items: Any = None,
        fn: Callable[..., Awaitable[Any]] | None = None,
        *,
        workflow: str | None = None,
        batch_size: int | None = None,
        task_queue: str | None = None,
        max_concurrency: int | None = None,
        completion: CompletionConfig | None = None,
        execution_timeout: timedelta | float | None = None,
        checkpoint: str = "each",
        nesting: str = "flat",
        item_namer: Callable[[Any, int], str] | None = None,
        serializer: BatchSerializer | None = None,
    ) -> BatchResult[Any]:
        """Run `fn(ctx, item, index)` for each item, as `parallel` runs branches.

        The name may be left out, `ctx.map(items, fn)`: the default is the
        function's qualified name (or the workflow's, for a distributed map).
        `nesting`, `serializer` as for `parallel`; `item_namer(item, index)` names
        each item (`BatchItem.name`, and its record when nested).

        `checkpoint="batched"`: the items' step results are written several to an
        item, as `@workflow(..., checkpoint="batched")` does for a whole run.

        With `workflow=` instead of `fn`, each item is the input of a child run of
        that workflow (a distributed map: the items spread over every worker; each
        child's output is the item's result, a child that did not complete is a
        failed item). `execution_timeout` applies to each child.

        `batch_size=N` (distributed maps): each child gets a batch of up to N items,
        `{"items": [...], "batch": k, "first_index": k * N}`, and the result has one
        item per batch. `items=S3Items(key)` reads the items from the lines of a JSON
        Lines object in S3 and writes the results back there as JSON Lines: the
        parent holds neither (worker/operations/s3_map.py); the result is an
        `S3BatchResult`, read lazily."""
        if isinstance(name, str):
            label = name
        else:
            if fn is not None:
                raise TypeError("map takes (name, items, fn) or (items, fn)")
            items, fn = name, items
            label = default_name(fn, "map") if fn is not None else workflow or "map"
        if items is None:
            raise TypeError("map needs its items: ctx.map(name, items, fn)")
        if workflow is not None and (
            nesting != "flat" or item_namer is not None or serializer is not None
        ):
            raise TypeError("nesting, item_namer and serializer are for a map of fn")
        if checkpoint not in CHECKPOINT_MODES:
            raise ValueError(
                f"checkpoint {checkpoint!r} must be one of: {', '.join(CHECKPOINT_MODES)}"
            )
        if workflow is not None:
            if checkpoint != "each":
                raise TypeError(
                    "checkpoint='batched' is for a map of fn; children record their own"
                )
            if fn is not None:
                raise TypeError("map takes either fn or workflow=, not both")
            if isinstance(items, S3Items):
                return await _s3_map.s3_map(  # type: ignore[return-value]
                    label,
                    items,
                    workflow,
                    batch_size=1 if batch_size is None else batch_size,
                    max_concurrency=max_concurrency,
                    completion=completion,
                    execution_timeout=execution_timeout,
                    task_queue=task_queue,
                )
            return await _distributed.distributed_map(
                label,
                items,
                workflow,
                batch_size=batch_size,
                max_concurrency=max_concurrency,
                completion=completion,
                execution_timeout=execution_timeout,
                task_queue=task_queue,
            )
        if fn is None:
            raise TypeError("map needs fn(ctx, item, index) or workflow=")
        if batch_size is not None or isinstance(items, S3Items):
            raise TypeError("batch_size and S3Items are for a distributed map (workflow=)")
        units = _batch.map_units(items, fn)
        names = None
        if item_namer is not None:
            names = [item_namer(args[0], i) for i, (_, args) in enumerate(units)]
        return await _batch.run_batch(
            self,
            StepKind.MAP,
            label,
            units,
            max_concurrency=max_concurrency,
            completion=completion,
            batched=checkpoint == "batched",
            names=names,
            nesting=nesting,
            serializer=serializer,
        )

    async def continue_as_new(self, next_input: Any) -> Any:
        """End this history and go on with a fresh one under the same run id:
        `return await ctx.continue_as_new(next_input)`. The workflow function starts
        again from the top with `next_input`; the run's generation goes up by one.
        Never returns."""
        await _continue.continue_as_new(next_input)

    # --- versioning ---------------------------------------------------------------------
    async def patched(self, patch_id: str) -> bool:
        """True if this run takes the code guarded by `patch_id`: runs that reach this
        point for the first time (and record a marker here), and runs that recorded
        the marker before. False for runs that passed this point under the code
        before the patch; they replay the old path, and nothing is recorded or taken.
        See "Changing workflows" in the README."""
        return await _patch.patched(patch_id)

    async def deprecate_patch(self, patch_id: str) -> None:
        """The second deploy of a patch: the guard is gone and only the new code is
        left. Runs that recorded the marker skip it here; new runs record nothing."""
        await _patch.deprecate_patch(patch_id)


def current_context() -> WorkflowContext:
    ctx = _current.get()
    if ctx is None:
        raise WorkflowContextError("no workflow is running in this task")
    return ctx
