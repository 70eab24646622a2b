"""The two stores the contract runs against, and what a case may observe of
each: `Backend` drives a store (`worker/_store_api.RunStore`) and `Probe` reads
its messages and schedules back, from SQS and Scheduler on the moto server or
from the fake's records, in one shape. `covers` names the store members a case
holds to the contract; `test_every_member_has_a_case` fails for a member that
no case names."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from orchestrator.model import DEFAULT_TASK_QUEUE, Run, Status
from tests.fakes.memory_store import InMemoryStore
from worker._store import AsyncStore, Refused
from worker._store_api import RunStore

LEASE = 3000

F = TypeVar("F", bound=Callable[..., Any])


def covers(*members: str) -> Callable[[F], F]:
    """Mark a contract case as holding `members` of `RunStore` to the contract."""

    def mark(case: F) -> F:
        case.covers = members  # type: ignore[attr-defined]
        return case

    return mark


def protocol_members() -> set[str]:
    """Every attribute and method `RunStore` declares."""
    declared = set(RunStore.__annotations__) | set(vars(RunStore))
    return {m for m in declared if not m.startswith("_")}


Message = tuple[str, str, str]  # (receipt, workflow id, reason)


class Probe(Protocol):
    async def receive(self, task_queue: str | None) -> list[Message]:
        """Take every message ready on the queue (each stays in flight until
        deleted or made visible again)."""

    async def in_flight(self, task_queue: str | None) -> int: ...

    async def delayed(self, task_queue: str | None) -> int: ...

    async def schedules(self) -> set[str]: ...

    async def settle(self) -> None:
        """Let the requests the store batches go out (the deletes)."""

    async def expiring(self, workflow_id: str) -> set[int]:
        """The seqs of the run's signals no wait consumed that were given a TTL."""


class MotoProbe:
    def __init__(self, store: AsyncStore, scheduler: Any) -> None:
        self._store = store
        self._scheduler = scheduler

    async def receive(self, task_queue: str | None) -> list[Message]:
        out: list[Message] = []
        while batch := await self._store.receive(10, 0, 600, task_queue):
            for m in batch:
                body = json.loads(m["Body"])
                out.append((m["ReceiptHandle"], body["id"], body["reason"]))
        return out

    async def _count(self, task_queue: str | None, attribute: str) -> int:
        resp = await self._store.sqs.get_queue_attributes(
            QueueUrl=self._store.settings.queue_url_for(task_queue), AttributeNames=[attribute]
        )
        return int(resp["Attributes"][attribute])

    async def in_flight(self, task_queue: str | None) -> int:
        return await self._count(task_queue, "ApproximateNumberOfMessagesNotVisible")

    async def delayed(self, task_queue: str | None) -> int:
        return await self._count(task_queue, "ApproximateNumberOfMessagesDelayed")

    async def schedules(self) -> set[str]:
        group = self._store.settings.schedule_group
        resp = await self._scheduler.list_schedules(GroupName=group)
        return {s["Name"] for s in resp["Schedules"]}

    async def settle(self) -> None:
        await self._store.close()

    async def expiring(self, workflow_id: str) -> set[int]:
        resp = await self._store.ddb.query(
            TableName=self._store.settings.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :sig)",
            ExpressionAttributeValues={":pk": {"S": f"WF#{workflow_id}"}, ":sig": {"S": "SIG#"}},
            ConsistentRead=True,
        )
        return {
            int(i["seq"]["N"])
            for i in resp["Items"]
            if "expires_at" in i and "consumed_at" not in i
        }


class FakeProbe:
    """Reads the fake's records as a queue: a message sent without delay is ready
    until received, in flight from then on until its receipt is deleted or made
    visible again (visibility 0)."""

    def __init__(self, fake: InMemoryStore) -> None:
        self._fake = fake
        self._handed: dict[str, int] = {}  # receipt -> index in fake.sent

    def _receipts(self, index: int) -> list[str]:
        return [r for r, i in self._handed.items() if i == index]

    def _gone(self, index: int) -> bool:
        return any(r in self._fake.deleted_messages for r in self._receipts(index))

    def _held(self, index: int) -> bool:
        receipts = self._receipts(index)
        return bool(receipts) and (receipts[-1], 0) not in self._fake.visibility

    def _on(self, task_queue: str | None) -> list[tuple[int, int]]:
        """(index, delay) of the messages sent to the queue."""
        queue = task_queue or DEFAULT_TASK_QUEUE
        return [
            (i, delay)
            for i, (_, _, q, delay) in enumerate(self._fake.sent)
            if (q or DEFAULT_TASK_QUEUE) == queue
        ]

    async def receive(self, task_queue: str | None) -> list[Message]:
        out: list[Message] = []
        for i, delay in self._on(task_queue):
            if delay or self._gone(i) or self._held(i):
                continue
            receipt = f"m{i}-{len(self._handed)}"
            self._handed[receipt] = i
            workflow_id, reason, _, _ = self._fake.sent[i]
            out.append((receipt, workflow_id, reason))
        return out

    async def in_flight(self, task_queue: str | None) -> int:
        return sum(1 for i, _ in self._on(task_queue) if self._held(i) and not self._gone(i))

    async def delayed(self, task_queue: str | None) -> int:
        return sum(1 for _, delay in self._on(task_queue) if delay)

    async def schedules(self) -> set[str]:
        return set(self._fake.schedules)

    async def settle(self) -> None:
        return None

    async def expiring(self, workflow_id: str) -> set[int]:
        return set(self._fake.expired.get(workflow_id, set()))


@dataclass
class Backend:
    kind: str  # "fake" or "moto"
    store: RunStore
    deliver: Any  # (workflow_id, name, payload) -> woke
    now: int
    probe: Probe

    async def create(self, run_id: str, name: str = "count", task_queue: str | None = None) -> None:
        run = Run(
            id=run_id,
            name=name,
            status=Status.PENDING,
            input="{}",
            created_at=self.now,
            updated_at=self.now,
            task_queue=task_queue,
        )
        _, created = await self.store.create_run(run)
        assert created

    async def claim(self, run_id: str, owner: str, now: int, **kw: Any) -> Run | Refused:
        kw.setdefault("names", ["count"])
        return await self.store.claim(run_id, owner=owner, now=now, lease_ms=LEASE, **kw)
