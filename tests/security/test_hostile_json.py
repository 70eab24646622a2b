"""Finding 4 of issue #16: hostile JSON. Every entry (API bodies, list cursors,
SQS bodies, in the local server and in the Lambda handler) answers a clean
400 and writes nothing; the Lambda handler turns any unexpected error into a
logged, counted 500; the worker deletes a message it cannot read, and the
sweeper sets an unreadable dead letter aside once."""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import pytest

from orchestrator import safejson
from orchestrator.dispatch import parse_body
from orchestrator.errors import BadInputError
from orchestrator.local import LocalStack
from orchestrator.local.http import to_event
from tests.security._http import JSON, json_error, request

DEEP = b"[" * 10_000 + b"]" * 10_000
HOSTILE: dict[str, bytes] = {
    "976 nested arrays": b'{"name": "greet", "input": ' + b"[" * 976 + b"]" * 976 + b"}",
    "10,000 nested arrays": DEEP,
    "10,000 nested objects": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "an integer of 4,301 digits": b'{"name": "greet", "input": ' + b"7" * 4301 + b"}",
    "a lone surrogate": b'{"name": "greet", "input": "\\ud800"}',
    "a lone surrogate in a key": b'{"name": "greet", "input": {"\\udfff": 1}}',
    "bytes that are not UTF-8": b'{"name": "greet", "input": "\xff\xfe"}',
    "NaN": b'{"name": "greet", "input": NaN}',
    "an overflowing float": b'{"name": "greet", "input": 1e400}',
    "an unterminated string": b'{"name": "greet", "input": "' + b'\\"' * 5000,
}


def _context() -> Any:
    class Context:
        function_name = "orchestrator-api"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:orchestrator-api"
        aws_request_id = "req-sec"

    return Context()


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_decoder_refuses_with_bad_input_and_nothing_else(body: bytes) -> None:
    with pytest.raises(BadInputError):
        safejson.loads(body)
    with pytest.raises(BadInputError):
        safejson.loads(body.decode("utf-8", "surrogateescape"))


def test_the_decoder_keeps_what_is_fine() -> None:
    value = {"a": [1, -2.5, "x[y{", {"b": None}], "emoji": "\U0001f600", "n": 10**60}
    assert safejson.loads(json.dumps(value)) == value
    nested: Any = 1
    for _ in range(safejson.MAX_DEPTH):
        nested = [nested]
    assert safejson.loads(json.dumps(nested)) == nested


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("path", ["/workflows", "/workflows/some-run/signals"])
def test_the_local_api_answers_400_and_writes_nothing(
    sec_stack: LocalStack, unchanged, body: bytes, path: str
) -> None:
    status, _, reply = request(sec_stack.api_url, "POST", path, headers=JSON, body=body)
    assert status == 400, reply[:200]
    assert json_error(reply)["code"] == "bad_input"
    unchanged()


def test_a_hostile_cursor_is_a_400(sec_stack: LocalStack) -> None:
    for inner in (DEEP, b'{"b": "' + b"\\ud800" + b'"}', b"\xff"):
        cursor = base64.urlsafe_b64encode(inner).decode().rstrip("=")
        status, _, reply = request(sec_stack.api_url, "GET", f"/workflows?cursor={cursor}")
        assert status == 400 and "cursor" in json_error(reply)["message"]


@pytest.fixture
def lambda_api(sec_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Any:
    from orchestrator.api import lambda_handler

    for k, v in sec_stack.exports().items():
        monkeypatch.setenv(k, v)
    lambda_handler._service.cache_clear()
    yield lambda_handler
    lambda_handler._service.cache_clear()


def _records(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out.splitlines()
    return [json.loads(line) for line in out if line.startswith("{")]


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_lambda_answers_400_with_a_log_line(lambda_api: Any, caplog, body: bytes) -> None:
    event = to_event("POST", "/workflows", {"Content-Type": "application/json"}, body)
    with caplog.at_level(logging.INFO):
        reply = lambda_api.handler(event, _context())
    assert reply["statusCode"] == 400 and json_error(reply["body"].encode())
    assert [r.status for r in caplog.records if r.getMessage() == "request"] == [400]


def test_an_unexpected_error_is_a_logged_counted_500(
    lambda_api: Any, capsys, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.api.app import build_app

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(lambda_api, "app", build_app(lambda: Broken()))
    with caplog.at_level(logging.INFO):
        reply = lambda_api.handler(to_event("GET", "/workflows", {}, b""), _context())
    assert reply["statusCode"] == 500
    assert json.loads(reply["body"]) == {"error": {"code": "internal", "message": "internal error"}}
    assert "nosniff" in reply["headers"].values()
    assert [r.status for r in caplog.records if r.getMessage() == "request"] == [500]
    assert any(r.exc_info for r in caplog.records if "unhandled" in r.getMessage())
    emf = next(r for r in _records(capsys) if "_aws" in r)
    assert emf["ApiServerErrors"] in (1.0, [1.0])


def test_an_event_the_resolver_cannot_read_is_a_500_not_an_invocation_error(
    lambda_api: Any, capsys
) -> None:
    reply = lambda_api.handler({"rawPath": "/workflows"}, _context())  # no requestContext
    assert reply["statusCode"] == 500 and json_error(reply["body"].encode())


@pytest.mark.parametrize("body", [*HOSTILE.values(), b"", b"null", b'{"id": 7}', b'{"id": "a\\n"}'])
def test_parse_body_never_raises(body: bytes) -> None:
    assert parse_body(body.decode("utf-8", "surrogateescape")) is None


def test_the_worker_deletes_a_message_it_cannot_read(
    sec_stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    from orchestrator.local.worker_thread import BackgroundWorker
    from tests.workflows import ALL

    sec_stack.sqs.purge_queue(QueueUrl=sec_stack.settings.queue_url)  # other tests' starts
    for body in (DEEP.decode(), "\x00 not json", '{"id": "' + "9" * 5000 + '"}'):
        sec_stack.sqs.send_message(QueueUrl=sec_stack.settings.queue_url, MessageBody=body)
    with caplog.at_level(logging.WARNING, logger="worker"):
        worker = BackgroundWorker(ALL, sec_stack.settings).start()
        try:
            deadline = time.monotonic() + 20
            while _queued(sec_stack) != ("0", "0"):
                assert time.monotonic() < deadline, _queued(sec_stack)
                time.sleep(0.1)
        finally:
            worker.stop()
    dropped = [r for r in caplog.records if "names no run" in r.getMessage()]
    assert len(dropped) == 3
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def _queued(stack: LocalStack) -> tuple[str, str]:
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.settings.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]


def test_the_sweeper_deletes_an_unreadable_dead_letter_once(sec_stack: LocalStack) -> None:
    dlq = sec_stack.settings.dlq_url
    sec_stack.sqs.send_message(QueueUrl=dlq, MessageBody=DEEP.decode())
    report = sec_stack.sweeper.drain_dead_letters()
    assert report.dead_letters == 1
    assert sec_stack.sqs.receive_message(QueueUrl=dlq).get("Messages") is None


def test_a_dead_letter_whose_settling_keeps_failing_is_set_aside(
    sec_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import sweeper as sweeper_module

    monkeypatch.setattr(sweeper_module, "DLQ_VISIBILITY_SECONDS", 0)

    def broken(message: Any, report: Any) -> bool:
        raise RuntimeError("the store is down")

    monkeypatch.setattr(sec_stack.sweeper, "_settle_dead_letter", broken)
    dlq = sec_stack.settings.dlq_url
    sec_stack.sqs.send_message(QueueUrl=dlq, MessageBody='{"id": "kept-failing"}')
    settled = [sec_stack.sweeper.drain_dead_letters().dead_letters for _ in range(8)]
    assert sum(settled) == 1 and settled.index(1) == sweeper_module.DLQ_MAX_RECEIVES - 1
    assert sec_stack.sqs.receive_message(QueueUrl=dlq).get("Messages") is None
