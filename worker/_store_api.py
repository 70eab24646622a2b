"""The store interface a run's context and its worker loop use (`RunStore`).

`AsyncStore` (worker/_store.py) implements it on DynamoDB, SQS and EventBridge
Scheduler; `tests/fakes/memory_store.py` implements the run lifecycle in
memory, refusing what DynamoDB's conditions refuse. One contract suite
(`tests/contract/`) runs against both, so the fake cannot drift from the real
conditions without a test failing, and the context can be unit-tested fast.

Each owner write returns None (or True) when it landed and `Refused` (or
False) when its condition failed, which for an owner means: the lease is gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from orchestrator.model import ClaimFailure, ErrorInfo, Run, Signal, Status, StepRecord
from orchestrator.payloads import AsyncValues
from orchestrator.settings import Settings

from ._store import Refused


class RunStore(Protocol):
    settings: Settings
    # The value codec (orchestrator/payloads.py): what the store writes and reads
    # goes through it; the runner and `invoke` use it for a child's output.
    values: AsyncValues

    # --- the run record: claim, lease, park, end -------------------------------------
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
    ) -> Run | Refused: ...

    async def pin(self, run: Run) -> Run | Refused: ...

    async def heartbeat(self, workflow_id: str, *, epoch: int, lease_until: int) -> Run | None: ...

    async def park_sleep(
        self, workflow_id: str, *, epoch: int, now: int, wake_at: int, timer: str | None = None
    ) -> Refused | None: ...

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
    ) -> Refused | None: ...

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
    ) -> bool: ...

    async def release(self, workflow_id: str, *, epoch: int, now: int) -> bool: ...

    async def record_claim_failure(
        self, workflow_id: str, *, epoch: int, now: int, failure: ClaimFailure, retry_at: int
    ) -> bool: ...

    async def get_run(self, workflow_id: str) -> Run | None: ...

    async def create_run(self, run: Run) -> tuple[Run, bool]: ...

    async def get_runs(self, ids: list[str], *, consistent: bool = False) -> dict[str, Run]: ...

    # --- the history ------------------------------------------------------------------
    async def history(
        self,
        workflow_id: str,
        generation: int = 0,
        *,
        last_batch: str | None = None,
        attempt: int = 0,
    ) -> dict[str, StepRecord]: ...

    async def put_step(self, workflow_id: str, rec: StepRecord) -> StepRecord: ...

    async def put_batch(
        self, workflow_id: str, *, epoch: int, now: int, records: list[StepRecord]
    ) -> bool: ...

    async def get_step(self, workflow_id: str, op_id: str) -> StepRecord: ...

    async def resolve_timeout(
        self, workflow_id: str, *, op_id: str, now: int, attempt: int = 0
    ) -> bool: ...

    # --- signals ----------------------------------------------------------------------
    async def inbox(self, workflow_id: str, name: str) -> list[Signal]: ...

    async def consume(
        self, workflow_id: str, *, wait: StepRecord, signal: Signal, now: int
    ) -> bool: ...

    async def expire_inbox(self, workflow_id: str, *, now: int) -> int: ...

    # --- messages and timers ----------------------------------------------------------
    async def arrange_timer(
        self, workflow_id: str, op_id: str, seq: int, *, now: int, wake_at: int
    ) -> str: ...

    async def send(
        self,
        workflow_id: str,
        reason: str,
        task_queue: str | None,
        *,
        delay_s: int = 0,
        name: str | None = None,
    ) -> None: ...

    async def ensure_queue(self, key: str) -> None: ...

    async def send_many(
        self, ids: list[str], reason: str, task_queue: str | None = None
    ) -> None: ...

    async def delete_message(self, receipt: str) -> None: ...

    async def set_visibility(self, receipt: str, seconds: int) -> None: ...

    async def delete_schedule(self, name: str) -> None: ...

    # --- raw DynamoDB, for the operations whose requests live beside them (callbacks,
    # child runs): a fake without DynamoDB raises on use.
    @property
    def ddb(self) -> Any: ...

    async def transact(self, req: dict[str, Any]) -> str | None: ...

    async def update(self, req: dict[str, Any]) -> Run | None: ...
