"""`make conformance`'s per-suite summary, and the table it reads.

docs/conformance.md holds one table per suite: a requirement id, its title, and
either the test that covers it or "not applicable: <reason>". Loaded as a
pytest plugin (`-p tests.conformance.summary`), this module prints, after the
run, one line per suite from that table and the outcomes of its tests:

    conformance parallel: 19 passed, 3 not applicable
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"
SUITES = {
    "step": "1",
    "wait": "2",
    "child": "3",
    "callback": "4",
    "invoke": "5",
    "wait_for_condition": "6",
    "wait_for_callback": "7",
    "parallel": "8",
    "map": "9",
    "plugin": "10",
}
NOT_APPLICABLE = "not applicable:"

_ROW = re.compile(r"^\| (\d+-\d+) \| (.+?) \| (.+) \|$")
_TEST = re.compile(r"^`(test_\w+)`$")


@dataclass(frozen=True)
class Requirement:
    suite: str
    id: str
    title: str
    test: str | None  # None: not applicable
    reason: str = ""


def requirements(doc: Path = DOC) -> list[Requirement]:
    out: list[Requirement] = []
    suite = None
    for line in doc.read_text().splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            suite = name if name in SUITES else None
            continue
        m = _ROW.match(line)
        if suite is None or m is None:
            continue
        rid, title, cell = m.groups()
        test = _TEST.match(cell)
        if test is not None:
            out.append(Requirement(suite, rid, title, test.group(1)))
        elif cell.startswith(NOT_APPLICABLE):
            reason = cell[len(NOT_APPLICABLE) :].strip()
            out.append(Requirement(suite, rid, title, None, reason))
        else:
            raise ValueError(f"{doc.name}: {rid} names neither a test nor a reason: {cell!r}")
    return out


_outcomes: dict[str, str] = {}


def pytest_runtest_logreport(report: Any) -> None:
    if "tests/conformance/" not in report.nodeid.replace("\\", "/"):
        return
    name = report.nodeid.rsplit("::", 1)[-1]
    if report.failed:
        _outcomes[name] = "failed"
    elif report.skipped:
        _outcomes.setdefault(name, "skipped")
    elif report.when == "call":
        _outcomes.setdefault(name, "passed")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _outcomes:
        return
    for suite in SUITES:
        counts: Counter[str] = Counter()
        for req in requirements():
            if req.suite != suite:
                continue
            if req.test is None:
                counts["not applicable"] += 1
            else:
                counts[_outcomes.get(req.test, "not run")] += 1
        order = ["passed", "failed", "skipped", "not run", "not applicable"]
        parts = [f"{counts[k]} {k}" for k in order if counts[k]]
        terminalreporter.write_line(f"conformance {suite}: {', '.join(parts)}")
