"""The state machine table (`orchestrator/model.py` `TRANSITIONS`, shown in
docs/architecture.md) against the code that enforces it.

The table is data; what enforces it is the condition of each write in
`orchestrator/store/requests.py`, the decisions the API's store makes before it
writes (`Store.cancel`, `Store.send_signal`), the sweeper's `next_due` and
`past_deadline`, and the worker's `_refused`. Here each event is driven through
that real code against the moto server, from every status, and the test
asserts: the write applied if and only if the table allows the move, and the
status it left is the table's. The pure decisions (sweeper, worker) are held to
the table the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.errors import ConflictError
from orchestrator.model import TERMINAL, TRANSITIONS, ClaimFailure, Run, Status
from orchestrator.store import requests as q
from orchestrator.store.codec import new_run_item, to_item
from orchestrator.store.conditions import conditional_failed
from orchestrator.sweeper import next_due, past_deadline
from tests.conftest import TEST_SETTINGS

NAME = "count"


@pytest.fixture
def stack(make_stack: Any) -> Any:
    """No background sweeper (interval of an hour): the seeded runs have passed
    their deadlines, and only the drivers here may move them."""
    return make_stack(interval=3600)


EPOCH = 1  # the epoch of the owner in every seeded run ("mine" for owner writes)


def _seed(stack: Any, run_id: str, status: Status, *, ready: bool = True) -> Run:
    """A run in `status` whose other guards are met (`ready`): an expired lease, a
    wake time and a deadline that have passed, a wait for "go"; or, not ready, a
    live lease and a wake time an hour ahead."""
    now = stack.clock.now_ms()
    then = now - 1 if ready else now + 3_600_000
    run = Run(id=run_id, name=NAME, status=status, input="{}", created_at=now, updated_at=now)
    item = new_run_item(run)
    extra: dict[str, Any] = {"epoch": EPOCH, "deadline_at": then}
    if status == Status.RUNNING:
        extra.update(owner="w", lease_until=then)
    if status in (Status.SLEEPING, Status.WAITING):
        extra["wake_at"] = then
    if status == Status.WAITING:
        extra["wait_signal"] = "go"
    item.update(to_item(extra))
    stack.ddb.put_item(TableName=stack.settings.table, Item=item)
    return stack.store.get(run_id)


def _write(stack: Any, request: dict[str, Any]) -> bool:
    """Send one conditional UpdateItem: True if applied, False if refused."""
    try:
        stack.ddb.update_item(**request)
        return True
    except ClientError as e:
        if not conditional_failed(e):
            raise
        return False


# Each event through the code that makes it, for a run as `_seed` left it.
def _claim(stack: Any, run: Run, now: int) -> bool:
    req = q.claim(stack.settings.table, run.id, owner="x", now=now, lease_ms=60_000, names=[NAME])
    return _write(stack, req)


def _sleep(stack: Any, run: Run, now: int) -> bool:
    req = q.park_sleep(
        stack.settings.table, run.id, epoch=EPOCH, now=now, wake_at=now + 1, due_at=now + 2
    )
    return _write(stack, req)


def _wait(stack: Any, run: Run, now: int) -> bool:
    req = q.park_wait(
        stack.settings.table,
        run.id,
        epoch=EPOCH,
        now=now,
        signal="go",
        seen_seq=run.signal_seq,
        deadline=None,
        due_at=None,
    )
    return _write(stack, req)


def _signal_wakes(stack: Any, run: Run, now: int) -> bool:
    try:
        _, woke, _ = stack.store.send_signal(run.id, "go", '"x"')
    except ConflictError:
        return False  # a finished run refuses signals
    return bool(woke)


def _finish(status: Status) -> Callable[[Any, Run, int], bool]:
    def finish(stack: Any, run: Run, now: int) -> bool:
        req = q.finish(stack.settings.table, run.id, epoch=EPOCH, now=now, status=status)
        return _write(stack, req)

    return finish


def _release(stack: Any, run: Run, now: int) -> bool:
    return _write(stack, q.release(stack.settings.table, run.id, epoch=EPOCH, due_at=now))


def _claim_failed(stack: Any, run: Run, now: int) -> bool:
    failure = ClaimFailure("ValueUnavailableError", "value … is no longer stored (expired)", 1)
    req = q.record_claim_failure(
        stack.settings.table,
        run.id,
        epoch=EPOCH,
        now=now,
        failure=failure,
        retry_at=now + 1000,
        due_at=now + 2000,
    )
    return _write(stack, req)


def _cancel(stack: Any, run: Run, now: int) -> bool:
    _, _, outcome = stack.store.cancel(run.id, "stop")
    if outcome == "requested":  # running: its owner delivers it and ends the run
        return _finish(Status.CANCELLED)(stack, run, now)
    return bool(outcome == "cancelled")


def _expire(stack: Any, run: Run, now: int) -> bool:
    return past_deadline(run, now) and bool(stack.store.fail_timed_out(run, now=now))


DRIVERS: dict[str, Callable[[Any, Run, int], bool]] = {
    "claim": _claim,
    "sleep": _sleep,
    "wait": _wait,
    "signal_wakes": _signal_wakes,
    "complete": _finish(Status.COMPLETED),
    "fail": _finish(Status.FAILED),
    "release": _release,
    "claim_failed": _claim_failed,
    "cancel": _cancel,
    "expire": _expire,
}


def test_every_event_has_a_driver() -> None:
    assert set(DRIVERS) == set(TRANSITIONS)


def test_each_write_applies_exactly_where_the_table_allows_the_move(stack: Any) -> None:
    mismatches = []
    for event, moves in TRANSITIONS.items():
        for status in Status:
            run = _seed(stack, f"{event}-{status.value}", status)
            applied = DRIVERS[event](stack, run, stack.clock.now_ms())
            after = stack.store.get(run.id)
            if applied != (status in moves):
                mismatches.append(f"{event} from {status.value}: applied={applied}")
            elif applied and after.status != moves[status]:
                mismatches.append(f"{event} from {status.value}: left {after.status.value}")
            elif not applied and after.status != status:
                mismatches.append(f"{event} from {status.value}: refused but moved")
            if after.status in TERMINAL and after.due_at is not None:
                mismatches.append(f"{event} from {status.value}: terminal but still in by_due")
    assert mismatches == []


def test_the_guards_beside_the_status_refuse_what_the_table_allows_by_status(stack: Any) -> None:
    """The table says which statuses an event may leave; the conditions add guards
    (a live lease, a wake time to come, a deadline to come) that refuse it."""
    for status in TRANSITIONS["claim"]:
        if status == Status.PENDING:
            continue  # a pending run is always claimable
        run = _seed(stack, f"claim-early-{status.value}", status, ready=False)
        assert not _claim(stack, run, stack.clock.now_ms()), status
    for status in TRANSITIONS["expire"]:
        run = _seed(stack, f"expire-early-{status.value}", status, ready=False)
        assert not _expire(stack, run, stack.clock.now_ms()), status
    # A park after a cancel request, and a wait park after a signal came in.
    run = _seed(stack, "park-after-cancel", Status.RUNNING)
    assert stack.store.cancel(run.id, "stop")[2] == "requested"
    assert not _sleep(stack, run, stack.clock.now_ms())
    run = _seed(stack, "park-after-signal", Status.RUNNING)
    stack.store.send_signal(run.id, "go", '"x"')
    assert not _wait(stack, run, stack.clock.now_ms())  # seen_seq is the one read before


# --- the pure decisions: the sweeper and the worker's refused claim ---------------------------
def _run(status: Status, *, ready: bool, now: int, **kw: Any) -> Run:
    then = now - 1 if ready else now + 60_000
    return Run(
        id="r",
        name=NAME,
        status=status,
        input="{}",
        created_at=0,
        updated_at=0,
        epoch=EPOCH,
        lease_until=then if status == Status.RUNNING else None,
        wake_at=then if status in (Status.SLEEPING, Status.WAITING) else None,
        deadline_at=then,
        **kw,
    )


def test_the_sweeper_expires_and_sends_only_what_the_table_lets_move() -> None:
    now = 10_000_000
    for status in Status:
        for ready in (True, False):
            run = _run(status, ready=ready, now=now)
            # Expire: past the deadline, exactly the statuses the table lets expire.
            assert past_deadline(run, now) == (ready and status in TRANSITIONS["expire"]), status
            if status in TERMINAL:
                continue  # the terminal write removed due_at: the sweeper never sees it
            # Send: only a run a claim can take now (so the message is not wasted).
            _, send = next_due(run, now, TEST_SETTINGS)
            claimable = status in TRANSITIONS["claim"] and (ready or status == Status.PENDING)
            assert send == claimable, (status, ready)


class _Messages:
    """The worker store's two message calls, recorded (the rest is not used)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def delete_message(self, receipt: str) -> None:
        self.calls.append(("delete", receipt))

    async def set_visibility(self, receipt: str, seconds: int) -> None:
        self.calls.append(("visibility", seconds))


@pytest.mark.parametrize("status", list(Status))
def test_a_refused_claim_keeps_its_message_only_where_the_table_leaves_a_way_forward(
    status: Status,
) -> None:
    """A refused claim's message is dropped for a run the table lets go nowhere
    (terminal), and kept (visible again later) for a run a claim can take once
    its guard passes: a parked run due within SQS's 15-minute limit, a running
    run whose owner may die."""
    from tests.workflows import ALL
    from worker import Worker

    worker = Worker(workflows=ALL, settings=TEST_SETTINGS.with_(queue_url="http://unused"))
    messages = _Messages()
    worker._store = messages  # type: ignore[assignment]
    now = 10_000_000
    old = _run(status, ready=False, now=now)
    message = {"ReceiptHandle": "rh", "Attributes": {"ApproximateReceiveCount": "2"}}
    asyncio.run(worker._refused(old, message, now))
    (kind, _), *_ = messages.calls
    if status in TERMINAL:
        assert not any(status in moves for moves in TRANSITIONS.values())
        assert kind == "delete"
    elif status in TRANSITIONS["claim"] and status != Status.PENDING:
        assert kind == "visibility"  # claimable when its lease ends or its time comes
