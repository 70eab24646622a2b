"""The restart fault's own parts (tests/chaos/restart.py): the loop check
reports a run claimed past the bound, and the gate refuses requests once
closed and waits for those already inside."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from orchestrator.model import Run, Status
from tests.chaos.checks import Report
from tests.chaos.restart import MAX_CLAIMS, Gate, check_restarts


def _run(rid: str, epoch: int) -> Run:
    return Run(rid, "chaos.steps", Status.COMPLETED, "{}", created_at=0, updated_at=0, epoch=epoch)


def test_a_run_claimed_past_the_bound_is_a_violation() -> None:
    outcome = SimpleNamespace(
        runs={"calm": _run("calm", 3), "loops": _run("loops", MAX_CLAIMS + 1), "gone": None},
        restored=[{"runs": 2}],
    )
    report = Report(violations={}, facts={})
    check_restarts(outcome, report)
    assert report.violations["no run loops (claims per run bounded)"] == [
        f"loops: {MAX_CLAIMS + 1} claims (completed)"
    ]
    assert report.facts["most claims of one run"] == MAX_CLAIMS + 1
    assert report.facts["stack restarts survived"] == 1
    assert report.violations["a restart keeps every value and run of its snapshot"] == []


def test_a_restart_that_lost_a_value_or_a_run_is_a_violation() -> None:
    outcome = SimpleNamespace(
        runs={},
        restored=[
            {"runs": 2, "values lost": 0, "runs lost": 0},
            {"runs": 2, "values lost": 1, "runs lost": 2},
        ],
    )
    report = Report(violations={}, facts={})
    check_restarts(outcome, report)
    assert report.violations["a restart keeps every value and run of its snapshot"] == [
        "restart 2: 1 value(s), 2 run(s) lost"
    ]


def test_a_closed_gate_refuses_new_requests_and_waits_for_those_inside() -> None:
    inside = threading.Event()
    release = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        inside.set()
        release.wait(30)
        start_response("200 OK", [])
        return [b"done"]

    gate = Gate(app)
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(gate({}, lambda *a: None)))
    first.start()
    assert inside.wait(30)
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (gate.close(timeout=30), closed.set()))
    closer.start()

    statuses: list[str] = []
    headers: list[Any] = []

    def start_response(status: str, hs: list[tuple[str, str]]) -> None:
        statuses.append(status)
        headers.extend(hs)

    # Closed while a request is inside: a new one is refused at once, and the
    # close waits until the one inside has left.
    while gate._open:  # until close() has taken effect
        threading.Event().wait(0.01)
    assert gate({}, start_response) == [
        b'{"__type":"ServiceUnavailable","message":"the stack is restarting"}'
    ]
    assert statuses == ["503 Service Unavailable"] and ("Connection", "close") in headers
    assert not closed.is_set()
    release.set()
    first.join(30)
    closer.join(30)
    assert closed.is_set() and answers == [[b"done"]]
