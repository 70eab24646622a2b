"""The chaos campaign's worker processes (tests/chaos/campaign.py): started,
SIGKILLed, SIGSTOPped past their lease and replaced."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import testing_faults as faults

if TYPE_CHECKING:
    from .campaign import Config

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """N worker processes (`orchestrator worker tests.chaos.workflows`), each with
    its own fault seed; `kill_one` SIGKILLs one and starts a fresh one in its place."""

    def __init__(
        self, cfg: Config, env: dict[str, str], spec: Callable[[int], str], logdir: Path
    ) -> None:
        self._cfg = cfg
        self._env = env
        self._spec = spec
        self._logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.kills = 0
        self.pauses = 0
        self._timers: list[threading.Timer] = []

    def _spawn(self) -> subprocess.Popen[bytes]:
        n = self.started
        self.started += 1
        env = {**self._env, faults.ENV_FAULTS: self._spec(1000 + n)}
        log = open(self._logdir / f"worker-{n}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "worker",
                "tests.chaos.workflows",
                "--concurrency",
                str(self._cfg.concurrency),
                "--grace",
                "2",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return proc

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self._cfg.workers)]

    def kill_one(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.procs))
        proc = self.procs[i]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            self.kills += 1
        self.procs[i] = self._spawn()

    def pause_one(self, rng: random.Random, seconds: float) -> None:
        """SIGSTOP a worker (a GC pause, a frozen VM) past its lease, then SIGCONT:
        it wakes as a fenced-off owner with requests in flight."""
        proc = self.procs[rng.randrange(len(self.procs))]
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGSTOP)
        self.pauses += 1

        def resume() -> None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)

        timer = threading.Timer(seconds, resume)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def respawn_dead(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                self.procs[i] = self._spawn()

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
