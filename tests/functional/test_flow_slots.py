"""Flow-control slots held by several handlers of one run (the claim's owner,
copies of its message, the next claim after a park): each handler gives back
only the token its own acquire added, in whatever order they end, and the slot
goes with the last one (`orchestrator/store/flow.py`)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import aioboto3

from orchestrator import testing_faults as faults
from orchestrator.client import Client
from orchestrator.local import LocalStack
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.store.codec import run_key
from orchestrator.store.flow import flow_key
from tests.helpers import wait_for
from worker import workflow
from worker._flow import FlowControl, Slot


class _FrozenClock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


def _in_flight(client: Client) -> int:
    return int(client.queues()[0]["in_flight"])


def test_each_handler_of_a_run_gives_back_only_its_own_slot(stack: LocalStack) -> None:
    """Every order in which two or three handlers of one run take the slot (in
    one millisecond) and give it back: the slot stays while one holds it."""
    client = Client(stack.api_url)
    client.set_queue_limits("default", max_concurrency=1)

    async def scenario() -> list[int]:
        kw = {"region_name": stack.settings.region, "endpoint_url": stack.settings.endpoint_url}
        seen = []
        async with aioboto3.Session().client("dynamodb", **kw) as ddb:
            flow = FlowControl(ddb, stack.settings.table, _FrozenClock(stack.clock.now_ms()), 3000)

            async def take(run_id: str) -> Slot:
                go, slot = await flow.acquire("default", run_id)
                assert go and slot is not None
                return slot

            # A copy of the message; either handler may be the one whose claim wins.
            for first in (0, 1):
                pair = [await take("r1"), await take("r1")]
                assert pair[0].token != pair[1].token
                await flow.release(pair[first])
                seen.append(_in_flight(client))  # 1: the other one holds it
                await flow.release(pair[1 - first])
                seen.append(_in_flight(client))  # 0
            # The owner parks; the next claim takes the slot before the parked
            # owner's release arrives.
            parked, woken = await take("r2"), await take("r2")
            await flow.release(parked)
            seen.append(_in_flight(client))  # 1: the woken claim's
            await flow.release(woken)
            seen.append(_in_flight(client))  # 0
            # Two copies take the slot while the owner runs, and are refused in the
            # order they took it (what left a slot behind with one token per run).
            owner, first_copy, second_copy = await take("r3"), await take("r3"), await take("r3")
            await flow.release(first_copy)
            await flow.release(second_copy)
            seen.append(_in_flight(client))  # 1: the owner's
            await flow.release(owner)
            seen.append(_in_flight(client))  # 0
            await flow.release(owner)  # a release sent twice changes nothing
            seen.append(_in_flight(client))  # 0
        return seen

    assert asyncio.run(scenario()) == [1, 0, 1, 0, 1, 0, 1, 0, 0]


def test_an_acquire_and_a_release_whose_answers_were_lost_hold_and_free_the_slot(
    stack: LocalStack,
) -> None:
    """The SDK sends each write again after its answer was lost: the acquire's
    second try finds its own token (not another handler's), and the release's
    finds it gone."""
    client = Client(stack.api_url)
    client.set_queue_limits("default", max_concurrency=1)
    rules = [
        {"kind": "lost_retry", "op": "dynamodb.UpdateItem", "match": "SET #h.#run = :entry"},
        {"kind": "lost_retry", "op": "dynamodb.UpdateItem", "match": "REMOVE #h.#run"},
    ]

    async def scenario() -> list[int]:
        kw = {"region_name": stack.settings.region, "endpoint_url": stack.settings.endpoint_url}
        seen = []
        async with aioboto3.Session().client("dynamodb", **kw) as ddb:
            faults.install(ddb, json.dumps({"rules": rules}))
            flow = FlowControl(ddb, stack.settings.table, stack.clock, 3000)
            go, slot = await flow.acquire("default", "r1")
            assert go and slot is not None
            seen.append(_in_flight(client))  # 1
            assert (await flow.acquire("default", "r2"))[0] is False  # the queue is full
            await flow.release(slot)
            seen.append(_in_flight(client))  # 0
        return seen

    faults.reset()  # plans are per process: another test's would count here
    try:
        assert asyncio.run(scenario()) == [1, 0]
        assert faults.stats() == {"lost_retry": 2}
    finally:
        faults.reset()


# --- Copies of a running run's message, refused in the order they took the slot ---------
_STARTED = threading.Event()
_GO = threading.Event()


def _hold() -> None:
    _STARTED.set()
    _GO.wait(60)


@workflow("flow.gated")
async def _gated(ctx: Any) -> str:
    await ctx.step("hold", _hold)
    return "done"


class _Gate:
    """Holds the claims of the handlers that take the run's slot once armed,
    until `copies` of them have taken it; then lets them claim one at a time, in
    the order they took the slot, each after the one before has ended. Every
    handler's flow writes and claim pass through unchanged: only their order is
    forced."""

    def __init__(self, run_id: str, copies: int) -> None:
        self.run_key = run_key(run_id)
        self.flow_key = flow_key("default")
        self.copies = copies
        self.armed = False
        self.order: list[asyncio.Task[Any]] = []
        self.ended = 0
        # Made here, not at first use: the worker's heartbeat thread sends its own
        # requests through the gated session too (worker/_heartbeats.py), and two
        # threads making it at once would leave a waiter on a condition nobody
        # notifies. It binds to the runs' loop when first waited on.
        self._turn = asyncio.Condition()
        self._notifying: set[asyncio.Task[None]] = set()

    def _ended(self, _: asyncio.Task[Any]) -> None:
        self.ended += 1
        task = asyncio.get_running_loop().create_task(self._notify())
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def _notify(self) -> None:
        async with self._turn:
            self._turn.notify_all()

    async def before(self, request: dict[str, Any]) -> None:
        task = asyncio.current_task()
        if (
            not self.armed
            or task is None
            or threading.current_thread().name.startswith("heartbeats-")
        ):
            return  # the heartbeats' thread: its lease renewals pass unchanged
        if request["Key"] == self.flow_key and task not in self.order:
            self.order.append(task)  # its acquire
            task.add_done_callback(self._ended)
            await self._notify()
        elif request["Key"] == self.run_key and task in self.order:  # its claim
            mine = self.order.index(task)
            async with self._turn:
                await self._turn.wait_for(
                    lambda: len(self.order) >= self.copies and self.ended == mine
                )


class _GatedClient:
    def __init__(self, opened: Any, gate: _Gate) -> None:
        self._opened = opened
        self._gate = gate
        self._client: Any = None

    async def __aenter__(self) -> _GatedClient:
        self._client = await self._opened.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._opened.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def update_item(self, **request: Any) -> Any:
        await self._gate.before(request)
        return await self._client.update_item(**request)


class _GatedSession:
    def __init__(self, gate: _Gate) -> None:
        self._session = aioboto3.Session()
        self._gate = gate

    def client(self, service: str, **kw: Any) -> Any:
        opened = self._session.client(service, **kw)
        return _GatedClient(opened, self._gate) if service == "dynamodb" else opened


def test_copies_refused_in_the_order_they_took_the_slot_leave_none_behind(
    stack: LocalStack,
) -> None:
    """Found in the four-worker test: two copies of a running run's message each
    took the slot (each acquire overwrote the run's one token and remembered the
    one it replaced), then were refused in that order. The first put the owner's
    token back only if its own was still there (it was not); the second put back
    the first's. The owner's release, conditioned on its own token, then failed
    however often it was tried, and the dead token held the slot until a purge."""
    client = Client(stack.api_url)
    client.set_queue_limits("default", max_concurrency=1)
    _STARTED.clear()
    _GO.clear()
    run_id = client.start("flow.gated", {})["id"]
    gate = _Gate(run_id, copies=2)
    worker = BackgroundWorker(
        [_gated],
        stack.settings,
        clock=stack.clock,
        max_concurrent_workflows=4,
        session=_GatedSession(gate),
    ).start()
    try:
        wait_for(_STARTED.is_set, timeout=30)  # the owner holds the lease and the slot
        gate.armed = True
        stack.dispatcher.send(run_id, "duplicate")
        stack.dispatcher.send(run_id, "duplicate")
        wait_for(lambda: gate.ended >= 2, timeout=30)  # both refused, both gave back
        assert _in_flight(client) == 1  # the owner's, still running
        _GO.set()
        wait_for(lambda: client.get(run_id)["status"] == "completed", timeout=30)
    finally:
        _GO.set()
        worker.stop(grace=5)
    assert len(gate.order) >= 2
    assert _in_flight(client) == 0  # the owner's release, after a clean stop
