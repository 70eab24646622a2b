"""Conformance, step suite (requirements 1-x): `ctx.step` results, replay, retries."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

from orchestrator.local.worker_thread import BackgroundWorker
from tests.conformance import workflows, workflows_step
from tests.conftest import TEST_SETTINGS, worker_env
from tests.helpers import ROOT, wait_status

WORKFLOWS = workflows_step.ALL

SCENARIOS = {
    "1-1": ("step-1-1", "World"),
    "1-2": ("step-1-2", "World"),
    "1-3": ("step-1-3", None),
    "1-4": ("step-1-4", {"name": "Alice", "tags": ["admin", "active"]}),
    "1-5": ("step-1-5", None),
    "1-6": ("step-1-6", "hello world"),
    "1-8": ("step-1-8", None),
    "1-9": ("step-1-9", None),
    "1-10": ("step-1-10", None),
    "1-11": ("step-1-11", None),
    "1-12": ("step-1-12", None),
    "1-13": ("step-1-13", None),
    "1-13-lambda": ("step-1-13-lambda", None),
    "1-14": ("step-1-14", None),
    "1-15": ("step-1-15", None),
    "1-16": ("step-1-16", None),
    "1-19": ("step-1-19", None),
    "1-20": ("step-1-20", None),
}


def _gaps(attempts: list[dict]) -> list[int]:
    """Milliseconds between one attempt's end and the next one's start."""
    return [b["started_at"] - a["finished_at"] for a, b in itertools.pairwise(attempts)]


def test_1_1_step_succeeds_on_first_attempt(outcomes) -> None:
    o = outcomes["1-1"]
    assert (o.status, o.output) == ("completed", "Hello, World!")
    assert o.shape() == [("0", "step", "greet")]
    assert o.ran("greet") == 1 and o.parks == 0
    assert o.ops["0"].attempts == []  # one attempt, no retry


def test_1_2_step_with_name(outcomes) -> None:
    o = outcomes["1-2"]
    assert (o.status, o.output) == ("completed", "Hello, World!")
    assert o.shape() == [("0", "step", "custom_step_name")]


def test_1_3_sequential_steps_second_uses_first(outcomes) -> None:
    o = outcomes["1-3"]
    assert (o.status, o.output) == ("completed", "first_second")
    assert o.shape() == [("0", "step", "step_one"), ("1", "step", "step_two")]
    assert o.ran("one") == o.ran("two") == 1


def test_1_4_step_returns_a_complex_object(outcomes) -> None:
    o = outcomes["1-4"]
    expected = {"user": {"name": "Alice", "tags": ["admin", "active"]}, "count": 2}
    assert (o.status, o.output) == ("completed", expected)
    assert json.loads(o.ops["0"].result) == expected


def test_1_5_step_returns_null(outcomes) -> None:
    o = outcomes["1-5"]
    assert (o.status, o.output) == ("completed", None)
    assert o.ops["0"].result == "null" and o.ran("nothing") == 1


def test_1_6_custom_serdes_per_step(outcomes) -> None:
    """Equivalent: the step function's return annotation `Annotated[str,
    PlainSerializer(str.upper)]` serializes the result; the record holds its output."""
    o = outcomes["1-6"]
    assert (o.status, o.output) == ("completed", "HELLO WORLD")
    assert json.loads(o.ops["0"].result) == "HELLO WORLD"


def test_1_8_step_and_wait_with_replay(outcomes) -> None:
    o = outcomes["1-8"]
    assert (o.status, o.output) == ("completed", "computed")
    assert o.shape() == [("0", "step", "compute"), ("1", "sleep", "wait")]
    assert o.parks == 1 and o.ran("compute") == 1
    parked, ops = o.rounds[0]
    assert parked.status.value == "sleeping" and set(ops) == {"0", "1"}


def test_1_9_replay_skips_a_succeeded_step(outcomes) -> None:
    o = outcomes["1-9"]
    assert (o.status, o.output) == ("completed", "cached_value")
    assert o.parks == 1
    assert o.ran("cached") == 1  # the replay after the wait returned the record


def test_1_10_replay_rethrows_a_failed_step(outcomes) -> None:
    o = outcomes["1-10"]
    # The error was caught on the first run and again on the replay, from the record.
    assert (o.status, o.output) == ("completed", {"caught": ["RuntimeError"]})
    assert o.parks == 1 and o.ran("failing") == 1
    assert o.ops["0"].error.type == "RuntimeError"


def test_1_11_retry_fails_then_succeeds(outcomes) -> None:
    o = outcomes["1-11"]
    assert (o.status, o.output) == ("completed", "Operation succeeded")
    assert o.ran("unreliable") == 2
    assert o.parks == 1  # the retry delay parked the run; the second attempt ran after it
    attempts = o.ops["0"].attempts
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert "error" in attempts[0] and "error" not in attempts[1]


def test_1_12_retry_exhaustion_after_max_attempts(outcomes) -> None:
    o = outcomes["1-12"]
    assert o.status == "failed" and o.error_type == "StepFailedError"
    assert o.ran("always_fail") == 4
    assert o.parks == 3  # one park per retry delay, none after the last attempt
    assert len(o.ops["0"].attempts) == 4 and o.ops["0"].error.type == "RuntimeError"


def _delays(attempts: list[dict]) -> list[int]:
    """The delay the policy gave after each failed attempt but the last."""
    return [a["delay_ms"] for a in attempts[:-1]]


def test_1_13_default_retry_strategy(outcomes) -> None:
    """Equivalent: the engine's own default (worker.DEFAULT_RETRY: 3 attempts, 1 s
    first delay, backoff 2, jitter +-20%); and the requirement's strategy (6
    attempts, 5 s first delay, backoff 2, here without jitter). Two failures,
    then a success, under both."""
    o = outcomes["1-13"]
    assert (o.status, o.output) == ("completed", "third time")
    assert o.ran("unreliable") == 3
    attempts = o.ops["0"].attempts
    first, second = _delays(attempts)
    assert 800 <= first <= 1200 and 1600 <= second <= 2400  # 1 s, then 2 s, +-20%
    assert all(g >= d for g, d in zip(_gaps(attempts), (first, second), strict=True))
    lam = outcomes["1-13-lambda"]
    assert (lam.status, lam.output) == ("completed", "third time")
    assert lam.ran("unreliable") == 3
    assert _delays(lam.ops["0"].attempts) == [5_000, 10_000]
    gaps = _gaps(lam.ops["0"].attempts)
    assert gaps[0] >= 5_000 and gaps[1] >= 10_000


def test_1_14_retry_with_custom_interval_and_backoff(outcomes) -> None:
    o = outcomes["1-14"]
    assert (o.status, o.output) == ("completed", "ok")
    assert o.ran("backoff") == 3
    attempts = o.ops["0"].attempts
    assert _delays(attempts) == [2_000, 6_000]  # 2 s, then 2 s * 3: no jitter
    first, second = _gaps(attempts)
    # The 2 s delay is waited in the worker: the next attempt starts after it, and
    # soon after (the skipping clock runs with real time); the 6 s one parks the
    # run, which the tier's driver wakes past its wake time.
    assert 2_000 <= first < 2_000 + 1_500 and second >= 6_000


def test_1_15_retry_a_specific_exception(outcomes) -> None:
    """Our policy names what is *not* retried (`non_retryable`); TransientError is
    not in it, so it is retried."""
    o = outcomes["1-15"]
    assert (o.status, o.output) == ("completed", "ok")
    assert o.ran("transient") == 2 and o.parks == 1
    assert o.ops["0"].attempts[0]["error"]["type"] == "TransientError"


def test_1_16_non_retryable_exception_fails_at_once(outcomes) -> None:
    o = outcomes["1-16"]
    assert o.status == "failed" and o.error_type == "StepFailedError"
    assert o.ran("transient") == 1 and o.parks == 0
    assert o.ops["0"].error.type == "TransientError"


def test_1_19_step_fails_permanently_without_retry(outcomes) -> None:
    o = outcomes["1-19"]
    assert o.status == "failed" and o.error_type == "StepFailedError"
    assert o.ran("failing") == 1
    assert o.ops["0"].error.type == "RuntimeError" and o.ops["0"].attempts == []


def test_1_20_step_error_caught_and_handled(outcomes) -> None:
    o = outcomes["1-20"]
    assert (o.status, o.output) == ("completed", "fallback_result")
    assert o.shape() == [("0", "step", "failing"), ("1", "step", "after")]
    assert o.ran("failing") == 1 and o.ran("after") == 1


def _crash_then_resume(stack, tmp_path: Path, name: str) -> tuple[object, object]:
    """Start `name`; a worker process dies inside the step's first attempt (as the
    requirement's process.exit); another worker takes the run over after the
    dead one's lease. Returns the run after the crash and at its end."""
    marker = tmp_path / "crashed"
    run, _ = stack.service.start(name, str(marker))
    env = worker_env(stack, tmp_path / "exec.log")
    cmd = [sys.executable, "-m", "orchestrator.cli", "worker", "tests.conformance.workflows_step"]
    crashed = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, timeout=60)
    assert crashed.returncode == 3 and marker.exists()
    (started,) = stack.store.steps(run.id)
    with BackgroundWorker(WORKFLOWS, stack.settings, clock=stack.clock):
        stack.clock.advance(TEST_SETTINGS.lease_seconds + 1)  # the dead worker's lease ends
        run = wait_status(stack, run.id, "sleeping", "completed", "failed", timeout=30)
        if run.status.value == "sleeping":  # the retry delay parks the run
            stack.clock.advance(workflows.PARK.total_seconds() + 1)
            run = wait_status(stack, run.id, "completed", "failed", timeout=30)
    return started, run


def test_1_17_at_most_once_interrupted_without_retry_fails(stack, tmp_path: Path) -> None:
    """The attempt's start was recorded before the function ran; the crash leaves
    it started, and the next claim counts it as failed (StepInterruptedError)
    instead of running it again. With no retry, the step and the run fail."""
    started, done = _crash_then_resume(stack, tmp_path, "step-1-17")
    assert not started.resolved and started.retry_at is None
    assert [set(a) for a in started.attempts] == [{"attempt", "started_at"}]
    assert (done.status.value, done.error.type) == ("failed", "StepFailedError")
    (rec,) = stack.store.steps(done.id)
    assert rec.error.type == "StepInterruptedError" and len(rec.attempts) == 1
    assert workflows.executions(done.id, "crashing") == 0  # never run again


def test_1_18_at_most_once_interrupted_then_retried(stack, tmp_path: Path) -> None:
    """As 1-17, with a retry policy: the interrupted attempt counts as the first
    failure, the retry delay parks the run, and the second attempt succeeds."""
    started, done = _crash_then_resume(stack, tmp_path, "step-1-18")
    assert [a["attempt"] for a in started.attempts] == [1] and not started.resolved
    assert (done.status.value, json.loads(done.output)) == (
        "completed",
        "succeeded on second attempt",
    )
    (rec,) = stack.store.steps(done.id)
    assert [a["attempt"] for a in rec.attempts] == [1, 2]
    assert rec.attempts[0]["error"]["type"] == "StepInterruptedError"
    assert workflows.executions(done.id, "crashing") == 1  # the second attempt only
