"""Run a command beside a CPU hog: `python -m tests.cpu_hog [-n N] -- COMMAND...`.

The hog is N busy-loop processes (default: twice the cores), started before the
command and stopped when it ends, whatever its result: a failure, Ctrl-C
(SIGINT reaches the whole foreground process group, the hog included) or a
SIGTERM to this process. A hog process also stops by itself when this process
is gone (it checks its parent a few times a second), so even a SIGKILL here
leaves none behind. The exit status is the command's (130 on Ctrl-C).

`make test-loaded` runs `make test` this way (README, "Tests")."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from types import FrameType

# Spins, and leaves when its parent (the runner) is no longer the one it started
# with. SIGINT's default action ends it quietly (no KeyboardInterrupt trace).
HOG = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
parent = int(sys.argv[1])
n = 0
while True:
    n += 1
    if n % 1_000_000 == 0 and os.getppid() != parent:
        break
"""


def start_hog(hog: list[subprocess.Popen[bytes]], count: int) -> None:
    for _ in range(count):
        hog.append(subprocess.Popen([sys.executable, "-c", HOG, str(os.getpid())]))


def stop_hog(hog: list[subprocess.Popen[bytes]]) -> None:
    for p in hog:
        if p.poll() is None:
            p.kill()
    for p in hog:
        p.wait()


class _Terminated(Exception):
    pass


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cpu_hog", description=__doc__)
    parser.add_argument(
        "-n", type=int, default=2 * (os.cpu_count() or 1), help="busy processes (2 x cores)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    signal.signal(signal.SIGTERM, _on_term)
    hog: list[subprocess.Popen[bytes]] = []
    suite: subprocess.Popen[bytes] | None = None
    try:
        start_hog(hog, args.n)
        print(f"cpu hog: {len(hog)} busy processes beside: {' '.join(command)}", flush=True)
        suite = subprocess.Popen(command)
        return suite.wait()
    except KeyboardInterrupt:
        # The command got the same SIGINT (same process group): let it finish its way.
        if suite is not None:
            suite.wait()
        return 130
    except _Terminated:
        if suite is not None:
            suite.terminate()
            suite.wait()
        return 143
    finally:
        stop_hog(hog)
        print(f"cpu hog: {len(hog)} busy processes stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
