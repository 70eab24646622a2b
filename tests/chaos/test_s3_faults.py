"""S3 faults on the large-value codec's calls (PutObject, GetObject), on the moto
server: each kind gives the error S3 would, the engine reads every injected
error as transient (the run is abandoned and resumed, never failed), a lost
put was stored, and per-attempt faults are retried by the SDK. The journal
records each stored object and the pointers a write carries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioboto3
import boto3
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError, ConnectionClosedError

from orchestrator import testing_faults as faults
from orchestrator.aws import CLIENT_CONFIG, RETRIES, is_transient
from orchestrator.local.aws import MotoServer
from orchestrator.payloads import AsyncValues, pointer_of

BUCKET = "faults-values"
TEXT = json.dumps({"pad": "x" * 3000})  # above the 1 KB threshold: offloaded
POINTER, KEY = pointer_of(TEXT.encode())


@pytest.fixture(autouse=True)
def _fresh_plans(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(faults.ENV_FAULTS, raising=False)
    faults.reset()
    yield
    faults.reset()


@pytest.fixture
def kw(moto_server: MotoServer) -> dict[str, Any]:
    moto_server.reset()
    kw = {"region_name": "us-east-1", "endpoint_url": moto_server.url}
    boto3.client("s3", **kw).create_bucket(Bucket=BUCKET)
    return kw


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


def _stored(kw: dict[str, Any]) -> bool:
    try:
        boto3.client("s3", **kw).head_object(Bucket=BUCKET, Key=KEY)
        return True
    except ClientError:
        return False


def _code(e: BaseException) -> str:
    return str(e.response["Error"]["Code"]) if isinstance(e, ClientError) else type(e).__name__


def _rule(kind: str, op: str) -> str:
    return json.dumps({"rules": [{"kind": kind, "op": op}], "latency_ms": [50, 50]})


# kind, the error the caller sees (None: none), whether the put stored the object
PUT_CASES = [
    ("throttle", "SlowDown", False),
    ("5xx", "InternalError", False),
    ("conn", "EndpointConnectionError", False),
    ("lost", "ConnectionClosedError", True),
    ("lost_retry", None, True),  # stored, answer dropped, the SDK sent it again
    ("latency", None, True),
]


@pytest.mark.parametrize(("kind", "error", "stored"), PUT_CASES)
async def test_each_fault_kind_on_the_workers_put_of_a_large_value(
    kw: dict[str, Any], kind: str, error: str | None, stored: bool
) -> None:
    session = aioboto3.Session()
    faults.install(session, _rule(kind, "s3.PutObject"))
    async with session.client("s3", config=AioConfig(retries=RETRIES), **kw) as s3:
        values = AsyncValues(s3, BUCKET, 1024)
        if error is None:
            assert await values.put(TEXT) == POINTER
        else:
            with pytest.raises(Exception) as e:
                await values.put(TEXT)
            assert _code(e.value) == error
            assert is_transient(e.value)  # the worker abandons the claim, the run resumes
        assert _stored(kw) is stored
        assert faults.stats() == {kind: 1}
        assert await values.put(TEXT) == POINTER  # the rule fired once
        assert await values.get(POINTER) == TEXT


@pytest.mark.parametrize(("kind", "error", "_"), PUT_CASES)
async def test_each_fault_kind_on_the_workers_read_of_a_large_value(
    kw: dict[str, Any], kind: str, error: str | None, _: bool
) -> None:
    boto3.client("s3", **kw).put_object(Bucket=BUCKET, Key=KEY, Body=TEXT.encode())
    session = aioboto3.Session()
    faults.install(session, _rule(kind, "s3.GetObject"))
    async with session.client("s3", config=AioConfig(retries=RETRIES), **kw) as s3:
        values = AsyncValues(s3, BUCKET, 1024)
        if error is None:
            assert await values.get(POINTER) == TEXT
        else:
            with pytest.raises(Exception) as e:
                await values.get(POINTER)
            assert _code(e.value) == error
            assert is_transient(e.value)
        assert faults.stats() == {kind: 1}
        assert await values.get(POINTER) == TEXT


@pytest.mark.parametrize("kind", ["throttle", "5xx", "conn"])
def test_an_s3_call_failing_every_attempt_is_tried_five_times(
    kw: dict[str, Any], kind: str, no_backoff: None
) -> None:
    s3 = boto3.client("s3", config=CLIENT_CONFIG, **kw)
    faults.install(s3, f"s3.attempt.{kind}=1.0")
    with pytest.raises(Exception) as e:
        s3.get_object(Bucket=BUCKET, Key=KEY)
    assert is_transient(e.value)
    assert faults.stats() == {f"attempt.{kind}": 5}


def test_s3_attempt_faults_are_retried_by_the_sdk(kw: dict[str, Any], no_backoff: None) -> None:
    """The injected attempt carries S3's XML error (SlowDown 503, InternalError
    500), which the SDK's standard mode retries. (A JSON body, as DynamoDB's, is
    unreadable to S3's parser: the caller got a bare 400 at once.)"""
    s3 = boto3.client("s3", config=CLIENT_CONFIG, **kw)
    faults.install(s3, "seed=5,s3.attempt.throttle=0.4,s3.attempt.5xx=0.2")
    retried = 0
    for i in range(8):
        resp = s3.put_object(Bucket=BUCKET, Key=f"k{i}", Body=b"{}")
        retried += resp["ResponseMetadata"]["RetryAttempts"]
    assert sum(faults.stats().values()) == retried > 0


async def test_s3_attempt_faults_are_retried_on_aioboto3_too(
    kw: dict[str, Any], no_backoff: None
) -> None:
    session = aioboto3.Session()
    faults.install(session, "seed=5,s3.attempt.throttle=0.4,s3.attempt.5xx=0.2")
    async with session.client("s3", config=AioConfig(retries=RETRIES), **kw) as s3:
        retried = 0
        for i in range(8):
            resp = await s3.put_object(Bucket=BUCKET, Key=f"k{i}", Body=b"{}")
            retried += resp["ResponseMetadata"]["RetryAttempts"]
    assert sum(faults.stats().values()) == retried > 0


async def test_the_journal_records_stored_objects_and_the_pointers_a_write_carries(
    kw: dict[str, Any], tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    spec = json.dumps({"journal": str(journal), "rules": [{"kind": "lost", "op": "s3.*"}]})
    session = aioboto3.Session()  # as the worker writes values
    faults.install(session, spec)
    ddb = boto3.client("dynamodb", **kw)
    faults.install(ddb, spec)
    async with session.client("s3", config=AioConfig(retries=RETRIES), **kw) as s3:
        values = AsyncValues(s3, BUCKET, 1024)
        with pytest.raises(ConnectionClosedError):  # stored, answer lost: journaled
            await values.put(TEXT)
        other = json.dumps(["y" * 2000])
        other_pointer = await values.put(other)
    ddb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    batch = json.dumps([["0", "a", 1, 1, POINTER], ["1", "b", 1, 1, "2"]])  # a pointer in text
    ddb.put_item(TableName="t", Item={"pk": {"S": "WF#x"}, "out": {"S": POINTER}})
    ddb.put_item(TableName="t", Item={"pk": {"S": "WF#y"}, "entries": {"S": batch}})
    ddb.put_item(TableName="t", Item={"pk": {"S": "WF#z"}, "out": {"S": "[1]"}})
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    puts = [(x["key"], x["bytes"]) for x in lines if x["op"] == "s3.PutObject"]
    assert puts == [(KEY, len(TEXT)), (pointer_of(other.encode())[1], len(other))]
    assert other_pointer == pointer_of(other.encode())[0]
    writes = {x["pk"]: x.get("pointers") for x in lines if x["op"] == "dynamodb.PutItem"}
    assert writes == {"WF#x": [POINTER], "WF#y": [POINTER], "WF#z": None}
    assert all(x["t0"] <= x["t1"] for x in lines)
