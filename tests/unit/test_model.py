"""Pure helpers, without AWS."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.dispatch import (
    at_expression,
    message_body,
    parse_body,
    parse_waiting_since,
    schedule_name,
    timer_plan,
)
from orchestrator.model import Run, Status
from orchestrator.settings import Settings
from orchestrator.store.sync import decode_cursor, encode_cursor
from orchestrator.sweeper import MAX_BACKOFF_MS, next_due, past_deadline
from worker import NonRetryableError, RetryPolicy, workflow

# The state machine table is held to the code that enforces it in
# tests/functional/test_state_machine.py (each event driven through the real
# conditional writes, from every status, against the moto server).


def test_timer_plan_uses_sqs_delay_up_to_fifteen_minutes() -> None:
    assert timer_plan(0, 2_000) == ("delay", 2)
    assert timer_plan(0, 900_000) == ("delay", 900)
    assert timer_plan(0, 900_001) == ("schedule", 0)
    assert timer_plan(10_000, 0) == ("delay", 0)


def test_schedule_names_are_deterministic_and_valid() -> None:
    a = schedule_name("run-1", 3)
    assert a == schedule_name("run-1", 3) and a != schedule_name("run-2", 3)
    assert schedule_name("run-1", 3, 2) != a
    long = schedule_name("x" * 128, 999_999, 99)
    assert len(long) <= 64 and all(c.isalnum() or c in "-_." for c in long)


def test_at_expression_rounds_up_so_a_timer_never_fires_early() -> None:
    assert at_expression(1_000) == "at(1970-01-01T00:00:01)"
    assert at_expression(1_001) == "at(1970-01-01T00:00:02)"


def test_message_bodies_that_are_not_ours_are_recognised() -> None:
    assert parse_body('{"id": "a"}') == "a"
    for bad in ["", "nope", "[]", '{"id": 3}', '{"id": ""}']:
        assert parse_body(bad) is None


def test_a_waiting_runs_message_carries_when_its_wait_began() -> None:
    body = message_body("a", "flow", 1_700_000_000_123)
    assert parse_body(body) == "a" and parse_waiting_since(body) == 1_700_000_000_123
    assert parse_waiting_since(message_body("a", "start")) is None
    for bad in ["", "[]", '{"id": "a", "since": "1"}', '{"id": "a", "since": true}']:
        assert parse_waiting_since(bad) is None
    assert parse_waiting_since('{"id": "a", "since": -5}') is None


def test_cursors_round_trip_and_garbage_is_refused() -> None:
    from orchestrator.errors import BadInputError

    assert decode_cursor(encode_cursor("0000000001#abc")) == "0000000001#abc"
    for bad in ["", "!!!", "e30", encode_cursor("x" * 300)]:
        with pytest.raises(BadInputError):
            decode_cursor(bad)


def _run(status: Status, **kw) -> Run:
    return Run(id="r", name="n", status=status, input="null", created_at=0, updated_at=0, **kw)


def test_sweeper_decisions() -> None:
    s = Settings(lease_seconds=30, sweep_grace_ms=30_000)
    now = 1_000_000
    # a live lease: re-check later, no send
    due, send = next_due(_run(Status.RUNNING, lease_until=now + 5_000), now, s)
    assert not send and due > now
    # an expired lease: send
    assert next_due(_run(Status.RUNNING, lease_until=now - 1), now, s)[1]
    # a sleeper not yet due: no send, re-armed at its wake time plus grace
    assert next_due(_run(Status.SLEEPING, wake_at=now + 60_000), now, s) == (now + 90_000, False)
    assert next_due(_run(Status.SLEEPING, wake_at=now - 1), now, s)[1]
    # pending: send, with a backoff that grows and is capped
    delays = [next_due(_run(Status.PENDING, dispatches=d), now, s)[0] - now for d in range(12)]
    assert delays == sorted(delays) and delays[-1] == MAX_BACKOFF_MS
    # ... but due again by its execution deadline at the latest
    capped = _run(Status.PENDING, dispatches=8, deadline_at=now + 5_000)
    assert next_due(capped, now, s) == (now + 5_000, True)
    # past the deadline and held by no worker: the sweeper fails it; a running one it does not
    assert past_deadline(_run(Status.PENDING, deadline_at=now), now)
    assert past_deadline(_run(Status.WAITING, deadline_at=now - 1), now)
    assert not past_deadline(_run(Status.PENDING, deadline_at=now + 1), now)
    assert not past_deadline(_run(Status.RUNNING, deadline_at=now - 1), now)


def test_retry_policy_delays_and_classification() -> None:
    p = RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff=2,
        max_interval=timedelta(seconds=5),
        jitter=0,
    )
    assert [p.delay_ms(n) for n in range(1, 6)] == [1000, 2000, 4000, 5000, 5000]
    jittery = RetryPolicy(jitter=0.2)
    assert all(800 <= jittery.delay_ms(1) <= 1200 for _ in range(50))

    class Declined(Exception):
        pass

    q = RetryPolicy(non_retryable=[Declined, "KeyError"])
    assert (
        not q.retryable(Declined())
        and not q.retryable(KeyError())
        and not q.retryable(NonRetryableError())
    )
    assert q.retryable(ValueError())
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_workflow_decorator_validates() -> None:
    with pytest.raises(ValueError, match="workflow name"):
        workflow("9bad")
    with pytest.raises(TypeError, match="async def"):

        @workflow("sync")
        def sync(ctx, input):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(TypeError, match=r"\(ctx\) or \(ctx, input\)"):

        @workflow("three")
        async def three(ctx, a, b):  # type: ignore[no-untyped-def]
            return None


def test_public_names_are_pinned() -> None:
    import orchestrator
    import worker

    assert sorted(worker.__all__) == sorted(
        [
            "AT_LEAST_ONCE_PER_RETRY",
            "AT_MOST_ONCE_PER_RETRY",
            "Attempt",
            "DEFAULT_RETRY",
            "Invocation",
            "NO_RETRY",
            "Operation",
            "Plugin",
            "BatchItem",
            "BatchItemStatus",
            "BatchResult",
            "BatchSerializer",
            "StepInterruptedError",
            "StepSemantics",
            "Callback",
            "CallbackFailedError",
            "CallbackTimeoutError",
            "ChildContextError",
            "ChildWorkflowError",
            "CompletionConfig",
            "CompletionReason",
            "ConditionNotMetError",
            "ExecutionTimeoutError",
            "NonDeterminismError",
            "S3BatchResult",
            "S3Items",
            "NonRetryableError",
            "RetryPolicy",
            "StepFailedError",
            "StepTimeoutError",
            "Worker",
            "WorkflowCancelledError",
            "WorkflowContext",
            "WorkflowContextError",
            "WorkflowDefinition",
            "backoff_until",
            "configure_logging",
            "definition_of",
            "is_workflow",
            "replay_check",
            "workflow",
        ]
    )
    assert "Client" in orchestrator.__all__
