"""`orchestrator dev` as a real process: SIGTERM saves the state and says so, as
SIGINT does; started with SIGINT ignored (as a shell script's background job
is), SIGINT still stops it cleanly. The next start restores what was saved."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from orchestrator.client import Client
from tests.helpers import ROOT

READY = "then: orchestrator worker"


class Dev:
    """`python -m orchestrator.cli dev` on free ports and a state dir; its output
    is read line by line on a thread, so the test waits for a line, not a time."""

    def __init__(self, state_dir: Path, *, ignore_sigint: bool = False) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}

        def ignored() -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `cmd &` in a script gets

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "dev",
                "--port",
                "0",
                "--aws-port",
                "0",
                "--state-dir",
                str(state_dir),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=ignored if ignore_sigint else None,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 120.0) -> str:
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} in {timeout}s: {self.lines}") from None
            if line is None:
                raise AssertionError(f"exited before {text!r}: {self.lines}")
            self.lines.append(line)
            if text in line:
                return line

    def api_url(self) -> str:
        line = next(x for x in self.lines if x.startswith("API:"))
        return line.split()[-1]

    def stop(self, sig: signal.Signals) -> tuple[int, str]:
        """Send `sig`; (the exit status, everything it printed after)."""
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"still running 60 s after {sig.name}: {self.lines}") from None
        rest = []
        while (line := self._queue.get(timeout=10)) is not None:
            rest.append(line)
        self.lines += rest
        return code, "\n".join(rest)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("sig", "ignore_sigint"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigterm", "sigint-ignored-at-start"],
)
def test_dev_saves_its_state_on_a_stop_signal(
    tmp_path: Path, sig: signal.Signals, ignore_sigint: bool
) -> None:
    state_dir = tmp_path / "state"
    dev = Dev(state_dir, ignore_sigint=ignore_sigint)
    try:
        dev.wait_for(READY)
        assert "starting empty" in "\n".join(dev.lines)
        started = Client(dev.api_url()).start("count", {"steps": 1}, id="kept-across")
        assert started["id"] == "kept-across"
        code, after = dev.stop(sig)
    finally:
        dev.kill()
    assert code == 0, dev.lines
    assert f"{sig.name}: stopping; saving the state" in after
    assert "state saved to" in after and "1 run(s)" in after
    saved = json.loads((state_dir / "state.json").read_text())
    assert any(i["pk"]["S"].endswith("kept-across") for i in saved["items"] if "pk" in i)

    again = Dev(state_dir)
    try:
        ready = again.wait_for(READY)
        assert ready
        restored = next(x for x in again.lines if x.startswith("State:"))
        assert "restored 1 run(s), 1 unfinished" in restored
        assert Client(again.api_url()).get("kept-across")["status"] == "pending"
        code, _ = again.stop(signal.SIGINT)
        assert code == 0
    finally:
        again.kill()
