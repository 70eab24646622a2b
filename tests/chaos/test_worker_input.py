"""Bad input on the worker-facing paths and the Python client: a clear error,
and nothing changed or half written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator import BadInputError, Client, PayloadTooLargeError
from orchestrator import resources as r
from orchestrator.dispatch import message_body, parse_body
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import MAX_OUTPUT_BYTES, MAX_STEP_RESULT_BYTES, Status
from tests.helpers import wait_for, wait_status
from worker import NO_RETRY, workflow


def _queue_empty(stack: Any) -> bool:
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.settings.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        attrs["ApproximateNumberOfMessages"]
        == attrs["ApproximateNumberOfMessagesNotVisible"]
        == "0"
    )


def _run_keys(stack: Any) -> set[str]:
    items = stack.ddb.scan(TableName=stack.settings.table)["Items"]
    return {i["pk"]["S"] for i in items if i["pk"]["S"].startswith(r.RUN_PK_PREFIX)}


def _big_result() -> str:
    return "x" * (MAX_STEP_RESULT_BYTES + 10)


@workflow("limits")
async def limits(ctx: Any, input: dict[str, Any]) -> Any:
    kind = input["kind"]
    if kind == "result":
        await ctx.step("big", _big_result, retry=NO_RETRY)
    elif kind == "output":
        return "y" * (MAX_OUTPUT_BYTES + 10)
    elif kind == "sleep-marker":
        await ctx.sleep("m" * 100_000, 0.1)
    elif kind == "wait-marker":
        await ctx.wait_for_signal("w" * 100_000, "go", timeout=0.1)
    elif kind == "error":
        raise ValueError("e" * 2_000_000)
    return "ok"


def test_parse_body_names_a_run_only_for_a_well_formed_id() -> None:
    assert parse_body(message_body("run-1", "start")) == "run-1"
    for body in (
        "",
        "not json",
        "[1]",
        "{}",
        '{"id": 5}',
        '{"id": ""}',
        json.dumps({"id": "x" * 3000}),  # DynamoDB would refuse the key: never sent
        json.dumps({"id": "a b/c"}),
        json.dumps({"id": "#hash"}),
    ):
        assert parse_body(body) is None, body


def test_garbage_and_unknown_run_messages_are_dropped_and_write_nothing(stack: Any) -> None:
    bodies = [
        "not json",
        "{}",
        '{"id": 5}',
        json.dumps({"id": "x" * 3000}),
        json.dumps({"id": "a b/c"}),
        message_body("no-such-run", "start"),
    ]
    for body in bodies:
        stack.sqs.send_message(QueueUrl=stack.settings.queue_url, MessageBody=body)
    with BackgroundWorker([limits], stack.settings, clock=stack.clock):
        wait_for(lambda: _queue_empty(stack), timeout=15)
    assert _run_keys(stack) == set()  # the claim's attribute_exists: no item created


@pytest.mark.parametrize(
    ("kind", "error_type", "message"),
    [
        ("result", "StepFailedError", "step result is"),
        ("output", "ValueError", "workflow output is"),
        ("sleep-marker", "ValueError", "marker is 1 to 200 printable characters"),
        ("wait-marker", "ValueError", "marker is 1 to 200 printable characters"),
        ("error", "ValueError", "eee"),
    ],
)
def test_oversize_values_in_a_worker_fail_the_run_cleanly_and_write_no_half_record(
    stack: Any, kind: str, error_type: str, message: str
) -> None:
    run, _ = stack.service.start("limits", {"kind": kind})
    with BackgroundWorker([limits], stack.settings, clock=stack.clock):
        done = wait_status(stack, run.id, "failed", "completed", timeout=90)
    assert done.status == Status.FAILED
    assert done.error is not None and done.error.type == error_type
    assert message in done.error.message
    assert done.output is None
    assert len(done.error.message) <= 4000 and len(done.error.traceback) <= 32 * 1024
    steps = stack.store.steps(run.id)
    if kind == "result":
        # The attempt failed before anything was written; its error is the record.
        assert len(steps) == 1 and steps[0].error is not None and steps[0].result is None
        assert steps[0].error.type == "PayloadTooLargeError"
    else:
        assert steps == []


def test_the_python_client_refuses_bad_input_with_typed_errors(stack: Any) -> None:
    c = Client(stack.api_url)
    with pytest.raises(BadInputError, match="not JSON-serializable"):
        c.start("limits", {"a": {1, 2}})  # refused before anything is sent
    with pytest.raises(BadInputError, match="not JSON-serializable"):
        c.start("limits", float("nan"))
    with pytest.raises(BadInputError):
        c.start("not a name!", {})
    with pytest.raises(PayloadTooLargeError):
        c.start("limits", "x" * 200_000)
    with pytest.raises(BadInputError):
        c.get("no/such")
    with pytest.raises(BadInputError):
        Client(stack.api_url, auth="kerberos")
    assert _run_keys(stack) == set()


def test_nothing_is_half_written_when_the_start_is_refused(stack: Any, tmp_path: Path) -> None:
    c = Client(stack.api_url)
    with pytest.raises(PayloadTooLargeError):
        c.start("limits", {"blob": "z" * 140_000}, id="too-big")
    with pytest.raises(BadInputError):
        c.start("limits", {}, id="bad id!")
    assert _run_keys(stack) == set()
    assert _queue_empty(stack)
