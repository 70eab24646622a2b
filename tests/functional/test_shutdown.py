"""Ctrl-C with a long sync step running (issue #17, item 2): the worker says
what it waits for, and a second signal ends the process at once, with the
run's lease released."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.conftest import worker_env
from tests.helpers import WorkerProcess, wait_for


def _read_until(proc, text: str, seen: list[str]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        seen.append(raw.decode(errors="replace"))
        if text in seen[-1]:
            return
    raise AssertionError(f"the worker exited before saying {text!r}: {''.join(seen)}")


def test_a_second_signal_ends_a_worker_stuck_in_a_sync_step(
    stack, exec_log: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    run, _ = stack.service.start("count", {"steps": 1, "pause": 60, "marker": str(marker)})
    with WorkerProcess(worker_env(stack, exec_log), grace=0.5) as w:
        wait_for(marker.exists, timeout=30)
        seen: list[str] = []
        w.proc.send_signal(signal.SIGINT)
        _read_until(w.proc, "Ctrl-C again to exit now", seen)
        assert f"run {run.id} step s0" in seen[-1]  # names what it waits for
        w.proc.send_signal(signal.SIGINT)
        try:
            code = w.proc.wait(timeout=20)  # not the 60 s the step takes
        except subprocess.TimeoutExpired:
            raise AssertionError("".join(seen) + w.output()) from None
        assert code == 130
    after = stack.store.get(run.id)
    assert after.owner is None and not after.status.terminal  # released for another worker
