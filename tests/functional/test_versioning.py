"""Changing a workflow under runs in flight: the patched / deprecated / removed
sequence across deploys, with runs waiting, sleeping and parked mid-branch at
each deploy (tests/versions/)."""

from __future__ import annotations

from typing import Any

from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import finish_through_sleeps, wait_status
from tests.versions import make


def _steps(stack: Any, run_id: str) -> list[tuple[str, str, str]]:
    return [(s.op_id, s.kind.value, s.name) for s in stack.store.steps(run_id)]


def test_patched_deprecated_removed_across_three_deploys_with_runs_in_flight(stack) -> None:
    clock, service = stack.clock, stack.service

    def deploy(version: int) -> BackgroundWorker:
        return BackgroundWorker([make(version)], stack.settings, clock=clock)

    # v1: A waits for approval after charging in dollars; C is approved and parked
    # in the map: item 0 labelled (old) and settling, item 1 sleeping before its label.
    with deploy(1):
        service.start("shipment", {}, "a")
        service.start("shipment", {}, "c")
        wait_status(stack, "a", "waiting")
        wait_status(stack, "c", "waiting")
        service.signal("c", "approve", None)
        wait_status(stack, "c", "sleeping")
    assert ("3.0.1", "step", "label-old") in _steps(stack, "c")

    # v2 (patched): old runs take the old paths where they passed them, the new
    # path where they had not; a new run D records the root marker and waits.
    with deploy(2):
        service.start("shipment", {}, "d")
        wait_status(stack, "d", "waiting")
        service.signal("a", "approve", None)
        assert finish_through_sleeps(stack, "a") == {
            "charge": "dollars",
            "labels": ["new", "new"],  # its map started under v2
            "version": 2,
        }
        assert finish_through_sleeps(stack, "c") == {
            "charge": "dollars",
            "labels": ["old", "new"],  # per branch: item 0 had passed the point
            "version": 2,
        }
        service.start("shipment", {}, "e")
        wait_status(stack, "e", "waiting")
        service.signal("e", "approve", None)  # E parks mid-map with a marker in item 0
        wait_status(stack, "e", "sleeping")
    assert ("1", "patch", "cents") in _steps(stack, "d")
    assert ("4.0.1", "patch", "label") in _steps(stack, "e")
    assert ("4.1.2", "patch", "label") not in _steps(stack, "e")  # item 1 not there yet

    # v3 (deprecated): runs that recorded markers replay them; F records none.
    with deploy(3):
        service.start("shipment", {}, "f")
        wait_status(stack, "f", "waiting")
        service.signal("d", "approve", None)
        assert finish_through_sleeps(stack, "e") == {
            "charge": "cents",
            "labels": ["new", "new"],
            "version": 3,
        }
        assert finish_through_sleeps(stack, "d")["charge"] == "cents"
    assert [k for _, k, _ in _steps(stack, "f")] == ["step", "step", "wait"]
    # E's item 1 reached the deprecated call with no marker: nothing was recorded.
    assert not any(op.startswith("4.1") and kind == "patch" for op, kind, _ in _steps(stack, "e"))

    # v4 (guards removed): F, recorded under v3, completes; so does a new run.
    with deploy(4):
        service.start("shipment", {}, "g")
        service.signal("f", "approve", None)
        service.signal("g", "approve", None)
        for run_id in ("f", "g"):
            out = finish_through_sleeps(stack, run_id)
            assert out == {"charge": "cents", "labels": ["new", "new"], "version": 4}
            assert "patch" not in {k for _, k, _ in _steps(stack, run_id)}


def test_the_first_claiming_build_id_is_recorded_shown_and_filtered(stack, capsys) -> None:
    from orchestrator import Client
    from orchestrator.cli import main
    from tests.workflows import sleeper

    client = Client(stack.api_url)
    with BackgroundWorker([sleeper], stack.settings, clock=stack.clock, build_id="2026.11.1"):
        stack.service.start("sleeper", {"seconds": 3600}, "b1")
        wait_status(stack, "b1", "sleeping")
    stack.service.start("sleeper", {"seconds": 3600}, "b2")  # not claimed yet
    with BackgroundWorker([sleeper], stack.settings, clock=stack.clock, build_id="2026.11.2"):
        stack.clock.advance(7200)
        wait_status(stack, "b1", "completed")
        wait_status(stack, "b2", "sleeping")
    assert stack.store.get("b1").build_id == "2026.11.1"  # the first claim's, kept
    assert stack.store.get("b2").build_id == "2026.11.2"
    assert [r["id"] for r in client.list(build_id="2026.11.1")["workflows"]] == ["b1"]
    assert main(["--api-url", stack.api_url, "list", "--build-id", "2026.11.2"]) == 0
    listed = capsys.readouterr().out
    assert "BUILD" in listed and "b2" in listed and "b1 " not in listed
