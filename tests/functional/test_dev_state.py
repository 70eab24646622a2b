"""`orchestrator dev --state-dir`: the dev stack survives a restart with its
runs, inboxes and schedules (issue #17)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.clock import SkippingClock
from orchestrator.errors import NotFoundError
from orchestrator.local import LocalStack
from orchestrator.local.snapshot import StateFile, restore
from orchestrator.local.worker_thread import BackgroundWorker
from tests.conftest import TEST_SETTINGS
from tests.helpers import wait_status
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
