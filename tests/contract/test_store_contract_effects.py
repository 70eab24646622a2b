"""The store contract, continued (see test_store_contract.py): the messages a
store sends to SQS, visibility changes and deletes, timers and their
schedules, a pinned build's queue, reads of many runs, the value codec, and
the raw DynamoDB requests. The fake records messages and schedules instead of
sending them; the probes (backends.py) read both back in one shape. The fake
does not keep raw DynamoDB requests (`ddb`, `transact`, `update`): their
cases run on moto only, and assert that the fake refuses them with
`NotInTheFake`, so the gap is explicit."""

from __future__ import annotations

import json
import sys
from collections import Counter

import pytest

from orchestrator.dispatch import schedule_name
from orchestrator.model import Run, Status
from orchestrator.settings import Settings
from orchestrator.store.codec import run_key, to_attr, to_item
from tests.contract import test_store_contract as runs_contract
from tests.contract.backends import Backend, covers, protocol_members
from tests.fakes.memory_store import NotInTheFake


# --- messages ---------------------------------------------------------------------------------
@covers("send", "send_many")
async def test_sends_reach_the_named_task_queue_and_a_delay_holds_the_message(
    backend: Backend,
) -> None:
    s, probe = backend.store, backend.probe
    await s.send("r1", "start", None)
    await s.send("r2", "wake", "default")  # the default task queue, by its name
    ids = [f"m{i:02}" for i in range(12)]  # more than one SendMessageBatch (ten)
    await s.send_many(ids, "sweep")
    await s.send("r3", "later", None, delay_s=900)
    got = Counter((wid, reason) for _, wid, reason in await probe.receive(None))
    expected = Counter([("r1", "start"), ("r2", "wake")] + [(i, "sweep") for i in ids])
    assert got == expected
    assert await probe.receive(None) == []  # each in flight now, none twice
    assert (await probe.in_flight(None), await probe.delayed(None)) == (14, 1)


@covers("ensure_queue", "send_many")
async def test_a_pinned_builds_queue_is_made_once_and_takes_its_runs_messages(
    backend: Backend,
) -> None:
    s, probe = backend.store, backend.probe
    await s.ensure_queue("default@b1")
    await s.ensure_queue("default@b1")  # already there: nothing to do
    await s.send("r1", "start", "default@b1")
    await s.send_many(["r2", "r3"], "sweep", "default@b1")
    got = sorted((wid, reason) for _, wid, reason in await probe.receive("default@b1"))
    assert got == [("r1", "start"), ("r2", "sweep"), ("r3", "sweep")]
    assert await probe.receive(None) == []  # nothing went to the task queue itself


@covers("delete_message", "set_visibility")
async def test_a_message_comes_back_when_made_visible_and_never_once_deleted(
    backend: Backend,
) -> None:
    s, probe = backend.store, backend.probe
    await s.send("r1", "start", None)
    await s.send("r2", "start", None)
    first = {wid: receipt for receipt, wid, _ in await probe.receive(None)}
    assert sorted(first) == ["r1", "r2"]
    await s.set_visibility(first["r1"], 0)  # handed back: ready at once
    ((again, wid, _),) = await probe.receive(None)
    assert wid == "r1"
    await s.delete_message(again)
    await s.delete_message(first["r2"])
    await probe.settle()
    assert await probe.receive(None) == []
    assert await probe.in_flight(None) == 0  # both gone, not merely hidden


# --- timers -----------------------------------------------------------------------------------
@covers("arrange_timer", "delete_schedule")
async def test_a_timer_is_a_delayed_message_or_one_schedule_until_deleted(
    backend: Backend,
) -> None:
    t, s, probe = backend.now, backend.store, backend.probe
    await backend.create("r1")
    await backend.claim("r1", "w1", t)
    # Within SQS's fifteen minutes: a delayed message to the run's queue.
    assert await s.arrange_timer("r1", "0", 0, now=t, wake_at=t + 600_000) == "delay"
    assert (await probe.delayed(None), await probe.schedules()) == (1, set())
    # Further: one schedule, named by the run, the operation and the attempt; a
    # retried arrangement finds it there and makes no second one.
    hour = t + 3_600_000
    assert await s.arrange_timer("r1", "1", 2, now=t, wake_at=hour) == "schedule"
    assert await s.arrange_timer("r1", "1", 2, now=t, wake_at=hour) == "schedule"
    assert await s.arrange_timer("r1", "1", 3, now=t, wake_at=hour) == "schedule"
    names = {schedule_name("r1", "1", 2), schedule_name("r1", "1", 3)}
    assert await probe.schedules() == names
    await s.delete_schedule(schedule_name("r1", "1", 2))
    await s.delete_schedule(schedule_name("r1", "1", 2))  # gone already: no error
    assert await probe.schedules() == {schedule_name("r1", "1", 3)}
    assert await probe.delayed(None) == 1  # the schedules sent no message


# --- runs and values --------------------------------------------------------------------------
@covers("create_run", "get_runs", "get_run")
async def test_a_run_is_created_once_and_read_back_alone_or_among_many(backend: Backend) -> None:
    s = backend.store
    await backend.create("a")
    await backend.create("b", task_queue="gpu")
    again = Run(
        id="a", name="other", status=Status.PENDING, input='{"x":1}', created_at=1, updated_at=1
    )
    existing, created = await s.create_run(again)
    assert not created and (existing.name, existing.input) == ("count", "{}")  # as stored
    assert await s.get_run("missing") is None
    # More ids than one BatchGetItem takes (100), the runs on both sides of the cut.
    ids = [f"x{i}" for i in range(150)]
    ids[0], ids[120] = "a", "b"
    found = await s.get_runs(ids, consistent=True)
    assert sorted(found) == ["a", "b"]
    assert (found["b"].name, found["b"].task_queue, found["b"].status) == (
        "count",
        "gpu",
        Status.PENDING,
    )
    assert found["a"] == await s.get_run("a")
    assert await s.get_runs([]) == {}


@covers("settings", "values")
async def test_values_pass_through_the_stores_codec(backend: Backend) -> None:
    s = backend.store
    assert isinstance(s.settings, Settings) and s.settings.table
    text = json.dumps({"n": 1})
    stored = await s.values.put(text, what="a test value")
    assert stored is not None and await s.values.get(stored) == text
    assert await s.values.put(None, what="nothing") is None


# --- raw DynamoDB: on moto only; the fake refuses ----------------------------------------------
@covers("ddb", "transact", "update")
async def test_raw_requests_reach_dynamodb_and_the_fake_refuses_them(backend: Backend) -> None:
    s = backend.store
    if backend.kind == "fake":
        with pytest.raises(NotInTheFake):
            _ = s.ddb
        with pytest.raises(NotInTheFake):
            await s.transact({})
        with pytest.raises(NotInTheFake):
            await s.update({})
        return
    table = s.settings.table
    described = await s.ddb.describe_table(TableName=table)
    assert described["Table"]["TableName"] == table
    await backend.create("r1")
    marker = to_item({"pk": "CONTRACT", "sk": "one"})
    put = {
        "TransactItems": [
            {
                "Put": {
                    "TableName": table,
                    "Item": marker,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
    }
    assert await s.transact(put) is None
    reasons = await s.transact(put)  # its condition fails: the reasons, not an error
    assert reasons is not None and "ConditionalCheckFailed" in reasons

    def touch(expected: Status) -> dict[str, object]:
        return {
            "TableName": table,
            "Key": run_key("r1"),
            "UpdateExpression": "SET #ua = :now",
            "ConditionExpression": "#st = :st",
            "ExpressionAttributeNames": {"#ua": "updated_at", "#st": "status"},
            "ExpressionAttributeValues": {
                ":now": to_attr(backend.now + 5),
                ":st": to_attr(expected.value),
            },
            "ReturnValues": "ALL_NEW",
        }

    run = await s.update(touch(Status.PENDING))
    assert run is not None and (run.id, run.updated_at) == ("r1", backend.now + 5)
    assert await s.update(touch(Status.RUNNING)) is None  # its condition failed


# --- coverage ---------------------------------------------------------------------------------
def test_every_member_of_the_store_interface_has_a_contract_case() -> None:
    """A member added to `RunStore` without a case here fails this test."""
    modules = [runs_contract, sys.modules[__name__]]
    covered = {
        member
        for module in modules
        for name, case in vars(module).items()
        if name.startswith("test_") and callable(case)
        for member in getattr(case, "covers", ())
    }
    members = protocol_members()
    assert len(members) == 31  # 29 methods and properties, and `settings`, `values`
    assert members - covered == set(), "members of RunStore without a contract case"
    assert covered - members == set(), "cases naming what RunStore does not have"
