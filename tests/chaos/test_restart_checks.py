"""The restart fault's own parts (tests/chaos/restart.py): the loop check
reports a run claimed past the bound, and the gate refuses requests once
closed and waits for those already inside."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from orchestrator.local.aws import MotoServer
from orchestrator.model import Run, Status
from tests.chaos.checks import Report
from tests.chaos.restart import MAX_CLAIMS, Gate, check_restarts, gated


def _run(rid: str, epoch: int) -> Run:
    return Run(rid, "chaos.steps", Status.COMPLETED, "{}", created_at=0, updated_at=0, epoch=epoch)


def test_a_run_claimed_past_the_bound_is_a_violation() -> None:
    outcome = SimpleNamespace(
        runs={"calm": _run("calm", 3), "loops": _run("loops", MAX_CLAIMS + 1), "gone": None},
        restored=[{"runs": 2}],
    )
    report = Report(violations={}, facts={})
    check_restarts(outcome, report)
    assert report.violations["no run loops (claims per run bounded)"] == [
        f"loops: {MAX_CLAIMS + 1} claims (completed)"
    ]
    assert report.facts["most claims of one run"] == MAX_CLAIMS + 1
    assert report.facts["stack restarts survived"] == 1
    assert report.violations["a restart keeps every value and run of its snapshot"] == []


def test_a_restart_that_lost_a_value_or_a_run_is_a_violation() -> None:
    outcome = SimpleNamespace(
        runs={},
        restored=[
            {"runs": 2, "values lost": 0, "runs lost": 0},
            {"runs": 2, "values lost": 1, "runs lost": 2},
        ],
    )
    report = Report(violations={}, facts={})
    check_restarts(outcome, report)
    assert report.violations["a restart keeps every value and run of its snapshot"] == [
        "restart 2: 1 value(s), 2 run(s) lost"
    ]


def test_a_closed_gate_refuses_new_requests_and_waits_for_those_inside() -> None:
    inside = threading.Event()
    release = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        inside.set()
        release.wait(30)
        start_response("200 OK", [])
        return [b"done"]

    gate = Gate(app)
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(gate({}, lambda *a: None)))
    first.start()
    assert inside.wait(30)
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (gate.close(timeout=30), closed.set()))
    closer.start()

    statuses: list[str] = []
    headers: list[Any] = []

    def start_response(status: str, hs: list[tuple[str, str]]) -> None:
        statuses.append(status)
        headers.extend(hs)

    # Closed while a request is inside: a new one is refused at once, and the
    # close waits until the one inside has left.
    while gate._open:  # until close() has taken effect
        threading.Event().wait(0.01)
    assert gate({}, start_response) == [
        b'{"__type":"ServiceUnavailable","message":"the stack is restarting"}'
    ]
    assert statuses == ["503 Service Unavailable"] and ("Connection", "close") in headers
    assert not closed.is_set()
    release.set()
    first.join(30)
    closer.join(30)
    assert closed.is_set() and answers == [[b"done"]]


def _signed(service: str) -> str:
    return f"AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/{service}/aws4_request, X"


@pytest.mark.parametrize(
    ("environ", "passes"),
    [
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.CreateTable"}, True),
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.UpdateTimeToLive"}, True),
        ({"HTTP_X_AMZ_TARGET": "AmazonSQS.CreateQueue"}, True),
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.TransactWriteItems"}, False),
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem"}, False),
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.Scan"}, False),
        ({"HTTP_X_AMZ_TARGET": "AmazonSQS.ReceiveMessage"}, False),
        ({"HTTP_X_AMZ_TARGET": "AmazonSQS.SendMessage"}, False),
        ({"HTTP_AUTHORIZATION": _signed("s3"), "PATH_INFO": "/bucket"}, True),
        ({"HTTP_AUTHORIZATION": _signed("s3"), "PATH_INFO": "/bucket/values/sha256/ab"}, False),
        ({"HTTP_AUTHORIZATION": _signed("scheduler"), "PATH_INFO": "/schedule-groups/g"}, True),
        ({"HTTP_AUTHORIZATION": _signed("scheduler"), "PATH_INFO": "/schedules/x"}, False),
        ({}, False),
    ],
)
def test_a_closed_gate_lets_through_only_what_creates_or_describes_resources(
    environ: dict[str, Any], passes: bool
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"done"]

    gate = Gate(app, closed=True)
    assert (gate(environ, lambda *a: None) == [b"done"]) is passes


def test_a_gated_server_holds_requests_from_its_first() -> None:
    """The gate wraps moto's application when the server starts (`gated`), so
    no request can be past it unseen when a restart closes it."""
    server = MotoServer(middleware=gated()).start()
    try:
        g = server._server.app  # type: ignore[union-attr]
        assert isinstance(g, Gate)
        ddb = boto3.client(
            "dynamodb",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}),
        )
        ddb.list_tables()  # through the open gate
        g.close(timeout=5)
        with pytest.raises(ClientError, match="the stack is restarting"):
            ddb.get_item(TableName="t", Key={"pk": {"S": "x"}})
        # A resource call passes the closed gate (a new stack's bootstrap): moto answers.
        with pytest.raises(ClientError) as answered:
            ddb.describe_table(TableName="no-such-table")
        assert answered.value.response["Error"]["Code"] == "ResourceNotFoundException"
    finally:
        server.stop()
