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
from asyncio import FIRST_COMPLETED
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, TypeGuard

import aioboto3

from orchestrator.aws import async_client_kwargs, instrument
from orchestrator.clock import SYSTEM_CLOCK, Clock
from orchestrator.dispatch import parse_body, parse_waiting_since
from orchestrator.model import (
    BUILD_ID_HELP,
    BUILD_ID_RE,
    DEFAULT_TASK_QUEUE,
    Run,
    Status,
)
from orchestrator.payloads import AsyncValues
from orchestrator.resources import split_queue_key
from orchestrator.settings import Settings

from ._claim_failures import _ClaimFailures
from ._deletes import DEFAULT_MAX_WAIT
from ._flow import FlowControl
from ._handoff import KICK_DELAY_S, NameCache, ServedNames, kick_pending
from ._heartbeats import Heartbeats
from ._logs import log_context
from ._metrics import MetricsPlugin, WorkerMetrics
from ._polling import _Polling
from ._presence import Presence
from ._refusals import _Refusals
from ._registry import WorkflowDefinition, definition_of
from ._runner import _Runs
from ._scope import install_task_factory
from ._serving import _pinned, _serve
from ._step_threads import _StepThreads
from ._store import AsyncStore, Refused
from ._tracing import TracingPlugin
from .plugins import Hooks

log = logging.getLogger("worker")


class Worker(_ClaimFailures, _Polling, _Runs, _Refusals):
    """Runs the given workflows until stopped.

    async with Worker(workflows=[greet], max_concurrent_workflows=4) as w:
        await w.run_until_stopped()

    `max_concurrent_steps`: how many step functions run at once in this worker,
    over all its runs and their branches (default: max(4, max_concurrent_workflows));
    the size of the thread pool for sync functions. One run's `ctx.map` over
    10,000 items waits for slots here instead of starving the worker's other runs.

    `delete_max_wait`: the longest a handled message's delete waits to share a
    DeleteMessageBatch call with others (seconds, default 0.5; 0 sends each
    delete at once, still as a batch call). Stop sends the pending deletes;
    a crash loses them, and those messages come back and are dropped as
    duplicates (see worker/_deletes.py).

    `session`: the aioboto3 session the worker makes its DynamoDB, SQS and
    Scheduler clients from (default: a new `aioboto3.Session()`, which reads
    the standard AWS credential chain). Pass one to choose a profile or
    credentials, or to hook the clients (tests, tracing).

    `plugins`: objects with hooks the worker calls as its runs start, end, and
    run operations and step attempts (worker/plugins.py), in this order, after
    the worker's own metrics and tracing.
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
        max_concurrent_steps: int | None = None,
        build_id: str | None = None,
        task_queues: Sequence[str] | None = None,
        session: aioboto3.Session | None = None,
        plugins: Sequence[Any] = (),
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
        # Recorded on every run this worker claims first (ORCHESTRATOR_BUILD_ID by default).
        self.build_id = build_id or self.settings.build_id
        if self.build_id is not None and not BUILD_ID_RE.fullmatch(self.build_id):
            raise ValueError(BUILD_ID_HELP)
        self._max = max_concurrent_workflows
        self._grace = shutdown_grace
        self._delete_max_wait = delete_max_wait
        self._lease_ms = self.settings.lease_seconds * 1000
        self._names = sorted(self._defs)
        self.task_queues, self._served = _serve(self._defs, task_queues, self.settings)
        # Pinned workflows: their runs come back through "<task queue>@<build>".
        self._pinned, self.poll_queues = _pinned(
            self._defs, self.task_queues, self._served, self.build_id
        )
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
        self._receiving = 0  # long polls in flight (one receiver per task queue)
        self._yield_until = 0.0  # loop time before which this worker does not receive
        self._receive_errors = 0  # consecutive failed receives
        self._exit: contextlib.AsyncExitStack | None = None
        self._store: AsyncStore | None = None
        self._flow: FlowControl | None = None
        self._session = session
        steps = max_concurrent_steps or max(4, max_concurrent_workflows)
        if steps < 1:
            raise ValueError("max_concurrent_steps must be at least 1")
        self._max_steps = steps
        self._executor = _StepThreads(max_workers=steps, thread_name_prefix="step")
        self._step_slots: asyncio.Semaphore | None = None
        self._force = asyncio.Event()  # a second SIGINT/SIGTERM: release everything now
        self.forced = False
        self.metrics = metrics or WorkerMetrics()
        # The worker's own metrics and spans are plugins too, called first.
        traced = self.settings.tracing if tracing is None else tracing
        own = [MetricsPlugin(self.metrics), *([TracingPlugin()] if traced else [])]
        self.hooks = Hooks([*own, *plugins])
        self._presence: Presence | None = None
        self._beats: Heartbeats | None = None  # leases and registry entry, off the runs' loop
        self._others: ServedNames | None = None  # names other live workers serve
        self._kicker: asyncio.Task[None] | None = None
        self._name_cache = NameCache()  # ids of runs of names this worker does not serve
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
        install_task_factory(asyncio.get_running_loop())
        self._step_slots = asyncio.Semaphore(self._max_steps)
        session = self._session or aioboto3.Session()
        instrument(session)  # fault injection, only when the test tooling asks for it
        kw = async_client_kwargs(self.settings, max_pool_connections=max(20, 2 * self._max))
        ddb = await self._exit.enter_async_context(session.client("dynamodb", **kw))
        sqs = await self._exit.enter_async_context(session.client("sqs", **kw))
        scheduler = await self._exit.enter_async_context(session.client("scheduler", **kw))
        s3 = (  # no value bucket configured: values stay in DynamoDB
            await self._exit.enter_async_context(session.client("s3", **kw))
            if self.settings.bucket
            else None
        )
        values = AsyncValues(s3, self.settings.bucket, self.settings.offload_bytes)
        self._store = AsyncStore(
            ddb,
            sqs,
            scheduler,
            self.settings,
            delete_max_wait=self._delete_max_wait,
            values=values,
        )
        self._flow = FlowControl(ddb, self.settings.table, self.clock, self._lease_ms)
        beats = self._new_heartbeats()
        await beats.open_thread(session, kw)
        self._beats = beats
        self._exit.push_async_callback(beats.close)
        # Unwound before the clients close (last in, first out): the pending deletes
        # are sent while the SQS client is still open.
        self._exit.push_async_callback(self._store.close)

    def _new_heartbeats(self) -> Heartbeats:
        return Heartbeats(
            table=self.settings.table,
            lease_seconds=self.settings.lease_seconds,
            clock=self.clock,
            stall_seconds=self.settings.loop_stall_seconds,
            worker_id=self.id,
        )

    def _heartbeats(self) -> Heartbeats:
        """The worker's heartbeats: a thread of their own (worker/_heartbeats.py),
        or, for a store given to the worker (the unit tests' fake), its own loop."""
        if self._beats is None:
            assert self._store is not None
            self._beats = self._new_heartbeats()
            self._beats.open_inline(self._store)
        return self._beats

    def _queue_of(self, receipt: str) -> str | None:
        queue_of = getattr(self._store, "queue_of", None)
        return queue_of(receipt) if queue_of is not None else None

    async def start(self) -> None:
        """Start receiving in the background (see `stop`)."""
        await self._open()
        if self._poller is None:
            self._stopping = False
            self._stopped.clear()
            assert self._store is not None
            beats = self._heartbeats()
            self._presence = Presence(
                beats.ddb or self._store.ddb,
                self.settings.table,
                self.clock,
                worker_id=self.id,
                names=self._names,
                concurrency=self._max,
                busy=lambda: len(self._tasks),
                task_queues=list(self.task_queues),
                build_id=self.build_id,
                paused=lambda: beats.stalled,
                served=sorted(
                    n if q == DEFAULT_TASK_QUEUE else f"{n}@{q}"
                    for q, names in self._served.items()
                    for n in names
                ),
            )
            for key in self.poll_queues:
                if split_queue_key(key)[1] is not None:
                    await self._store.ensure_queue(key)
            await beats.call(self._presence.start())
            self._others = ServedNames(
                self._store.ddb, self.settings.table, self.clock, self_id=self.id
            )
            self._kicker = asyncio.create_task(self._kick_orphans(), name="kick")
            self._poller = asyncio.create_task(self._poll_all(), name=f"poll-{self.id}")
            log.info(
                "worker %s serving %s on task queue(s) %s",
                self.id,
                ", ".join(self._names),
                ", ".join(self.task_queues),
                extra={"worker_id": self.id},
            )

    async def _kick_orphans(self) -> None:
        """Runs of names no other live worker serves may have had their messages
        hidden or dropped (worker/_handoff.py): send the recent pending ones now.
        The registry read follows this worker's own registration, so a peer that
        dropped a message before seeing this worker registered is covered."""
        assert self._store is not None and self._others is not None
        started = self.clock.now_ms()
        try:
            others = await self._others.refresh()
            orphans = set(self._names) - others
            if not orphans:
                return
            await asyncio.sleep(KICK_DELAY_S)
            sent = await kick_pending(
                self._store.ddb, self._store.sqs, self.settings, self.clock, orphans, before=started
            )
        except asyncio.CancelledError:
            return
        except Exception:
            log.warning("could not look for pending runs of newly served names", exc_info=True)
            return
        if sent:
            log.info("sent %d pending run(s) of %s", len(sent), ", ".join(sorted(orphans)))

    async def run_until_stopped(self) -> None:
        """Run until `stop()` is called or the process gets SIGINT/SIGTERM."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed = []

        stopping: list[asyncio.Future[None]] = []

        def on_signal() -> None:
            if not self._stopping:
                stopping.append(asyncio.ensure_future(self.stop()))
            else:
                self.force_stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
        try:
            await self._stopped.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def force_stop(self) -> None:
        """End the grace now (the second SIGINT/SIGTERM): running runs are cancelled
        and their leases released, best effort. A sync step's thread cannot be
        stopped; `step_threads()` names what still runs, and the CLI exits without
        waiting for it."""
        self.forced = True
        self._force.set()
        if self._poller is not None:
            self._poller.cancel()
        log.warning("worker %s: stopping now; releasing %d run(s)", self.id, len(self._tasks))

    def step_threads(self) -> list[str]:
        """The sync step functions still running in the worker's threads."""
        return self._executor.running()

    def join_step_threads(self) -> None:
        self._executor.join()

    async def stop(self, grace: float | None = None) -> None:
        """Stop receiving; give running runs `grace` seconds, then release them."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self._grace if grace is None else grace
        if self._tasks:
            log.info(
                "worker %s stopping: %d run(s) in flight get up to %g s to finish, "
                "then their leases are released (signal again to release them now)",
                self.id,
                len(self._tasks),
                grace,
            )
        # The open long poll and the runs' grace end side by side.
        end_poll = asyncio.ensure_future(self._end_poll()) if self._poller is not None else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        force = asyncio.ensure_future(self._force.wait())
        while True:
            left = {t for t in self._tasks if not t.done()}
            remaining = deadline - loop.time()
            if not left or force.done() or remaining <= 0:
                break
            await asyncio.wait({*left, force}, timeout=remaining, return_when=FIRST_COMPLETED)
        force.cancel()
        if end_poll is not None:
            await end_poll
        if self._tasks:
            pending = {t for t in self._tasks if not t.done()}
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if self._kicker is not None:
            self._kicker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._kicker
            self._kicker = None
        if self._presence is not None:
            await self._heartbeats().call(self._presence.stop())
            self._presence = None
        if self._exit is not None:
            await self._exit.aclose()
            self._exit = None
            self._store = None
        self._beats = None
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._poller = None
        self._stopped.set()
        log.info("worker %s stopped", self.id)
        threads = self.step_threads()
        if threads:
            log.warning(
                "worker %s: %d sync step function(s) still running in threads (%s); "
                "a thread cannot be interrupted (their runs' leases are released)",
                self.id,
                len(threads),
                ", ".join(threads),
            )

    async def _end_poll(self) -> None:
        """Let a long poll in flight return instead of dropping its connection: a
        message SQS hands to a dropped poll would stay hidden for the whole
        visibility timeout. What it returns is handed back at once (`_poll_loop`)."""
        assert self._poller is not None
        self._slot_freed.set()  # a poller waiting for a free slot exits
        wait = self.settings.poll_seconds + 2
        if self._receiving:
            log.info(
                "worker %s: waiting up to %d s for the current long poll to return, "
                "so that no message is left hidden",
                self.id,
                self.settings.poll_seconds,
            )
        force = asyncio.ensure_future(self._force.wait())
        await asyncio.wait({self._poller, force}, timeout=wait, return_when=FIRST_COMPLETED)
        force.cancel()
        if not self._poller.done():
            self._poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._poller

    @property
    def busy(self) -> int:
        return len(self._tasks)

    def _count(self, stat: str) -> None:
        self.stats[stat] = self.stats.get(stat, 0) + 1

    async def _handle(self, message: dict[str, Any], task_queue: str = DEFAULT_TASK_QUEUE) -> None:
        workflow_id = None
        try:
            # parse_body never raises; a body it cannot read names no run, and
            # _handle_message deletes it with a log line.
            workflow_id = parse_body(message.get("Body", ""))
            if workflow_id is not None:
                self._active[workflow_id] += 1
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
        # A pinned build's queue counts against its task queue's limits.
        go, slot = await self._flow.acquire(split_queue_key(task_queue)[0], workflow_id)
        if not go:
            # Over the queue's limit: the run waits, it is not dropped. A fresh
            # message (not a visibility change) so waiting never counts toward the
            # dead-letter queue's receive limit; it carries when the wait began.
            since = parse_waiting_since(message.get("Body", "")) or self.clock.now_ms()
            await self._flow.waiting(task_queue, workflow_id, since)
            await store.send(
                workflow_id,
                "flow",
                task_queue,
                delay_s=1 + random.randint(0, 2),
                waiting_since=since,
            )
            await store.delete_message(receipt)
            return
        failed = False
        try:
            await self._claim_and_run(message, workflow_id, receipt)
        except Exception:
            # An error: what the run was doing may still be running. Its token
            # stays until the purge, once no lease of the run is live.
            failed = True
            raise
        finally:
            # Otherwise this acquire's token goes back however the handling ended:
            # the claim refused, the lease ended by this worker's own write or lost
            # to a newer claim (which took a token of its own), a stop's cancel.
            # The run's other handlers hold their own tokens: theirs stay.
            if slot is not None and not failed:
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
            build_id=self.build_id,
            queues=self._served,
            pinned_names=self._pinned,
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
        if not isinstance(result, Refused) and result.name in self._pinned and not result.pinned:
            result = await store.pin(result)  # the first claim of a pinned workflow's run
        if isinstance(result, Refused):
            await self._refused(result.old, message, now)
            return None
        self._count("claimed")
        self.metrics.set_gauge("orchestrator_runs_in_flight", len(self._tasks))
        with log_context(
            worker_id=self.id, workflow_id=result.id, workflow=result.name, attempt=result.epoch
        ):
            return await self._execute(result, receipt)


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
