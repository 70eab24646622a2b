"""Test helpers: waiting on runs, and worker subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.local import LocalStack

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_status(stack: LocalStack, run_id: str, *statuses: str, timeout: float = 20.0) -> Any:
    def check() -> Any:
        run = stack.store.get(run_id)
        return run if run.status.value in statuses else None

    try:
        return wait_for(check, timeout)
    except AssertionError:
        raise AssertionError(
            f"run {run_id} is {stack.store.get(run_id).status.value}, not {statuses}, after {timeout}s"
        ) from None


def finish_through_sleeps(stack: LocalStack, run_id: str) -> dict[str, Any]:
    """Skip the clock past each sleep of the run until it ends; its (completed) output."""

    def finished() -> Any:
        run = stack.store.get(run_id)
        if run.status.terminal:
            return run
        if run.status.value == "sleeping" and run.wake_at > stack.clock.now_ms():
            stack.clock.advance((run.wake_at - stack.clock.now_ms()) / 1000 + 1)
        return None

    run = wait_for(finished, timeout=60)
    assert run.status.value == "completed", run.error
    return dict(json.loads(run.output))


def queued(stack: LocalStack) -> int:
    """Messages in the work queue, visible or in flight (SQS's approximate counts,
    exact on the local server)."""
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.settings.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


class WorkerProcess:
    """`orchestrator worker tests.workflows` in a subprocess, killable."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        concurrency: int = 4,
        grace: float = 5.0,
        module: str = "tests.workflows",
    ) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "worker",
                module,
                "--concurrency",
                str(concurrency),
                "--grace",
                str(grace),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def terminate(self, timeout: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        if self.proc.poll() is None:
            self.kill()
        assert self.proc.stdout is not None
        return self.proc.stdout.read().decode(errors="replace")

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.kill()


def env_without(env: dict[str, str], *keys: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in keys}


__all__ = ["ROOT", "WorkerProcess", "env_without", "os", "wait_for", "wait_status"]
