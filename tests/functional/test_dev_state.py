"""`orchestrator dev --state-dir`: the dev stack survives a restart with its
runs, inboxes and schedules (issue #17)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from orchestrator.clock import SkippingClock
from orchestrator.errors import NotFoundError
from orchestrator.local import LocalStack
from orchestrator.local.snapshot import StateFile, restore
from orchestrator.local.worker_thread import BackgroundWorker
from tests.conftest import TEST_SETTINGS
from tests.helpers import wait_for, wait_status
from tests.workflows import ALL


def _stack(clock: SkippingClock, *, empty: bool = False) -> LocalStack:
    stack = LocalStack(
        clock=clock, settings=TEST_SETTINGS, background_interval=0.2, allow_reset=True
    ).start()
    if empty:
        # moto's state is per process: tests run before this one in the same
        # process left their items. Start from nothing, resources recreated.
        stack.reset()
    return stack


def test_runs_inboxes_and_schedules_survive_a_restart(tmp_path: Path) -> None:
    clock = SkippingClock()
    first = _stack(clock, empty=True)
    try:
        state = StateFile(first, tmp_path).start()
        with BackgroundWorker(ALL, first.settings, clock=clock):
            sleeper, _ = first.service.start("sleeper", {"seconds": 3600})
            waiter, _ = first.service.start("waiter", {"signal": "go"})
            wait_status(first, sleeper.id, "sleeping")
            wait_status(first, waiter.id, "waiting")
        done, _ = first.service.start("count", {"steps": 1})  # no worker now: stays pending
        first.service.signal(waiter.id, "early", {"n": 1})  # buffered in the inbox
        saved = state.stop()
        assert first.moto is not None
        first.moto.reset()  # moto's state is per process: clear it, as a restart would
    finally:
        first.stop()
    assert saved["runs"] == 3 and saved["unfinished"] == 3 and saved["schedules"] == 1

    second = _stack(clock)  # a new moto server: empty until restored
    try:
        with pytest.raises(NotFoundError):
            second.store.get(sleeper.id)
        assert restore(second, tmp_path / "state.json") == saved
        assert second.store.get(sleeper.id).status.value == "sleeping"
        assert [s.name for s in second.store.inbox(waiter.id)] == ["early"]
        with BackgroundWorker(ALL, second.settings, clock=clock):
            wait_status(second, done.id, "completed")  # its message was sent again
            second.service.signal(waiter.id, "go", None)
            wait_status(second, waiter.id, "completed")
            clock.advance(3601)  # the restored schedule wakes the sleeper
            wait_status(second, sleeper.id, "completed")
    finally:
        second.stop()


def test_objects_of_the_bucket_that_are_not_values_survive_a_restart(tmp_path: Path) -> None:
    """A map's items object (a key of the application's, with its ETag: the map
    reads batches with it) and a replaced object come back as last written."""
    clock = SkippingClock()
    first = _stack(clock, empty=True)
    bucket = first.settings.bucket
    try:
        state = StateFile(first, tmp_path).start()
        first.s3.put_object(Bucket=bucket, Key="in/items.jsonl", Body=b'{"n":1}\n{"n":2}\n')
        first.s3.put_object(Bucket=bucket, Key="maps/x.jsonl", Body=b"old", ContentType="a/b")
        state.stop()  # an earlier save, then the object replaced
        state = StateFile(first, tmp_path).start()
        first.s3.put_object(Bucket=bucket, Key="maps/x.jsonl", Body=b"new", ContentType="a/b")
        etag = first.s3.head_object(Bucket=bucket, Key="in/items.jsonl")["ETag"]
        saved = state.stop()
        assert first.moto is not None
        first.moto.reset()
    finally:
        first.stop()
    assert saved["objects"] == 2
    assert len(list((tmp_path / "objects").iterdir())) == 2  # the replaced one's file removed

    second = _stack(clock)
    try:
        restore(second, tmp_path / "state.json")
        items = second.s3.get_object(Bucket=bucket, Key="in/items.jsonl")
        assert items["Body"].read() == b'{"n":1}\n{"n":2}\n' and items["ETag"] == etag
        replaced = second.s3.get_object(Bucket=bucket, Key="maps/x.jsonl")
        assert replaced["Body"].read() == b"new" and replaced["ContentType"] == "a/b"
    finally:
        second.stop()


WRITERS = 4


def _writes_racing_the_stop(
    stack: LocalStack, tmp_path: Path, *, hold: bool
) -> tuple[set[str], set[str]]:
    """Keys written (and acknowledged) while the last save ran, and the keys the
    snapshot holds: WRITERS threads put items as fast as they can, with no
    retries, until the server refuses them or the save is done."""
    ddb: Any = boto3.session.Session(region_name=stack.settings.region).client(
        "dynamodb",
        endpoint_url=stack.settings.endpoint_url,
        config=Config(retries={"max_attempts": 1}, max_pool_connections=WRITERS),
    )
    acked: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def writer(w: int) -> None:
        i = 0
        while not done.is_set():
            key = f"PROBE#{w}-{i}"
            i += 1
            try:
                ddb.put_item(
                    TableName=stack.settings.table, Item={"pk": {"S": key}, "sk": {"S": "P"}}
                )
            except Exception:
                return  # held: 503, then a refused connection
            with lock:
                acked.append(key)

    state = StateFile(stack, tmp_path).start()
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 40, timeout=30)
    state.stop(hold=hold)
    done.set()
    for t in threads:
        t.join(30)
    saved = json.loads((tmp_path / "state.json").read_text())
    kept = {i["pk"]["S"] for i in saved["items"] if i["pk"]["S"].startswith("PROBE#")}
    return set(acked), kept


def test_no_write_acknowledged_before_the_dev_stack_stops_is_left_out_of_its_snapshot(
    tmp_path: Path,
) -> None:
    """`orchestrator dev` at Ctrl-C: the last save holds the server first, so a
    write it acknowledged is in the snapshot (before, writes acknowledged while
    the save read the table were lost at the restart)."""
    stack = _stack(SkippingClock(), empty=True)
    try:
        acked, kept = _writes_racing_the_stop(stack, tmp_path, hold=True)
    finally:
        stack.stop()
    assert len(acked) >= 40
    assert acked - kept == set()
