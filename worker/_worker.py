"""The worker: pulls "run X is runnable" messages from SQS, claims runs with a
fenced lease, replays them, and records what they do.

Loops run as tasks: one long-poll receiver, plus one task per claimed run with
its own heartbeat. The receiver asks SQS for at most as many messages as there
are free slots (backpressure). Shutdown stops receiving, lets running runs go
on for a grace period, then cancels the rest and releases their leases so that
another worker takes them over at once, and sends the message deletes still
batched (worker/_deletes.py) before the SQS client closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeGuard

import aioboto3
from aiobotocore.config import AioConfig
from pydantic import ValidationError

from orchestrator import faults
from orchestrator.aws import RETRIES
from orchestrator.clock import SYSTEM_CLOCK, Clock
from orchestrator.dispatch import parse_body
from orchestrator.errors import ExecutionTimeoutError, NonDeterminismError, WorkflowCancelledError
from orchestrator.model import DEFAULT_TASK_QUEUE, MAX_OUTPUT_BYTES, ErrorInfo, Run, Status
from orchestrator.settings import Settings

from ._context import WorkflowContext, _current
from ._deletes import DEFAULT_MAX_WAIT
from ._flow import FlowControl
from ._logs import log_context, set_fields
from ._metrics import WorkerMetrics
from ._presence import Presence
from ._registry import WorkflowDefinition, definition_of
from ._state import ExecutionTimedOut, LeaseLost, RunState, Suspend
from ._state import error_info as _error_info
from ._store import AsyncStore, Refused
from ._tracing import Tracing

log = logging.getLogger("worker")

UNSERVED_RETRY_SECONDS = 30  # a message for a name this worker does not serve comes back after this
UNSERVED_MAX_RECEIVES = 10  # then it is dropped; the sweeper offers the run again, with backoff


class Worker:
    """Runs the given workflows until stopped.

    async with Worker(workflows=[greet], max_concurrent_workflows=4) as w:
        await w.run_until_stopped()

    `delete_max_wait`: the longest a handled message's delete waits to share a
    DeleteMessageBatch call with others (seconds, default 0.5; 0 sends each
    delete at once, still as a batch call). Stop sends the pending deletes;
    a crash loses them, and those messages come back and are dropped as
    duplicates (see worker/_deletes.py).
    """

    def __init__(
        self,
        *,
        workflows: list[Any],
        max_concurrent_workflows: int = 10,
        settings: Settings | None = None,
        clock: Clock | None = None,
        worker_id: str | None = None,
        shutdown_grace: float = 10.0,
        metrics: WorkerMetrics | None = None,
        tracing: bool | None = None,
        delete_max_wait: float = DEFAULT_MAX_WAIT,
        task_queues: Sequence[str] | None = None,
    ) -> None:
        if not workflows:
            raise ValueError("a Worker needs at least one @workflow function")
        if max_concurrent_workflows < 1:
            raise ValueError("max_concurrent_workflows must be at least 1")
        if delete_max_wait < 0:
            raise ValueError("delete_max_wait must be at least 0 seconds")
        self._defs: dict[str, WorkflowDefinition] = {}
        for fn in workflows:
            d = definition_of(fn)
            if d.name in self._defs:
                raise ValueError(f"two workflows are named {d.name!r}")
            self._defs[d.name] = d
        self.settings = settings or Settings.from_env()
        self.settings.require_queue()
        self.clock = clock or SYSTEM_CLOCK
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._max = max_concurrent_workflows
        self._grace = shutdown_grace
        self._delete_max_wait = delete_max_wait
        self._lease_ms = self.settings.lease_seconds * 1000
        self._names = sorted(self._defs)
        self.task_queues, self._served = _serve(self._defs, task_queues, self.settings)
        self._tasks: set[asyncio.Task[None]] = set()
        # Run id -> how many tasks of this worker are claiming or running it, and the
        # `now` of each of their claims (see _lost_answer).
        self._active: Counter[str] = Counter()
        self._claim_nows: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self._slot_freed = asyncio.Event()
        self._reserved = 0  # slots held by receives in flight (one receiver per task queue)
        self._stopping = False
        self._stopped = asyncio.Event()
        self._poller: asyncio.Task[Any] | None = None
        self._exit: contextlib.AsyncExitStack | None = None
        self._store: AsyncStore | None = None
        self._flow: FlowControl | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=max(4, max_concurrent_workflows), thread_name_prefix="step"
        )
        self.metrics = metrics or WorkerMetrics()
        self._tracing = Tracing(tracing)
        self._presence: Presence | None = None
        self.stats = {
            "claimed": 0,
            "completed": 0,
            "failed": 0,
            "parked": 0,
            "lost": 0,
            "released": 0,
        }

    # --- lifecycle ----------------------------------------------------------------------
    async def __aenter__(self) -> Worker:
        await self._open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def _open(self) -> None:
        if self._store is not None:
            return
        self._exit = contextlib.AsyncExitStack()
        session = aioboto3.Session()
        faults.install(session)  # no-op unless ORCHESTRATOR_FAULTS is set
        config = AioConfig(
            retries=RETRIES,
            connect_timeout=5,
            read_timeout=40,
            max_pool_connections=max(20, 2 * self._max),
        )
        kw = {
            "region_name": self.settings.region,
            "endpoint_url": self.settings.endpoint_url,
            "config": config,
        }
        ddb = await self._exit.enter_async_context(session.client("dynamodb", **kw))
        sqs = await self._exit.enter_async_context(session.client("sqs", **kw))
        scheduler = await self._exit.enter_async_context(session.client("scheduler", **kw))
        self._store = AsyncStore(
            ddb, sqs, scheduler, self.settings, delete_max_wait=self._delete_max_wait
        )
        self._flow = FlowControl(ddb, self.settings.table, self.clock, self._lease_ms)
        # Unwound before the clients close (last in, first out): the pending deletes
        # are sent while the SQS client is still open.
        self._exit.push_async_callback(self._store.close)

    async def start(self) -> None:
        """Start receiving in the background (see `stop`)."""
        await self._open()
        if self._poller is None:
            self._stopping = False
            self._stopped.clear()
            assert self._store is not None
            self._presence = Presence(
                self._store.ddb,
                self.settings.table,
                self.clock,
                worker_id=self.id,
                names=self._names,
                concurrency=self._max,
                busy=lambda: len(self._tasks),
                task_queues=list(self.task_queues),
                served=sorted(
                    n if q == DEFAULT_TASK_QUEUE else f"{n}@{q}"
                    for q, names in self._served.items()
                    for n in names
                ),
            )
            await self._presence.start()
            self._poller = asyncio.create_task(self._poll_all(), name=f"poll-{self.id}")
            log.info(
                "worker %s serving %s on task queue(s) %s",
                self.id,
                ", ".join(self._names),
                ", ".join(self.task_queues),
                extra={"worker_id": self.id},
            )

    async def run_until_stopped(self) -> None:
        """Run until `stop()` is called or the process gets SIGINT/SIGTERM."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))
                installed.append(sig)
        try:
            await self._stopped.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def stop(self, grace: float | None = None) -> None:
        """Stop receiving; give running runs `grace` seconds, then release them."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._tasks:
            _, pending = await asyncio.wait(
                set(self._tasks), timeout=self._grace if grace is None else grace
            )
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if self._presence is not None:
            await self._presence.stop()
            self._presence = None
        if self._exit is not None:
            await self._exit.aclose()
            self._exit = None
            self._store = None
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._poller = None
        self._stopped.set()
        log.info("worker %s stopped", self.id)

    @property
    def busy(self) -> int:
        return len(self._tasks)

    # --- receiving --------------------------------------------------------------------------
    async def _poll_all(self) -> None:
        """One long-poll receiver per task queue; they share the worker's slots."""
        await asyncio.gather(*(self._poll_loop(q) for q in self.task_queues))

    async def _poll_loop(self, task_queue: str = "default") -> None:
        assert self._store is not None
        visibility = self.settings.lease_seconds + 5
        share = -(-self._max // len(self.task_queues))  # a fair share of the slots per queue
        while not self._stopping:
            free = min(share, self._max - len(self._tasks) - self._reserved)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._reserved += free
            try:
                messages = await self._store.receive(
                    free, self.settings.poll_seconds, visibility, task_queue
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("receive from %s failed; retrying in 1 s", task_queue)
                await asyncio.sleep(1)
                continue
            finally:
                self._reserved -= free
                self._slot_freed.set()
            now = self.clock.now_ms()
            for m in messages:
                sent = m.get("Attributes", {}).get("SentTimestamp")
                if sent:
                    self.metrics.observe(
                        "orchestrator_queue_wait_seconds", max(0, now - int(sent)) / 1000
                    )
                task = asyncio.create_task(self._handle(m, task_queue))
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()
        self.metrics.set_gauge("orchestrator_runs_in_flight", len(self._tasks))

    def _count(self, stat: str, run_name: str, metric: str, status: str | None = None) -> None:
        self.stats[stat] = self.stats.get(stat, 0) + 1
        if status is None:
            self.metrics.inc(metric, workflow=run_name)
        else:
            self.metrics.inc(metric, workflow=run_name, status=status)

    async def _handle(self, message: dict[str, Any], task_queue: str = DEFAULT_TASK_QUEUE) -> None:
        workflow_id = parse_body(message.get("Body", ""))
        if workflow_id is not None:
            self._active[workflow_id] += 1
        try:
            await self._handle_message(message, task_queue)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The message stays in flight and comes back after its visibility
            # timeout; the claim then decides again.
            log.exception("handling message %s failed", message.get("MessageId"))
        finally:
            if self._store is not None:
                self._store.forget(
                    message["ReceiptHandle"],
                    workflow_id if workflow_id and self._active[workflow_id] == 1 else None,
                )
            if workflow_id is not None:
                self._active[workflow_id] -= 1
                if not self._active[workflow_id]:
                    del self._active[workflow_id]
                    self._claim_nows.pop(workflow_id, None)

    async def _handle_message(
        self, message: dict[str, Any], task_queue: str = DEFAULT_TASK_QUEUE
    ) -> None:
        store = self._store
        assert store is not None
        receipt = message["ReceiptHandle"]
        workflow_id = parse_body(message.get("Body", ""))
        if workflow_id is None:
            log.warning("dropping a message that names no run: %r", message.get("Body", "")[:200])
            await store.delete_message(receipt)
            return
        assert self._flow is not None
        go, slot = await self._flow.acquire(task_queue, workflow_id)
        if not go:
            # Over the queue's limit: the run waits, it is not dropped. A fresh
            # message (not a visibility change) so waiting never counts toward the
            # dead-letter queue's receive limit.
            await store.send(workflow_id, "flow", task_queue, delay_s=1 + random.randint(0, 2))
            await store.delete_message(receipt)
            return
        outcome: bool | None = False
        try:
            outcome = await self._claim_and_run(message, workflow_id, receipt)
        finally:
            # The slot goes back when this worker ended the lease, or when its claim
            # was refused and the slot was its own. A lost lease's slot is the new
            # owner's (inherited); one left by an error is purged after the lease.
            if slot is not None and (outcome is True or (outcome is None and slot.created)):
                await self._flow.release(slot)

    async def _claim_and_run(
        self, message: dict[str, Any], workflow_id: str, receipt: str
    ) -> bool | None:
        """Claim the run and run it: None when the claim was refused, else whether
        the lease ended by this worker's own write (see `_execute`)."""
        store = self._store
        assert store is not None
        now = self.clock.now_ms()
        self._claim_nows[workflow_id][now] += 1
        result = await store.claim(
            workflow_id,
            owner=self.id,
            now=now,
            lease_ms=self._lease_ms,
            names=self._names,
            queues=self._served,
        )
        if (
            isinstance(result, Refused)
            and self._claim_nows[workflow_id][now] == 1
            and _lost_answer(result.old, self.id, now, self._lease_ms)
        ):
            # This very claim was applied but its answer was lost, and the SDK's retry
            # was refused by the lease it had just taken. The run is ours: run it now
            # instead of leaving it unowned until the sweeper's re-check.
            result = result.old
        if isinstance(result, Refused):
            await self._refused(result.old, message, now)
            return None
        self._count("claimed", result.name, "orchestrator_runs_claimed_total")
        self.metrics.set_gauge("orchestrator_runs_in_flight", len(self._tasks))
        with (
            log_context(
                worker_id=self.id, workflow_id=result.id, workflow=result.name, attempt=result.epoch
            ),
            self._tracing.span(
                "workflow.run",
                traceparent=result.traceparent,
                workflow_id=result.id,
                workflow_name=result.name,
                workflow_epoch=result.epoch,
                worker_id=self.id,
            ),
        ):
            return await self._execute(result, receipt)

    async def _refused(self, old: Run | None, message: dict[str, Any], now: int) -> None:
        """The claim lost. Decide what the message is still good for."""
        store = self._store
        assert store is not None
        receipt = message["ReceiptHandle"]
        if old is None or old.status.terminal:
            await store.delete_message(receipt)  # unknown run, or terminal: invariant 5
            return
        queue = old.task_queue or DEFAULT_TASK_QUEUE
        if queue not in self.task_queues:
            # A message on the wrong queue (sent by a path that did not know the run's
            # queue): pass it on to the run's own queue, whose workers claim it.
            await store.send(old.id, "forward", old.task_queue)
            await store.delete_message(receipt)
            return
        if old.name not in self._served.get(queue, ()):
            receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            if receives < UNSERVED_MAX_RECEIVES:
                await store.set_visibility(
                    receipt, UNSERVED_RETRY_SECONDS
                )  # for a worker that serves it
            else:
                await store.delete_message(receipt)  # the sweeper offers it again, with backoff
            return
        if (
            old.status in (Status.SLEEPING, Status.WAITING)
            and old.wake_at is not None
            and old.wake_at > now
        ):
            remaining = -(-(old.wake_at - now) // 1000)
            if remaining <= 900:
                await store.set_visibility(receipt, remaining)  # an early timer: come back when due
            else:
                await store.delete_message(receipt)  # the schedule or the sweeper wakes it
            return
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        if old.status == Status.RUNNING and old.lease_until is not None and receives > 1:
            # Delivered before: it may be the owner's own message, back because its
            # visibility lapsed (the owner was paused between receive and claim, or
            # could not extend it). Deleting it would leave the run without a message
            # if the owner then died. Keep it until the lease would expire: a live
            # owner refuses it again then, a dead one's run is claimed with it.
            remaining = -(-(old.lease_until - now) // 1000)
            await store.set_visibility(receipt, max(1, remaining) + 1)
            return
        # Held by a live owner (which keeps its own message in flight; a copy seen
        # for the first time cannot be that message), or parked on a signal (the
        # signal's delivery wakes it): this copy is a duplicate.
        await store.delete_message(receipt)

    # --- running ------------------------------------------------------------------------------
    async def _execute(self, run: Run, receipt: str) -> bool:
        """Run it; True when this worker's own write ended the lease (a finish, a
        park, a release), False when the lease was lost or the run left in
        flight (an error: it comes back after the lease)."""
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
            executor=self._executor,
            deadline_at=run.deadline_at,
            cancel_requested=run.cancel_requested,
            metrics=self.metrics,
            tracing=self._tracing,
        )
        runner = asyncio.current_task()
        assert runner is not None
        beat = asyncio.create_task(self._heartbeat(state, receipt, runner))
        try:
            # Epoch 1 is the first claim ever: no owner before it, and only owners
            # write step records, so there is no history to load.
            state.history = {} if run.epoch == 1 else await store.history(run.id)
            await self._run(self._defs[run.name], run, state, receipt)
            return not state.lost
        except asyncio.CancelledError:
            if state.timed_out and not state.lost:
                await self._finish(state, receipt, Status.FAILED, error=_timeout_error(state))
                return not state.lost
            if state.lost:
                self._count("lost", run.name, "orchestrator_lease_losses_total")
                log.warning("run %s: lease lost; abandoned", run.id)
                return False
            if self._stopping and not state.closing:
                released = False
                with contextlib.suppress(Exception):
                    if await store.release(run.id, epoch=state.epoch, now=self.clock.now_ms()):
                        released = True
                        await store.set_visibility(receipt, 0)  # another worker takes it now
                        self.stats["released"] += 1
                        log.info("run %s: released at shutdown", run.id)
                return released
            raise
        finally:
            beat.cancel()

    async def _run(self, d: WorkflowDefinition, run: Run, state: RunState, receipt: str) -> None:
        store = self._store
        assert store is not None
        if state.past_deadline():
            await self._finish(state, receipt, Status.FAILED, error=_timeout_error(state))
            return
        try:
            value = d.parse_input(run.input)
        except (ValidationError, ValueError) as e:
            await self._finish(
                state, receipt, Status.FAILED, error=ErrorInfo("InputValidationError", str(e))
            )
            return
        ctx = WorkflowContext(state)
        token = _current.set(ctx)
        result: Any = None
        failure: BaseException | None = None
        try:
            result = await (d.fn(ctx, value) if d.takes_input else d.fn(ctx))
        except (Suspend, LeaseLost, ExecutionTimedOut, WorkflowCancelledError):
            pass
        except asyncio.CancelledError:
            if state.unwinding is None:
                raise
        except Exception as e:
            failure = e
        finally:
            _current.reset(token)
        unwinding = state.unwinding  # what the context raised, even if user code swallowed it
        if isinstance(unwinding, Suspend):
            self._count("parked", run.name, "orchestrator_runs_parked_total")
            set_fields(status="parked")
            log.info("run %s parked", run.id)
            await store.delete_message(receipt)
        elif isinstance(unwinding, LeaseLost):
            state.lost = True
            self._count("lost", run.name, "orchestrator_lease_losses_total")
            log.warning("run %s: lease lost; abandoned", run.id)
        elif isinstance(unwinding, ExecutionTimedOut):
            await self._finish(state, receipt, Status.FAILED, error=_timeout_error(state))
        elif isinstance(unwinding, NonDeterminismError):
            await self._finish(state, receipt, Status.FAILED, error=_error_info(unwinding))
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
                if len(text.encode()) > MAX_OUTPUT_BYTES:
                    raise ValueError(
                        f"workflow output is {len(text.encode())} bytes; the limit is {MAX_OUTPUT_BYTES}"
                    )
            except Exception as e:
                await self._finish(state, receipt, Status.FAILED, error=_error_info(e))
                return
            await self._finish(state, receipt, Status.COMPLETED, output=text)

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
        state.closing = True
        ok = await store.finish(
            state.workflow_id,
            epoch=state.epoch,
            now=self.clock.now_ms(),
            status=status,
            output=output,
            error=error,
        )
        if not ok:
            state.lost = True
            self._count("lost", state.name, "orchestrator_lease_losses_total")
            log.warning(
                "run %s: could not record %s (lease lost); abandoned",
                state.workflow_id,
                status.value,
            )
            return
        self._count(
            status.value, state.name, "orchestrator_runs_finished_total", status=status.value
        )
        set_fields(status=status.value)
        log.log(
            logging.INFO if status == Status.COMPLETED else logging.WARNING,
            "run %s %s%s",
            state.workflow_id,
            status.value,
            f": {error.type}: {error.message}" if error else "",
        )
        await store.delete_message(receipt)

    async def _heartbeat(self, state: RunState, receipt: str, runner: asyncio.Task[None]) -> None:
        store = self._store
        assert store is not None
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            if state.closing:
                continue
            until = self.clock.now_ms() + self._lease_ms
            try:
                current = await store.heartbeat(
                    state.workflow_id, epoch=state.epoch, lease_until=until
                )
            except Exception:
                log.exception("heartbeat of %s failed; retrying", state.workflow_id)
                continue
            if current is None:
                if state.closing:
                    continue
                state.lost = True
                runner.cancel()
                return
            state.lease_until = until
            if current.cancel_requested and state.cancel_requested is None:
                state.cancel_requested = (
                    current.cancel_requested
                )  # delivered at the next durable call
            if state.past_deadline() and not state.closing:
                state.timed_out = True  # interrupt whatever the run is awaiting
                runner.cancel()
                return
            await store.set_visibility(receipt, self.settings.lease_seconds + 5)


def _serve(
    defs: dict[str, WorkflowDefinition], task_queues: Sequence[str] | None, settings: Settings
) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    """(the task queues to poll, task queue -> the names run from it).

    A workflow declared on a task queue (`@workflow(..., task_queue=)`) runs from
    that queue only; the others run from every queue polled. Without
    `task_queues`, a worker polls the queues its workflows declare, and "default"
    if one of them declares none."""
    declared = {d.task_queue for d in defs.values() if d.task_queue}
    if task_queues is None:
        undeclared = any(d.task_queue is None for d in defs.values())
        queues = sorted(declared) + ([DEFAULT_TASK_QUEUE] if undeclared else [])
    else:
        queues = list(dict.fromkeys(task_queues))
        if not queues:
            raise ValueError("a Worker serves at least one task queue")
    for q in queues:
        if q not in settings.task_queues:
            raise ValueError(
                f"task queue {q!r} is not one of the deployment's ({', '.join(settings.task_queues)}); "
                "add it to ORCHESTRATOR_TASK_QUEUES and to the stack's task_queues"
            )
    served: dict[str, list[str]] = {q: [] for q in queues}
    for d in defs.values():
        for q in [d.task_queue] if d.task_queue else queues:
            if q in served:
                served[q].append(d.name)
    if not any(served.values()):
        raise ValueError("none of the workflows runs on the task queues this worker polls")
    return tuple(queues), {q: sorted(names) for q, names in served.items()}


def _lost_answer(old: Run | None, worker_id: str, now: int, lease_ms: int) -> TypeGuard[Run]:
    """The refused claim's stored run carries exactly what this claim request wrote:
    owner, updated_at = now, lease_until = now + lease. The caller also makes sure no
    other task of this worker claimed the run with the same `now` (`_claim_nows`): two
    copies of one message in a batch may claim in the same millisecond."""
    return (
        old is not None
        and old.status == Status.RUNNING
        and old.owner == worker_id
        and old.updated_at == now
        and old.lease_until == now + lease_ms
    )


def _timeout_error(state: RunState) -> ErrorInfo:
    return ErrorInfo(
        ExecutionTimeoutError.__name__,
        f"the run's execution timeout passed (deadline {state.deadline_at} ms since the epoch)",
    )
