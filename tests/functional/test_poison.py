"""Poison messages: a run whose workflow keeps killing the worker process ends
in the dead-letter queue, and the sweeper fails it with the reason instead of
letting it cycle forever. Every other kind of dead letter is only deleted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator import resources as r
from orchestrator.clock import SYSTEM_CLOCK
from orchestrator.dispatch import message_body
from orchestrator.local import LocalStack
from orchestrator.local.aws import MotoServer
from orchestrator.model import Status
from orchestrator.store import requests as q
from tests.chaos.workflows import ENV_EXEC_LOG
from tests.conftest import TEST_SETTINGS
from tests.helpers import ROOT

MAX_RECEIVES = 2


@pytest.fixture
def poison_stack(moto_server: MotoServer) -> Any:
    moto_server.reset()
    stack = LocalStack(
        clock=SYSTEM_CLOCK,
        settings=TEST_SETTINGS,
        endpoint_url=moto_server.url,
        background_interval=0.2,
        max_receive_count=MAX_RECEIVES,
    ).start()
    yield stack
    stack.stop()


def _spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "worker", "tests.chaos.workflows"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _lines(path: Path, needle: str) -> int:
    return sum(1 for line in path.read_text().splitlines() if needle in line)


def test_a_workflow_that_kills_its_worker_is_failed_as_a_poison_message(
    poison_stack: LocalStack, tmp_path: Path
) -> None:
    stack = poison_stack
    exec_log = tmp_path / "executions.jsonl"
    exec_log.touch()
    env = {**os.environ, **stack.exports(), "PYTHONPATH": str(ROOT)}
    env.update({r.ENV_POLL_SECONDS: "1", ENV_EXEC_LOG: str(exec_log)})
    deaths = 0
    proc = _spawn(env)
    # Started once the worker is registered: a run created before a worker starts
    # also gets the start-up kick's message, a second message to deliver.
    deadline = time.monotonic() + 60
    while not stack.service.workers() and time.monotonic() < deadline:
        time.sleep(0.1)
    run, _ = stack.service.start("chaos.poison", {}, "poison-1")
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if stack.store.get(run.id).status == Status.FAILED:
                break
            if proc.poll() is not None:
                assert proc.returncode == 17, "the worker died of something else"
                deaths += 1
                proc = _spawn(env)  # a supervisor restarts it, and it dies again
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait(timeout=10)

    final = stack.store.get(run.id)
    assert final.status == Status.FAILED, f"still {final.status} after 60 s"
    assert final.error is not None and final.error.type == "PoisonMessageError"
    assert "dead-letter queue" in final.error.message
    assert "ApproximateReceiveCount" in final.error.message
    # Each delivery ran the step and killed the worker; the message went to the DLQ
    # after MAX_RECEIVES of them. A sweeper re-send (the run still pending after
    # the 1 s grace on a loaded machine) is a message of its own, with its own count.
    assert deaths >= MAX_RECEIVES
    assert _lines(exec_log, '"step":"die"') == deaths
    assert _lines(exec_log, '"step":"a"') == 1  # recorded once, replayed after
    assert final.due_at is None and final.owner is None  # out of the sweeper's index
    dlq = stack.sqs.get_queue_attributes(
        QueueUrl=stack.settings.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert dlq["Attributes"]["ApproximateNumberOfMessages"] == "0"


@pytest.fixture
def quiet_stack(make_stack: Callable[..., LocalStack]) -> LocalStack:
    # No background rounds: the test drains the DLQ itself.
    return make_stack(interval=3600)


def _to_dlq(stack: LocalStack, body: str) -> None:
    stack.sqs.send_message(QueueUrl=stack.settings.dlq_url, MessageBody=body)


def _claim(stack: LocalStack, run_id: str, *, lease_ms: int, now: int | None = None) -> int:
    now = stack.clock.now_ms() if now is None else now
    resp = stack.ddb.update_item(
        **q.claim(
            stack.settings.table,
            run_id,
            owner="test",
            now=now,
            lease_ms=lease_ms,
            names=["chaos.steps"],
        )
    )
    return int(resp["Attributes"]["epoch"]["N"])


def test_only_a_run_no_worker_holds_is_failed_and_every_dead_letter_is_deleted(
    quiet_stack: LocalStack,
) -> None:
    stack = quiet_stack
    svc = stack.service
    now = stack.clock.now_ms()
    ids = {}
    for kind in ("pending", "live", "expired", "sleeping", "done"):
        run, _ = svc.start("chaos.steps", {"n": 1}, f"dlq-{kind}")
        ids[kind] = run.id
    _claim(stack, ids["live"], lease_ms=60_000)
    _claim(stack, ids["expired"], lease_ms=1_000, now=now - 10_000)
    epoch = _claim(stack, ids["sleeping"], lease_ms=60_000)
    stack.ddb.update_item(
        **q.park_sleep(
            stack.settings.table,
            ids["sleeping"],
            epoch=epoch,
            now=now,
            wake_at=now + 3_600_000,
            due_at=now + 3_601_000,
        )
    )
    epoch = _claim(stack, ids["done"], lease_ms=60_000)
    stack.ddb.update_item(
        **q.finish(stack.settings.table, ids["done"], epoch=epoch, now=now, status=Status.COMPLETED)
    )
    before = {k: stack.store.get(i) for k, i in ids.items()}
    for run_id in ids.values():
        _to_dlq(stack, message_body(run_id, "start"))
    _to_dlq(stack, "this is not json")
    _to_dlq(stack, message_body("no-such-run", "start"))

    report = stack.sweeper.drain_dead_letters()

    assert report.poisoned == [ids["expired"]]
    assert report.dead_letters == 7  # all settled and deleted
    failed = stack.store.get(ids["expired"])
    assert failed.status == Status.FAILED
    assert failed.error is not None and failed.error.type == "PoisonMessageError"
    for kind in ("pending", "live", "sleeping", "done"):
        assert stack.store.get(ids[kind]) == before[kind], f"the {kind} run changed"
    assert stack.sqs.receive_message(QueueUrl=stack.settings.dlq_url).get("Messages") is None
    # Draining again changes nothing: idempotent.
    again = stack.sweeper.drain_dead_letters()
    assert again.poisoned == [] and again.dead_letters == 0
    assert stack.store.get(ids["expired"]) == failed


def test_two_sweepers_fail_a_poisoned_run_once_and_never_a_run_that_moved(
    quiet_stack: LocalStack,
) -> None:
    stack = quiet_stack
    now = stack.clock.now_ms()
    run, _ = stack.service.start("chaos.steps", {"n": 1}, "dlq-race")
    _claim(stack, run.id, lease_ms=1_000, now=now - 10_000)
    read_by_both = stack.store.get(run.id)
    assert stack.store.fail_poisoned(read_by_both, now=now, message="first")
    assert not stack.store.fail_poisoned(read_by_both, now=now, message="second")
    assert stack.store.get(run.id).error.message == "first"  # type: ignore[union-attr]

    # Read with an expired lease, then claimed by a worker before the write: refused.
    run2, _ = stack.service.start("chaos.steps", {"n": 1}, "dlq-moved")
    _claim(stack, run2.id, lease_ms=1_000, now=now - 10_000)
    stale = stack.store.get(run2.id)
    _claim(stack, run2.id, lease_ms=60_000)
    assert not stack.store.fail_poisoned(stale, now=now, message="too late")
    assert stack.store.get(run2.id).status == Status.RUNNING

    # An owner that was only slow heartbeat after the read (same epoch): refused.
    run3, _ = stack.service.start("chaos.steps", {"n": 1}, "dlq-slow-owner")
    epoch = _claim(stack, run3.id, lease_ms=1_000, now=now - 10_000)
    slow = stack.store.get(run3.id)
    stack.ddb.update_item(
        **q.heartbeat(stack.settings.table, run3.id, epoch=epoch, lease_until=now + 60_000)
    )
    assert not stack.store.fail_poisoned(slow, now=now, message="alive after all")
    assert stack.store.get(run3.id).status == Status.RUNNING
