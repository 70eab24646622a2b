"""A run's inbox is bounded (issue #25, item 2): at most `MAX_INBOX_SIGNALS`
unconsumed signals and `MAX_INBOX_BYTES` of their payloads, counted on the run
item by the signal's own write (so concurrent senders cannot pass it), taken
back when a wait consumes one, and removed when the run ends, whose leftovers
then expire by TTL. 150 signals of 65 KB to one waiting run used to be
accepted, all of them, and stayed after its end."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator import Client
from orchestrator.errors import ConflictError, InboxFullError
from orchestrator.local import LocalStack
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import MAX_INBOX_BYTES, MAX_INBOX_SIGNALS, Signal
from orchestrator.store import record_requests as rq
from orchestrator.store.codec import from_item, run_key, run_pk, to_attr
from orchestrator.store.sync import SIGNAL_TTL_SECONDS
from tests.helpers import wait_for, wait_status
from tests.security._http import JSON, json_error, request
from tests.workflows import ALL

WEEK = SIGNAL_TTL_SECONDS


def signal_items(stack: LocalStack, workflow_id: str) -> list[dict[str, Any]]:
    resp = stack.ddb.query(
        TableName=stack.settings.table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :sig)",
        ExpressionAttributeValues={
            ":pk": to_attr(run_pk(workflow_id)),
            ":sig": to_attr("SIG#"),
        },
        ConsistentRead=True,
    )
    return [from_item(i) for i in resp["Items"]]


def post_signal(stack: LocalStack, workflow_id: str, payload: Any) -> tuple[int, bytes]:
    body = json.dumps({"name": "go", "payload": payload}).encode()
    status, _, answer = request(
        stack.api_url, "POST", f"/workflows/{workflow_id}/signals", headers=JSON, body=body
    )
    return status, answer


def fill_counters(stack: LocalStack, workflow_id: str, count: int, nbytes: int = 0) -> None:
    """Set the run's inbox counters as if `count` signals of `nbytes` bytes were
    waiting (the counters are what the limit reads; storing them all would
    only make the test slower)."""
    stack.ddb.update_item(
        TableName=stack.settings.table,
        Key=run_key(workflow_id),
        UpdateExpression="SET inbox_count = :c, inbox_bytes = :b",
        ExpressionAttributeValues={":c": to_attr(count), ":b": to_attr(nbytes)},
    )


def test_the_byte_limit_answers_429_naming_it_and_writes_nothing(stack: LocalStack) -> None:
    client = Client(stack.api_url)
    run = client.start("waiter", {"signal": "go"})  # no worker: it stays pending
    payload = "x" * 65_000  # 65,002 bytes of JSON: sixteen fit in 1 MB, not seventeen
    for _ in range(16):
        assert post_signal(stack, run["id"], payload)[0] == 202
    before = signal_items(stack, run["id"])
    status, answer = post_signal(stack, run["id"], payload)
    assert status == 429
    error = json_error(answer)
    assert error["code"] == "inbox_full"
    assert "MAX_INBOX_BYTES" in error["message"] and f"{MAX_INBOX_BYTES:,}" in error["message"]
    assert signal_items(stack, run["id"]) == before  # refused: nothing stored
    stored = stack.store.get(run["id"])
    assert (stored.inbox_count, stored.inbox_bytes) == (16, 16 * 65_002)
    assert stored.signal_seq == 16
    # A small one still fits; one over the per-value limit is a 413, as before.
    assert post_signal(stack, run["id"], "ok")[0] == 202
    assert post_signal(stack, run["id"], "y" * 70_000)[0] == 413
    with pytest.raises(InboxFullError, match="MAX_INBOX_BYTES"):
        client.signal(run["id"], "go", payload)


def test_the_count_limit_answers_429_naming_it(stack: LocalStack) -> None:
    client = Client(stack.api_url)
    run = client.start("waiter", {"signal": "go"})
    fill_counters(stack, run["id"], MAX_INBOX_SIGNALS - 2)
    assert post_signal(stack, run["id"], 1)[0] == 202
    assert post_signal(stack, run["id"], 2)[0] == 202
    status, answer = post_signal(stack, run["id"], 3)
    assert status == 429
    message = json_error(answer)["message"]
    assert "MAX_INBOX_SIGNALS" in message and f"{MAX_INBOX_SIGNALS:,}" in message
    assert [s["seq"] for s in signal_items(stack, run["id"])] == [1, 2]
    assert stack.store.get(run["id"]).inbox_count == MAX_INBOX_SIGNALS


def test_concurrent_senders_never_pass_the_limit(stack: LocalStack) -> None:
    run, _ = stack.service.start("waiter", {"signal": "go"})
    room = 4
    fill_counters(stack, run.id, MAX_INBOX_SIGNALS - room)
    outcomes: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(10)

    def send(i: int) -> None:
        go.wait()
        try:
            stack.store.send_signal(run.id, "go", json.dumps(i))
            result = "sent"
        except InboxFullError:
            result = "full"
        except ConflictError:
            result = "busy"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("sent") == room, outcomes
    assert outcomes.count("full") == 10 - room, outcomes
    assert len(signal_items(stack, run.id)) == room
    assert stack.store.get(run.id).inbox_count == MAX_INBOX_SIGNALS


def test_the_write_holds_the_limit_whatever_the_sender_read(stack: LocalStack) -> None:
    """A sender that read the run before its inbox filled up (its read says there
    is room) is refused by the write's own condition."""
    run, _ = stack.service.start("waiter", {"signal": "go"})
    seen = stack.store.get(run.id)
    fill_counters(stack, run.id, MAX_INBOX_SIGNALS)  # since the read; signal_seq unchanged
    now = stack.clock.now_ms()

    def request_for(limit: tuple[int, int] | None) -> dict[str, Any]:
        return rq.send_signal(
            stack.settings.table,
            run.id,
            signal=Signal(name="go", seq=seen.signal_seq + 1, payload="1", sent_at=now),
            prev_seq=seen.signal_seq,
            seen_status=seen.status,
            epoch=seen.epoch,
            now=now,
            wake=False,
            due_at=now,
            attempt=seen.redrive_count,
            limit=limit,
        )

    with pytest.raises(ClientError) as refused:
        stack.ddb.transact_write_items(**request_for((MAX_INBOX_SIGNALS, MAX_INBOX_BYTES)))
    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert signal_items(stack, run.id) == []
    # The same write without the limit (an engine signal's) is stored: the limit
    # is what refused it, not the run having moved.
    stack.ddb.transact_write_items(**request_for(None))
    assert len(signal_items(stack, run.id)) == 1


def test_a_consumed_signal_leaves_the_count_and_the_end_expires_the_rest(
    stack: LocalStack, exec_log: Path
) -> None:
    client = Client(stack.api_url)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("waiter", {"waits": 2, "signal": "go"})
        client.signal(run["id"], "go", "first")
        client.signal(run["id"], "other", {"never": "consumed"})
        wait_status(stack, run["id"], "waiting")  # consumed "first", waits for a second "go"
        waiting = stack.store.get(run["id"])
        assert (waiting.inbox_count, waiting.inbox_bytes) == (1, len('{"never":"consumed"}'))
        client.signal(run["id"], "go", "second")
        done = wait_status(stack, run["id"], "completed")
    assert json.loads(done.output) == ["first", "second"]
    assert (done.inbox_count, done.inbox_bytes) == (0, 0)  # the end removed them
    left = {s["name"]: s for s in signal_items(stack, run["id"])}
    assert "consumed_at" not in left["other"]
    # Given a TTL by the worker's terminal write's effect, as consumed ones are.
    assert left["other"]["expires_at"] >= stack.clock.now_ms() // 1000 + WEEK - 60
    assert all("expires_at" in s for s in left.values())


@pytest.mark.parametrize("how", ["cancel", "terminate"])
def test_an_api_end_expires_the_unconsumed_signals(stack: LocalStack, how: str) -> None:
    client = Client(stack.api_url)
    run = client.start("waiter", {"signal": "go"})
    for i in range(3):
        client.signal(run["id"], "go", i)
    assert all("expires_at" not in s for s in signal_items(stack, run["id"]))
    getattr(client, how)(run["id"])
    ended = stack.store.get(run["id"])
    assert ended.status.value == "cancelled"
    assert (ended.inbox_count, ended.inbox_bytes) == (0, 0)
    expiring = [s["expires_at"] for s in signal_items(stack, run["id"])]
    assert len(expiring) == 3
    assert all(t >= stack.clock.now_ms() // 1000 + WEEK - 60 for t in expiring)
    with pytest.raises(ConflictError):
        client.signal(run["id"], "go", "late")  # an ended run takes none, as before


def test_a_run_that_times_out_unclaimed_expires_its_signals(stack: LocalStack) -> None:
    client = Client(stack.api_url)
    run = client.start("waiter", {"signal": "go"}, execution_timeout=1)
    client.signal(run["id"], "go", "never read")
    stack.clock.advance(5)  # past the deadline and the sweeper's grace
    wait_status(stack, run["id"], "failed", timeout=30)
    # The sweeper's effect after its terminal write: it follows the write.
    wait_for(lambda: "expires_at" in signal_items(stack, run["id"])[0], timeout=30)
    (left,) = signal_items(stack, run["id"])
    assert left["expires_at"] >= stack.clock.now_ms() // 1000 + WEEK - 60


def test_a_redrive_counts_afresh(stack: LocalStack) -> None:
    client = Client(stack.api_url)
    run = client.start("waiter", {"signal": "go"})
    fill_counters(stack, run["id"], MAX_INBOX_SIGNALS)
    with pytest.raises(InboxFullError):
        client.signal(run["id"], "go", 1)
    client.cancel(run["id"])
    client.redrive(run["id"])
    assert client.signal(run["id"], "go", 1)["seq"] == 1
    again = stack.store.get(run["id"])
    assert (again.inbox_count, again.inbox_bytes) == (1, 1)


def test_engine_signals_count_but_are_never_refused(stack: LocalStack) -> None:
    """A child's end reaches a parent whose inbox is full: the engine's own
    signals (one per operation) are not what the limit guards against."""
    from orchestrator.children import notify_request
    from orchestrator.model import Run, Status

    parent, _ = stack.service.start("waiter", {"signal": "go"})
    fill_counters(stack, parent.id, MAX_INBOX_SIGNALS, MAX_INBOX_BYTES)
    now = stack.clock.now_ms()
    child = Run(
        id=f"{parent.id}-0",
        name="count",
        status=Status.COMPLETED,
        input="null",
        created_at=now,
        updated_at=now,
        output="1",
        parent_id=parent.id,
        parent_op="0",
    )
    stack.store.create(child)
    req, _ = notify_request(
        stack.settings.table, child, stack.store.get(parent.id), now=now, grace_ms=1000
    )
    stack.ddb.transact_write_items(**req)
    assert stack.store.get(parent.id).inbox_count == MAX_INBOX_SIGNALS + 1
    assert [s["name"] for s in signal_items(stack, parent.id)] == ["sys:child:0"]


def test_the_limits_are_stated_where_the_docs_say() -> None:
    from tests.helpers import ROOT

    assert (MAX_INBOX_SIGNALS, MAX_INBOX_BYTES) == (1_000, 1024 * 1024)
    limits = (ROOT / "docs" / "architecture.md").read_text().split("## Limits", 1)[1]
    assert "| a run's inbox (signals stored, not consumed) | 1,000 signals and 1 MB" in limits
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "at most 1,000 unconsumed signals and 1 MB" in readme


def test_the_cli_says_which_limit_refused_a_signal(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator import resources as r
    from orchestrator.cli import main

    monkeypatch.setenv(r.ENV_API_URL, stack.api_url)
    run, _ = stack.service.start("waiter", {"signal": "go"})
    fill_counters(stack, run.id, MAX_INBOX_SIGNALS)
    assert main(["signal", run.id, "go"]) != 0
    err = capsys.readouterr().err
    assert "inbox" in err and "MAX_INBOX_SIGNALS" in err and "1,000" in err
