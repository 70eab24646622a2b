"""The worker's delete batcher (worker/_deletes.py) against a fake SQS client:
when it sends, what it retries, what it drops, and the flush at close. The
tests run on virtual time (tests/fakes/virtual_time.py): when a batch went out
is asserted exactly, and "not sent yet" means no timer was due."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.fakes.virtual_time import on_virtual_time
from worker._deletes import MAX_TRIES, DeleteBatcher

QUEUE = "https://sqs.local/queue"


class FakeSqs:
    """Records each DeleteMessageBatch call; refuses receipts by rule."""

    def __init__(self, refuse: dict[str, tuple[str, bool]] | None = None, raises: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.times: list[float] = []
        self.refuse = refuse or {}  # receipt -> (code, sender fault)
        self.raises = raises  # the first `raises` calls fail as a whole

    async def delete_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, str]]) -> Any:
        assert QueueUrl == QUEUE
        assert 1 <= len(Entries) <= 10
        assert len({e["Id"] for e in Entries}) == len(Entries)  # Ids unique per call
        await asyncio.sleep(0)
        self.calls.append([e["ReceiptHandle"] for e in Entries])
        self.times.append(asyncio.get_running_loop().time())
        if self.raises:
            self.raises -= 1
            raise ConnectionError("network gone")
        failed = [
            {"Id": e["Id"], "Code": code, "SenderFault": sender, "Message": "no"}
            for e in Entries
            for code, sender in [self.refuse.get(e["ReceiptHandle"], ("", False))]
            if code
        ]
        ok = [{"Id": e["Id"]} for e in Entries if e["ReceiptHandle"] not in self.refuse]
        return {"Successful": ok, "Failed": failed}


def _now() -> float:
    return asyncio.get_running_loop().time()


@on_virtual_time
async def test_ten_pending_are_sent_at_once_and_the_rest_at_close() -> None:
    sqs = FakeSqs()
    b = DeleteBatcher(sqs, QUEUE, max_wait=60)
    for i in range(25):
        b.add(f"r{i}")
    await asyncio.sleep(59)  # every timer due before max_wait has run
    assert [len(c) for c in sqs.calls] == [10, 10]  # the 5 left wait for max_wait
    assert sqs.times == [0, 0]  # at once
    assert b.pending == 5
    await b.close()
    assert [len(c) for c in sqs.calls] == [10, 10, 5]
    assert sorted(r for c in sqs.calls for r in c) == sorted(f"r{i}" for i in range(25))
    assert b.pending == 0


@on_virtual_time
async def test_fewer_than_ten_are_sent_once_the_oldest_has_waited_max_wait() -> None:
    sqs = FakeSqs()
    b = DeleteBatcher(sqs, QUEUE, max_wait=0.2)
    b.add("a")
    await asyncio.sleep(0.1)
    b.add("b")
    b.add("a")  # the same receipt again (a copy in one response): deleted once
    assert sqs.calls == []
    await asyncio.sleep(0.25)
    assert sqs.calls == [["a", "b"]]
    assert sqs.times == [pytest.approx(0.2)]  # when "a" was due, not 0.2 s after "b"
    await b.close()
    assert len(sqs.calls) == 1


@on_virtual_time
async def test_failed_entries_are_retried_then_dropped_and_stale_receipts_dropped_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sqs = FakeSqs(
        refuse={"busy": ("InternalError", False), "stale": ("ReceiptHandleIsInvalid", True)}
    )
    b = DeleteBatcher(sqs, QUEUE, max_wait=0.02)
    with caplog.at_level(logging.DEBUG, logger="worker.deletes"):
        for r in ("ok", "busy", "stale"):
            b.add(r)
        await asyncio.sleep(0.3)
        assert sqs.calls == [["ok", "busy", "stale"]] + [["busy"]] * (MAX_TRIES - 1)
        assert sqs.times == pytest.approx([0.02 * (i + 1) for i in range(MAX_TRIES)])
        assert b.pending == 0
    assert any("failed 3 times; dropped" in r.message for r in caplog.records)
    assert any("stale receipt" in r.message for r in caplog.records)
    await b.close()
    assert len(sqs.calls) == MAX_TRIES


@on_virtual_time
async def test_a_failed_call_is_retried_with_the_next_flush_not_at_once() -> None:
    sqs = FakeSqs(raises=1)
    b = DeleteBatcher(sqs, QUEUE, max_wait=0.1)
    b.add("a")
    await _until(lambda: len(sqs.calls) == 1)  # the first call failed; "a" waits again
    b.add("b")
    await _until(lambda: len(sqs.calls) == 2)
    assert [sorted(c) for c in sqs.calls] == [["a"], ["a", "b"]]
    # Not at once: a full max_wait between the failed call and the retry.
    assert sqs.times == pytest.approx([0.1, 0.2])
    await _until(lambda: b.pending == 0)
    await b.close()
    assert len(sqs.calls) == 2


async def _until(cond: Any) -> None:
    """Wait for `cond()` in steps of a (virtual) millisecond; the batcher's timers
    run meanwhile."""
    while not cond():
        assert _now() < 3600, "the condition never held"
        await asyncio.sleep(0.001)


@on_virtual_time
async def test_close_sends_everything_pending_and_retries_at_once() -> None:
    sqs = FakeSqs(raises=2)
    b = DeleteBatcher(sqs, QUEUE, max_wait=60)
    for r in ("a", "b", "c"):
        b.add(r)
    await asyncio.sleep(30)  # before max_wait: nothing is due
    assert sqs.calls == []
    await b.close()
    assert sqs.calls == [["a", "b", "c"]] * 3  # two failures, then it went through
    assert sqs.times == [30, 30, 30]  # no max_wait (60 s) between tries at close
    b.add("late")  # after close: dropped with a warning, never sent
    await asyncio.sleep(3600)  # past any max_wait
    assert len(sqs.calls) == 3


@on_virtual_time
async def test_close_gives_up_after_its_timeout() -> None:
    class Hanging(FakeSqs):
        async def delete_message_batch(self, **kw: Any) -> Any:
            await asyncio.sleep(3600)

    b = DeleteBatcher(Hanging(), QUEUE, max_wait=0)
    b.add("a")
    await asyncio.sleep(0.01)  # the call is made (max_wait 0) and hangs
    assert b.pending == 1
    await b.close(timeout=0.1)
    assert _now() == pytest.approx(0.11)  # gave up at its timeout: the call hangs for an hour
    assert b.pending == 0


def test_max_wait_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        DeleteBatcher(FakeSqs(), QUEUE, max_wait=-1)
