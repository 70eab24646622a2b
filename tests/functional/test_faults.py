"""The fault-injection layer (orchestrator/testing_faults), the SDK retry policy,
and regression tests for the bugs the chaos campaign found with it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aioboto3
import boto3
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from orchestrator import resources as r
from orchestrator import testing_faults as faults
from orchestrator.aws import CLIENT_CONFIG, RETRIES, async_client_kwargs, client
from orchestrator.local.aws import MotoServer
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from tests.conftest import executions
from tests.helpers import ROOT, wait_for, wait_status
from tests.workflows import ALL

TABLE = "faults-probe"


@pytest.fixture(autouse=True)
def _fresh_plans(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(faults.ENV_FAULTS, raising=False)
    faults.reset()
    yield
    faults.reset()


@pytest.fixture
def aws(moto_server: MotoServer) -> dict[str, Any]:
    moto_server.reset()
    kw = {"region_name": "us-east-1", "endpoint_url": moto_server.url}
    ddb = boto3.client("dynamodb", **kw)
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    queue = boto3.client("sqs", **kw).create_queue(QueueName="faults-probe")["QueueUrl"]
    return {"kw": kw, "ddb": ddb, "queue": queue}


def _stored(aws: dict[str, Any], key: str) -> bool:
    return "Item" in aws["ddb"].get_item(TableName=TABLE, Key={"pk": {"S": key}})


def _put(c: Any, key: str) -> Any:
    return c.put_item(
        TableName=TABLE, Item={"pk": {"S": key}}, ConditionExpression="attribute_not_exists(pk)"
    )


def _rule(kind: str, op: str = "dynamodb.PutItem", **extra: Any) -> str:
    return json.dumps({"rules": [{"kind": kind, "op": op, **extra}], "latency_ms": [300, 300]})


# --- configuration --------------------------------------------------------------------------------
def test_inactive_unless_the_variable_is_set(aws: dict[str, Any]) -> None:
    c = boto3.client("dynamodb", **aws["kw"])
    assert faults.install(c) is None
    assert faults.install(c, "  ") is None
    _put(c, "plain")  # no hooks: the call goes through untouched
    assert faults.stats() == {}


def test_the_spec_is_json_or_key_value_and_mistakes_are_refused() -> None:
    kv = faults.parse("seed=7,throttle=0.02,5xx=0.01,ops=dynamodb.*|sqs.SendMessage,log=/tmp/x")
    js = faults.parse('{"seed": 7, "throttle": 0.02, "5xx": 0.01, "ops": ["dynamodb.*"]}')
    assert kv.rates == js.rates == {"throttle": 0.02, "5xx": 0.01}
    assert kv.ops == ["dynamodb.*", "sqs.SendMessage"] and kv.log == "/tmp/x"
    assert faults.parse("latency=1,latency_ms=10-20").latency_ms == (10.0, 20.0)
    assert faults.parse("scope=attempt,5xx=0.1").attempt_rates == {"5xx": 0.1}
    assert faults.parse('{"attempt": {"conn": 0.2}}').attempt_rates == {"conn": 0.2}
    for bad in (
        "explode=0.1",
        "throttle=2",
        "scope=sometimes",
        "throttle",
        "{not json",
        "[1]",
        "attempt.lost=0.1",
    ):
        with pytest.raises(ValueError):
            faults.parse(bad)


_PRODUCTION_IMPORTS = (
    "import orchestrator.api.app, orchestrator.api.lambda_handler, orchestrator.sweeper, "
    "orchestrator.cli, worker; from orchestrator.aws import client; "
    "from orchestrator.settings import Settings; "
    "client('dynamodb', Settings(endpoint_url='http://127.0.0.1:1')); "
    "import sys; print('orchestrator.testing_faults' in sys.modules)"
)


@pytest.mark.parametrize("spec, loaded", [(None, "False"), ("seed=1", "True")])
def test_the_fault_layer_is_loaded_only_when_the_test_tooling_asks_for_it(
    spec: str | None, loaded: str
) -> None:
    """Production modules do not import orchestrator.testing_faults; the client
    hook (aws.instrument) loads it only when ORCHESTRATOR_FAULTS is set."""
    env = {k: v for k, v in os.environ.items() if k != r.ENV_FAULTS}
    if spec is not None:
        env[r.ENV_FAULTS] = spec
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", _PRODUCTION_IMPORTS],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == loaded


# --- each kind, on a boto3 client and on an aioboto3 session -----------------------------------------
CASES = [
    # kind, error it raises (None: succeeds), whether the write was applied
    ("throttle", "ProvisionedThroughputExceededException", False),
    ("5xx", "InternalServerError", False),
    ("conn", "EndpointConnectionError", False),
    ("lost", "ConnectionClosedError", True),
    ("lost_retry", "ConditionalCheckFailedException", True),  # the SDK re-sent it
    ("latency", None, True),
]


def _name(e: BaseException) -> str:
    if isinstance(e, ClientError):
        return str(e.response["Error"]["Code"])
    return type(e).__name__


@pytest.mark.parametrize(("kind", "error", "applied"), CASES)
def test_each_fault_kind_on_a_boto3_client(
    aws: dict[str, Any],
    kind: str,
    error: str | None,
    applied: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator.testing_faults import hooks

    slept: list[float] = []  # the hook's delays (time.sleep in a synchronous client)
    monkeypatch.setattr(
        hooks, "time", SimpleNamespace(sleep=lambda s: (slept.append(s), time.sleep(s)))
    )
    c = boto3.client("dynamodb", config=CLIENT_CONFIG, **aws["kw"])
    faults.install(c, _rule(kind))
    if error is None:
        _put(c, kind)
    else:
        with pytest.raises((ClientError, EndpointConnectionError, ConnectionClosedError)) as e:
            _put(c, kind)
        assert _name(e.value) == error
    assert _stored(aws, kind) is applied
    assert faults.stats() == {kind: 1}
    _put(c, f"{kind}-after")  # the rule fired once; later calls are clean
    assert slept == ([0.3] if kind == "latency" else [])


@pytest.mark.parametrize(("kind", "error", "applied"), CASES)
async def test_each_fault_kind_on_an_aioboto3_session(
    aws: dict[str, Any], kind: str, error: str | None, applied: bool
) -> None:
    session = aioboto3.Session()
    faults.install(session, _rule(kind))
    async with session.client("dynamodb", config=AioConfig(retries=RETRIES), **aws["kw"]) as c:
        if kind == "latency":
            await _put(c, kind)
        else:
            with pytest.raises((ClientError, EndpointConnectionError, ConnectionClosedError)) as e:
                await _put(c, kind)
            assert _name(e.value) == error
        assert _stored(aws, kind) is applied
        assert faults.stats() == {kind: 1}
        await _put(c, f"{kind}-after")


async def test_an_async_latency_lets_the_loop_run_meanwhile(aws: dict[str, Any]) -> None:
    """asyncio.sleep, not time.sleep: other tasks run while a call waits out its
    latency. An hour's: the test sees the call waiting, then cancels it (a
    blocking sleep would hold the loop, and the test, until its timeout)."""
    session = aioboto3.Session()
    spec = json.loads(_rule("latency"))
    faults.install(session, json.dumps({**spec, "latency_ms": [3_600_000, 3_600_000]}))
    async with session.client("dynamodb", config=AioConfig(retries=RETRIES), **aws["kw"]) as c:
        call = asyncio.create_task(_put(c, "latency"))
        while faults.stats() != {"latency": 1}:  # the call is waiting out its latency
            await asyncio.sleep(0.01)
        assert not call.done()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert _stored(aws, "latency") is False  # never sent


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


@pytest.mark.parametrize("kind", ["throttle", "5xx", "conn"])
def test_a_call_failing_every_attempt_is_tried_five_times_then_raises(
    aws: dict[str, Any], kind: str, no_backoff: None
) -> None:
    c = client("dynamodb", _settings(aws))
    faults.install(c, f"attempt.{kind}=1.0")
    with pytest.raises((ClientError, EndpointConnectionError)):
        _put(c, kind)
    assert faults.stats() == {f"attempt.{kind}": 5}


async def test_the_worker_clients_try_five_times_too(aws: dict[str, Any], no_backoff: None) -> None:
    session = aioboto3.Session()
    faults.install(session, "attempt.throttle=1.0")
    kw = async_client_kwargs(_settings(aws), max_pool_connections=20)  # as Worker._open builds them
    async with session.client("dynamodb", **kw) as c:
        with pytest.raises(ClientError):
            await _put(c, "aio")
    assert faults.stats() == {"attempt.throttle": 5}


def _settings(aws: dict[str, Any]) -> Any:
    from orchestrator.settings import Settings

    return Settings(endpoint_url=aws["kw"]["endpoint_url"], region=aws["kw"]["region_name"])


@pytest.mark.parametrize("kind", ["throttle", "5xx", "conn"])
def test_attempt_scope_faults_are_retried_by_the_sdk_standard_mode(
    aws: dict[str, Any], kind: str, no_backoff: None
) -> None:
    c = boto3.client("dynamodb", config=CLIENT_CONFIG, **aws["kw"])
    faults.install(c, f"scope=attempt,{kind}=0.5,seed=3")
    retried = 0
    for i in range(6):
        resp = _put(c, f"{kind}-{i}")
        retried += resp["ResponseMetadata"]["RetryAttempts"]
    assert faults.stats()[f"attempt.{kind}"] == retried > 0  # each injected attempt retried


async def test_attempt_scope_faults_are_retried_on_aioboto3_too(
    aws: dict[str, Any], no_backoff: None
) -> None:
    session = aioboto3.Session()
    faults.install(session, "attempt.throttle=0.5,attempt.5xx=0.2,seed=5")
    async with session.client("dynamodb", config=AioConfig(retries=RETRIES), **aws["kw"]) as c:
        retried = 0
        for i in range(6):
            resp = await _put(c, f"a-{i}")
            retried += resp["ResponseMetadata"]["RetryAttempts"]
    assert sum(faults.stats().values()) == retried > 0


def test_sqs_faults_and_duplicate_deliveries(aws: dict[str, Any]) -> None:
    sqs = boto3.client("sqs", config=CLIENT_CONFIG, **aws["kw"])
    faults.install(sqs, '{"duplicate": 1.0, "rules": [{"kind": "throttle", "op": "sqs.*"}]}')
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=aws["queue"], MessageBody="one")
    assert e.value.response["Error"]["Code"] == "ThrottlingException"
    sqs.send_message(QueueUrl=aws["queue"], MessageBody="one")
    first = sqs.receive_message(QueueUrl=aws["queue"], WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in first] == ["one"]
    # The duplicate was sent again: a second, independent copy with its own receipt.
    plain = boto3.client("sqs", **aws["kw"])
    second = plain.receive_message(QueueUrl=aws["queue"], WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in second] == ["one"]
    assert second[0]["ReceiptHandle"] != first[0]["ReceiptHandle"]


def test_copy_mode_adds_the_duplicate_to_the_same_response(aws: dict[str, Any]) -> None:
    sqs = boto3.client("sqs", **aws["kw"])
    faults.install(sqs, '{"duplicate": 1.0, "duplicate_mode": "copy"}')
    sqs.send_message(QueueUrl=aws["queue"], MessageBody="two")
    got = sqs.receive_message(QueueUrl=aws["queue"], WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in got] == ["two", "two"]
    assert got[0]["ReceiptHandle"] == got[1]["ReceiptHandle"]


def test_the_fault_log_and_the_write_journal(aws: dict[str, Any], tmp_path: Path) -> None:
    log, journal = tmp_path / "faults.jsonl", tmp_path / "journal.jsonl"
    c = boto3.client("dynamodb", **aws["kw"])
    spec = {"rules": [{"kind": "lost", "op": "dynamodb.PutItem"}]}
    faults.install(c, json.dumps({**spec, "log": str(log), "journal": str(journal)}))
    with pytest.raises(ConnectionClosedError):
        _put(c, "j1")
    _put(c, "j2")
    with pytest.raises(ClientError):
        _put(c, "j2")  # refused by its condition: journaled as refused
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["kind"], x["op"]) for x in lines] == [("lost", "dynamodb.PutItem")]
    writes = [json.loads(x) for x in journal.read_text().splitlines()]
    # The lost one was applied; the third was refused.
    assert [(w["pk"], w.get("refused")) for w in writes] == [
        ("j1", None),
        ("j2", None),
        ("j2", "ConditionalCheckFailedException"),
    ]
    assert all(w["t0"] <= w["t1"] for w in writes)


# --- regressions found by the campaign ---------------------------------------------------------------
@pytest.mark.parametrize(("kind", "runs_of_s1"), [("5xx", 2), ("lost", 1)])
def test_a_store_error_in_a_durable_call_does_not_fail_the_run(
    stack: Any, exec_log: Path, monkeypatch: pytest.MonkeyPatch, kind: str, runs_of_s1: int
) -> None:
    """Found by the campaign: a DynamoDB error that outlived the SDK's retries
    inside ctx.step (the outcome's put) reached workflow code as an exception
    and failed the run ("failed: InternalServerError"). Now the worker abandons
    the claim and the run resumes after its lease."""
    rule = {"kind": kind, "op": "dynamodb.PutItem", "match": "STEP#000001"}
    monkeypatch.setenv(faults.ENV_FAULTS, json.dumps({"rules": [rule]}))
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("count", {"steps": 3})  # after the worker: no kick
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert done.status == Status.COMPLETED, done.error
    assert json.loads(done.output or "") == {"results": [0, 1, 2]}
    assert faults.stats() == {kind: 1}
    ran = executions(exec_log)
    # 5xx: the put never landed, so s1 runs again; lost: it landed and is replayed.
    assert ran.count(f"{run.id}:s1") == runs_of_s1
    assert ran.count(f"{run.id}:s0") == 1
    assert done.epoch == 2  # resumed by a second claim, after the lease


def _long_lease(stack: Any) -> Any:
    """The settings of a worker whose claims must be the only ones (the tests count
    epochs): its lease outlasts any late heartbeat. The tier's 3 s one could run
    out on a loaded machine between a claim and the first heartbeat, which comes
    only once the claim's answer is in (1.5 s late when the answer is lost), and a
    copy of the message would then claim the run again."""
    return stack.settings.with_(lease_seconds=30)


def test_a_claim_whose_answer_was_lost_is_run_by_its_claimer(
    stack: Any, exec_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the campaign: the claim was applied, its answer lost, and the
    SDK's retry refused by the lease the claim had just taken. The worker took
    that for a live owner's duplicate, deleted the message, and the run sat
    unowned until the sweeper's 5-minute re-check of running runs."""
    rule = {"kind": "lost_retry", "op": "dynamodb.UpdateItem", "match": "#ep = #ep + :one"}
    faults.reset()  # plans are per process and keyed by spec: start from a fresh one
    monkeypatch.setenv(faults.ENV_FAULTS, json.dumps({"rules": [rule]}))
    with BackgroundWorker(ALL, _long_lease(stack), clock=stack.clock):
        # Started after the worker: a run created before it would also get the
        # start-up kick's message, and a second claim could take the rule first
        # (refused, so no answer to lose).
        run, _ = stack.service.start("count", {"steps": 2})
        # The bug left the run unowned until the sweeper's 5-minute re-check (the
        # clock is not advanced here), so it could not complete at all; a second
        # claim after the lease would show as epoch 2.
        done = wait_status(stack, run.id, "completed", timeout=30)
    assert faults.stats() == {"lost_retry": 1}
    assert done.epoch == 1  # one claim: its own
    assert sorted(executions(exec_log)) == [f"{run.id}:s0", f"{run.id}:s1"]


def test_a_lost_claim_answer_is_run_even_if_a_copy_of_the_message_arrives_meanwhile(
    stack: Any, exec_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the campaign (seed 2): while the SDK waited to re-send a claim whose
    answer was lost, a duplicate of the message reached the same worker. The
    first fix then refused to recognize the claim as its own (another task had
    touched the run) and the run sat unowned for five minutes. A claim is now
    recognized by its own `now`, which no other task of the worker used."""
    rule = {
        "kind": "lost_retry",
        "op": "dynamodb.UpdateItem",
        "match": "#ep = #ep + :one",
        "retry_after_ms": 1500,
    }
    faults.reset()
    monkeypatch.setenv(faults.ENV_FAULTS, json.dumps({"rules": [rule]}))
    with BackgroundWorker(ALL, _long_lease(stack), clock=stack.clock):
        run, _ = stack.service.start("count", {"steps": 2})  # after the worker: no kick
        # Applied; the answer is dropped (counted in this process at that moment)
        # and the SDK waits 1.5 s before re-sending. Waiting on the count, not on
        # the stored status, cannot miss that window on a loaded machine.
        wait_for(lambda: faults.stats().get("lost_retry") == 1, timeout=30)
        stack.dispatcher.send(run.id, "duplicate")  # a copy, claimed and refused meanwhile
        # The bug left the run unowned until the sweeper's 5-minute re-check (the
        # clock is not advanced here); 30 s tells the two apart on a loaded machine.
        done = wait_status(stack, run.id, "completed", timeout=30)
    assert faults.stats() == {"lost_retry": 1}
    assert done.epoch == 1
    assert sorted(executions(exec_log)) == [f"{run.id}:s0", f"{run.id}:s1"]


def test_a_redelivered_message_of_a_live_owner_is_kept_until_its_lease_ends(
    stack: Any, exec_log: Path
) -> None:
    """Found by the campaign (seed 4, doubled rates): an owner paused between its
    receive and its claim claimed with a message whose visibility had lapsed;
    another worker received that message meanwhile, was refused by the live
    lease, and deleted it as a duplicate. The owner then died: no message, and
    the run waited five minutes for the sweeper. A message delivered before is
    now kept until the lease would expire."""
    from orchestrator.store import requests as q

    run, _ = stack.service.start("count", {"steps": 2})
    url = stack.settings.queue_url
    first = stack.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=0)
    assert len(first["Messages"]) == 1  # the owner's receive; visible again at once (lapsed)
    stack.ddb.update_item(  # the owner's claim, whose process then dies
        **q.claim(
            stack.settings.table,
            run.id,
            owner="owner-that-dies",
            now=stack.clock.now_ms(),
            lease_ms=3000,
            names=["count"],
        )
    )
    with BackgroundWorker(ALL, _long_lease(stack), clock=stack.clock):
        # Refused while the lease lives, kept, claimed once it has expired.
        done = wait_status(stack, run.id, "completed", timeout=15)
    assert done.epoch == 2
    assert sorted(executions(exec_log)) == [f"{run.id}:s0", f"{run.id}:s1"]


async def test_an_owner_whose_lease_runs_out_while_a_step_write_waits_sends_nothing(
    stack: Any,
) -> None:
    """Found by the campaign: an owner SIGSTOPped between its lease check and the
    step outcome's put woke after another worker had claimed the run, and its put
    (which no condition fences) landed: a step record by a fenced-off owner. The
    owner now checks its lease view again right before each HTTP attempt."""
    from worker._context import WorkflowContext
    from worker._parking import Parker
    from worker._scope import start_root
    from worker._state import LeaseLost, RunState
    from worker._store import AsyncStore

    # The delay stands in for the pause: it sits between the check and the send.
    rule = {"kind": "latency", "op": "dynamodb.PutItem", "match": "STEP#000000"}
    session = aioboto3.Session()
    faults.install(session, json.dumps({"rules": [rule], "latency_ms": [800, 800]}))
    run, _ = stack.service.start("count", {"steps": 1})
    kw = {"region_name": stack.settings.region, "endpoint_url": stack.settings.endpoint_url}
    async with (
        session.client("dynamodb", **kw) as ddb,
        session.client("sqs", **kw) as sqs,
        session.client("scheduler", **kw) as scheduler,
    ):
        store = AsyncStore(ddb, sqs, scheduler, stack.settings)
        now = stack.clock.now_ms()
        state = RunState(
            workflow_id=run.id,
            name="count",
            epoch=1,
            signal_seq=0,
            lease_until=now + 600,  # valid at the check (margin 100 ms), gone at the send
            history={},
            store=store,
            clock=stack.clock,
            lease_ms=600,
        )
        state.parker = Parker(state)
        with pytest.raises(LeaseLost):
            await start_root(state, WorkflowContext(state).step("s0", lambda: 1))
    assert faults.stats() == {"latency": 1}
    assert stack.store.steps(run.id) == []  # never sent
