"""An in-memory `RunStore` (worker/_store_api.py) for fast tests of the worker's
context and loop.

It keeps the run lifecycle: runs, their history and inboxes, and the owner
writes with the conditions of `orchestrator/store/requests.py`, written here a
second time on purpose and held to the real ones by the contract suite
(`tests/contract/`), which runs the same cases against this fake and against
`AsyncStore` on the moto server. Messages (a timer's delayed message among
them), visibility changes and deletes are recorded in lists, and live
schedules in a set, for tests to read.

Not kept: continue-as-new generations other than 0, and the operations that
send raw DynamoDB requests (callbacks, child runs' transactions): `ddb`,
`transact` and `update` raise, so a test that reaches them says so at once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from orchestrator.dispatch import schedule_name, timer_plan
from orchestrator.errors import InboxFullError
from orchestrator.model import (
    DEFAULT_TASK_QUEUE,
    ClaimFailure,
    ErrorInfo,
    Run,
    Signal,
    Status,
    StepRecord,
    inbox_refusal,
)
from orchestrator.payloads import AsyncValues
from orchestrator.settings import Settings
from orchestrator.store.codec import last_batch_text, records_from_last_batch
from worker._store import Refused

if TYPE_CHECKING:
    from worker._store_api import RunStore


class NotInTheFake(NotImplementedError):
    """The fake does not keep this part of the store: use the moto store."""


class InMemoryStore:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        # No bucket: values stay inline (the codec's behaviour without S3).
        self.values = AsyncValues(None, self.settings.bucket, self.settings.offload_bytes)
        self.runs: dict[str, Run] = {}
        self.steps: dict[str, dict[str, StepRecord]] = {}
        self.signals: dict[str, list[Signal]] = {}
        self.sent: list[tuple[str, str, str | None, int]] = []  # (id, reason, queue, delay)
        self.timers: list[tuple[str, str, int]] = []  # (id, op_id, wake_at)
        self.deleted_messages: list[str] = []
        self.visibility: list[tuple[str, int]] = []
        self.deleted_schedules: list[str] = []
        self.schedules: set[str] = set()  # the timers' schedules not deleted yet
        self.expired: dict[str, set[int]] = {}  # signals (seq) an ended run left, given a TTL
        self.queues: set[str] = set()  # pinned builds' queue keys made sure of

    # --- the run record ---------------------------------------------------------------
    def _old(self, workflow_id: str) -> Refused:
        run = self.runs.get(workflow_id)
        return Refused(copy.deepcopy(run) if run is not None else None)

    @staticmethod
    def _served(run: Run, names: list[str], queues: dict[str, list[str]] | None) -> bool:
        if queues is None:
            return run.name in names
        return run.name in queues.get(run.task_queue or DEFAULT_TASK_QUEUE, [])

    async def claim(
        self,
        workflow_id: str,
        *,
        owner: str,
        now: int,
        lease_ms: int,
        names: list[str],
        build_id: str | None = None,
        queues: dict[str, list[str]] | None = None,
        pinned_names: list[str] | tuple[str, ...] = (),
    ) -> Run | Refused:
        run = self.runs.get(workflow_id)
        if run is None or not self._served(run, names, queues):
            return self._old(workflow_id)
        if run.pinned and run.build_id != build_id:
            return self._old(workflow_id)  # pinned to another build (or this worker has none)
        if run.name in pinned_names and run.build_id not in (None, build_id):
            return self._old(workflow_id)  # another build claimed it first
        parked = run.status in (Status.SLEEPING, Status.WAITING)
        runnable = (
            run.status == Status.PENDING
            or (
                run.status == Status.RUNNING
                and run.lease_until is not None
                and run.lease_until < now
            )
            or (parked and run.wake_at is not None and run.wake_at <= now)
        )
        if not runnable:
            return self._old(workflow_id)
        run = self.runs[workflow_id] = replace(
            run,
            status=Status.RUNNING,
            owner=owner,
            lease_until=now + lease_ms,
            epoch=run.epoch + 1,
            updated_at=now,
            wake_at=None,
            wait_signal=None,
            build_id=run.build_id if run.build_id is not None else build_id,
        )
        return copy.deepcopy(run)

    async def pin(self, run: Run) -> Run | Refused:
        current = self._owns(run.id, run.epoch)
        if current is None or current.build_id != run.build_id:
            return self._old(run.id)
        pinned = self.runs[run.id] = replace(current, pinned=True)
        return copy.deepcopy(pinned)

    def _owns(self, workflow_id: str, epoch: int) -> Run | None:
        run = self.runs.get(workflow_id)
        if run is None or run.epoch != epoch or run.status != Status.RUNNING:
            return None
        return run

    async def heartbeat(self, workflow_id: str, *, epoch: int, lease_until: int) -> Run | None:
        run = self._owns(workflow_id, epoch)
        if run is None:
            return None
        run = self.runs[workflow_id] = replace(run, lease_until=lease_until)
        return copy.deepcopy(run)

    async def park_sleep(
        self, workflow_id: str, *, epoch: int, now: int, wake_at: int, timer: str | None = None
    ) -> Refused | None:
        run = self._owns(workflow_id, epoch)
        if run is None or run.cancel_requested is not None:
            return self._old(workflow_id)
        self.runs[workflow_id] = replace(
            run,
            status=Status.SLEEPING,
            wake_at=wake_at,
            due_at=wake_at + self.settings.sweep_grace_ms,
            updated_at=now,
            timer=timer,
            owner=None,
            lease_until=None,
            claim_failure=None,
        )
        return None

    async def park_wait(
        self,
        workflow_id: str,
        *,
        epoch: int,
        now: int,
        signal: str,
        seen_seq: int,
        deadline: int | None,
        timer: str | None = None,
    ) -> Refused | None:
        run = self._owns(workflow_id, epoch)
        if run is None or run.cancel_requested is not None or run.signal_seq != seen_seq:
            return self._old(workflow_id)
        due = None if deadline is None else deadline + self.settings.sweep_grace_ms
        self.runs[workflow_id] = replace(
            run,
            status=Status.WAITING,
            wait_signal=signal,
            wake_at=deadline if deadline is not None else run.wake_at,
            due_at=due,
            updated_at=now,
            timer=timer,
            owner=None,
            lease_until=None,
            claim_failure=None,
        )
        return None

    async def finish(
        self,
        workflow_id: str,
        *,
        epoch: int,
        now: int,
        status: Status,
        output: str | None = None,
        error: ErrorInfo | None = None,
        notify_due: int | None = None,
        last_batch: Sequence[StepRecord] = (),
        generation: int = 0,
    ) -> bool:
        assert status.terminal
        run = self._owns(workflow_id, epoch)
        if run is None:
            return False
        self._generation(generation)
        text = last_batch_text(list(last_batch), epoch=epoch, generation=generation, now=now)
        self.runs[workflow_id] = replace(
            run,
            last_batch=text if last_batch else run.last_batch,
            status=status,
            updated_at=now,
            output=output if output is not None else run.output,
            error=error if error is not None else run.error,
            due_at=notify_due,
            owner=None,
            lease_until=None,
            wake_at=None,
            wait_signal=None,
            timer=None,
            claim_failure=None,
            inbox_count=0,
            inbox_bytes=0,
        )
        if run.inbox_count > 0:
            await self.expire_inbox(workflow_id, now=now)
        return True

    async def expire_inbox(self, workflow_id: str, *, now: int) -> int:
        left = {s.seq for s in self.signals.get(workflow_id, []) if not s.consumed}
        fresh = left - self.expired.get(workflow_id, set())
        self.expired.setdefault(workflow_id, set()).update(left)
        return len(fresh)

    async def release(self, workflow_id: str, *, epoch: int, now: int) -> bool:
        run = self._owns(workflow_id, epoch)
        if run is None:
            return False
        due = run.due_at if run.due_at is not None else now + self.settings.sweep_grace_ms
        self.runs[workflow_id] = replace(run, lease_until=0, due_at=due, owner=None)
        return True

    async def record_claim_failure(
        self, workflow_id: str, *, epoch: int, now: int, failure: ClaimFailure, retry_at: int
    ) -> bool:
        run = self._owns(workflow_id, epoch)
        if run is None:
            return False
        due = run.due_at if run.due_at is not None else retry_at + self.settings.sweep_grace_ms
        self.runs[workflow_id] = replace(
            run, claim_failure=failure, lease_until=retry_at, updated_at=now, due_at=due
        )
        return True

    async def get_run(self, workflow_id: str) -> Run | None:
        run = self.runs.get(workflow_id)
        return copy.deepcopy(run) if run is not None else None

    async def create_run(self, run: Run) -> tuple[Run, bool]:
        if run.id in self.runs:
            return copy.deepcopy(self.runs[run.id]), False
        self.runs[run.id] = copy.deepcopy(run)
        return run, True

    async def get_runs(self, ids: list[str], *, consistent: bool = False) -> dict[str, Run]:
        return {i: copy.deepcopy(self.runs[i]) for i in ids if i in self.runs}

    # --- the history ------------------------------------------------------------------
    def _generation(self, generation: int) -> None:
        if generation != 0:
            raise NotInTheFake("continue-as-new generations are not kept by the fake")

    async def history(
        self,
        workflow_id: str,
        generation: int = 0,
        *,
        last_batch: str | None = None,
        attempt: int = 0,
    ) -> dict[str, StepRecord]:
        self._generation(generation)
        out = {rec.op_id: rec for rec in records_from_last_batch(last_batch, generation)}
        current = {
            op: rec
            for op, rec in self.steps.get(workflow_id, {}).items()
            if rec.run_attempt >= attempt  # an earlier attempt's record is no record
        }
        return out | current

    async def put_batch(
        self, workflow_id: str, *, epoch: int, now: int, records: list[StepRecord]
    ) -> bool:
        if self._owns(workflow_id, epoch) is None:
            return False  # the fence: a stale owner's flush writes nothing
        kept = self.steps.setdefault(workflow_id, {})
        for rec in records:
            kept[rec.op_id] = replace(rec, epoch=epoch)
        return True

    async def put_step(self, workflow_id: str, rec: StepRecord) -> StepRecord:
        records = self.steps.setdefault(workflow_id, {})
        old = records.get(rec.op_id)
        if old is None or old.run_attempt < rec.run_attempt:
            free = True  # an earlier attempt's record is no record for this writer
        elif old.run_attempt > rec.run_attempt:
            free = False
        elif rec.resolved:
            free = not old.resolved  # an outcome replaces an unresolved record only
        elif rec.kind == "step" and rec.retry_at is None:
            # An at-most-once start marker: one writer starts each attempt.
            free = not old.resolved and len(old.attempts) < len(rec.attempts)
        elif rec.kind == "step":
            # A retry state replaces a retry state with fewer attempts, or the
            # start marker of its own attempt.
            free = not old.resolved and (
                len(old.attempts) < len(rec.attempts)
                or (len(old.attempts) == len(rec.attempts) and old.retry_at is None)
            )
        else:
            free = False  # a sleep's wake time, a wait's deadline: written once
        if free:
            records[rec.op_id] = rec
            return rec
        return old  # type: ignore[return-value]

    async def get_step(self, workflow_id: str, op_id: str) -> StepRecord:
        return self.steps[workflow_id][op_id]

    async def resolve_timeout(
        self, workflow_id: str, *, op_id: str, now: int, attempt: int = 0
    ) -> bool:
        rec = self.steps.get(workflow_id, {}).get(op_id)
        if rec is None or rec.resolved or rec.run_attempt != attempt:
            return False
        self.steps[workflow_id][op_id] = replace(
            rec, resolved=True, timed_out=True, recorded_at=now
        )
        return True

    # --- signals ----------------------------------------------------------------------
    def deliver_signal(self, workflow_id: str, name: str, payload: str, *, now: int) -> bool:
        """What the API's signal does (`Store.send_signal`): store it, bump the
        run's signal_seq, and flip a run waiting for the name to pending. True
        when it woke the run."""
        run = self.runs[workflow_id]
        if run.status.terminal:
            raise ValueError(f"run {workflow_id} is {run.status.value}")
        size = len(payload.encode())
        full = inbox_refusal(workflow_id, run.inbox_count, run.inbox_bytes, size)
        if full:
            raise InboxFullError(full)
        sig = Signal(
            name=name,
            seq=run.signal_seq + 1,
            payload=payload,
            sent_at=now,
            attempt=run.redrive_count,
            size=size,
        )
        self.signals.setdefault(workflow_id, []).append(sig)
        wake = run.status == Status.WAITING and name in run.wait_signals
        changes: dict[str, Any] = {
            "signal_seq": sig.seq,
            "updated_at": now,
            "inbox_count": run.inbox_count + 1,
            "inbox_bytes": run.inbox_bytes + size,
        }
        if wake:
            changes.update(
                status=Status.PENDING,
                wait_signal=None,
                wake_at=None,
                timer=None,
                due_at=now + self.settings.sweep_grace_ms,
            )
        self.runs[workflow_id] = replace(run, **changes)
        return wake

    async def inbox(self, workflow_id: str, name: str) -> list[Signal]:
        return sorted(
            (s for s in self.signals.get(workflow_id, []) if s.name == name and not s.consumed),
            key=lambda s: s.seq,
        )

    async def consume(
        self, workflow_id: str, *, wait: StepRecord, signal: Signal, now: int
    ) -> bool:
        records = self.steps.setdefault(workflow_id, {})
        current = records.get(wait.op_id)
        inbox = self.signals.get(workflow_id, [])
        index = next(
            (i for i, s in enumerate(inbox) if (s.name, s.seq) == (signal.name, signal.seq)), None
        )
        if (current is not None and current.resolved) or index is None or inbox[index].consumed:
            return False  # both writes or neither, as in the transaction
        records[wait.op_id] = replace(
            wait, recorded_at=now, resolved=True, result=signal.payload, signal_seq=signal.seq
        )
        inbox[index] = replace(inbox[index], consumed=True)
        run = self.runs.get(workflow_id)
        if run is not None and signal.attempt is not None and signal.attempt == wait.run_attempt:
            self.runs[workflow_id] = replace(
                run,
                inbox_count=run.inbox_count - 1,
                inbox_bytes=run.inbox_bytes - signal.size,
            )
        return True

    # --- messages and timers ----------------------------------------------------------
    async def arrange_timer(
        self, workflow_id: str, op_id: str, seq: int, *, now: int, wake_at: int
    ) -> str:
        self.timers.append((workflow_id, op_id, wake_at))
        kind, delay = timer_plan(now, wake_at)
        if kind == "delay":
            run = self.runs.get(workflow_id)
            await self.send(workflow_id, "timer", run.route if run else None, delay_s=delay)
        else:
            self.schedules.add(schedule_name(workflow_id, op_id, seq))  # a retry: still one
        return kind

    async def send(
        self,
        workflow_id: str,
        reason: str,
        task_queue: str | None,
        *,
        delay_s: int = 0,
        name: str | None = None,
    ) -> None:
        self.sent.append((workflow_id, reason, task_queue, delay_s))

    async def ensure_queue(self, key: str) -> None:
        self.queues.add(key)

    async def send_many(self, ids: list[str], reason: str, task_queue: str | None = None) -> None:
        for i in ids:
            await self.send(i, reason, task_queue)

    async def delete_message(self, receipt: str) -> None:
        self.deleted_messages.append(receipt)

    async def set_visibility(self, receipt: str, seconds: int) -> None:
        self.visibility.append((receipt, seconds))

    async def delete_schedule(self, name: str) -> None:
        self.deleted_schedules.append(name)
        self.schedules.discard(name)  # a missing one is no error, as on Scheduler

    # --- raw DynamoDB: not in the fake --------------------------------------------------
    @property
    def ddb(self) -> Any:
        raise NotInTheFake("raw DynamoDB requests (callbacks, child runs) need the moto store")

    async def transact(self, req: dict[str, Any]) -> str | None:
        raise NotInTheFake("transactions (child runs, callbacks) need the moto store")

    async def update(self, req: dict[str, Any]) -> Run | None:
        raise NotInTheFake("raw updates (child runs, callbacks) need the moto store")


if TYPE_CHECKING:
    # mypy proves here that the fake satisfies the interface (`make lint` checks
    # tests/fakes): a member missing or with another signature fails the lint.
    _conforms: RunStore = InMemoryStore()
