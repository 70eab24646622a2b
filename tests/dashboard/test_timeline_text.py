"""The run page's timeline (orchestrator/dashboard/timeline.js) rendered under
Node with a minimal DOM (tests/dashboard/render_timeline.js): what each entry
says for a callback, a patch marker and the operations of asyncio tasks. No
browser needed; Node.js is a prerequisite of the repository (Makefile)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from orchestrator.api.models import iso, step_view
from orchestrator.model import StepKind, StepRecord
from orchestrator.step_order import display_order
from tests.helpers import ROOT

T0 = 1_790_000_000_000
RUN = {"status": "completed", "created_at": iso(T0 - 1000), "updated_at": iso(T0 + 9000)}


def _timeline(steps: list[dict[str, Any]], run: dict[str, Any] = RUN) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node, "Node.js is needed (the Makefile's prerequisites)"
    done = subprocess.run(
        [node, str(ROOT / "tests" / "dashboard" / "render_timeline.js")],
        input=json.dumps({"run": run, "steps": steps}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    return [e for e in entries if e["kind"] != "run"]  # created / completed


def _callback(body: object | None) -> dict[str, Any]:
    rec = StepRecord(
        "0",
        "approval",
        StepKind.CALLBACK,
        1,
        T0 + 500,
        result=None if body is None else json.dumps(body),
        started_at=T0,
        signal="sys:cb:0",
        resolved=body is not None,
        callback_id="AbCdEf" + "x" * 26,
    )
    return step_view(rec)


def test_a_callback_shows_its_result_or_its_error_not_the_stored_wrapper() -> None:
    [ok] = _timeline([_callback({"ok": True, "result": {"approved": True}})])
    assert "callback “approval”" in ok["body"] and "completed; result:" in ok["body"]
    assert "approved" in ok["body"] and '"ok"' not in ok["body"]
    error = {"type": "Rejected", "message": "over budget", "traceback": ""}
    [bad] = _timeline([_callback({"ok": False, "error": error})])
    assert "failed" in bad["body"] and "Rejected" in bad["body"] and "over budget" in bad["body"]
    [open_] = _timeline([_callback(None)], {**RUN, "status": "waiting"})
    assert "waiting for callback “approval”" in open_["body"] and "sys:cb" not in open_["body"]


def test_a_patch_marker_is_a_marker_with_no_duration() -> None:
    marker = step_view(StepRecord("0", "fix-1", StepKind.PATCH, 1, T0, resolved=True))
    [entry] = _timeline([marker])
    assert entry["kind"] == "patch"
    assert entry["body"] == "patch marker: this run took the code path of patch “fix-1”"
    assert "·" not in entry["head"] and "signal" not in entry["body"]  # no duration, no signal


def _op(op_id: str, started_ms: int) -> dict[str, Any]:
    rec = StepRecord(op_id, f"op-{op_id}", StepKind.STEP, 1, T0 + started_ms + 1,
                     result="1", started_at=T0 + started_ms, resolved=True)  # fmt: skip
    return step_view(rec)


def test_the_operations_of_a_task_sit_under_a_task_line_where_it_was_created() -> None:
    # The store's order: task scopes after every numeric id. The API orders them.
    stored = [_op("0", 0), _op("1", 10), _op("1.0", 11), _op("2", 90),
              _op("t0.0", 50), _op("t0.1", 60), _op("t1.0", 50)]  # fmt: skip
    entries = _timeline(display_order(stored))
    assert [(e["kind"], e["id"], e["depth"]) for e in entries] == [
        ("step", "0", 0),
        ("step", "1", 0),
        ("step", "1.0", 1),
        ("task", "t0", 0),
        ("step", "t0.0", 1),
        ("step", "t0.1", 1),
        ("task", "t1", 0),
        ("step", "t1.0", 1),
        ("step", "2", 0),
    ]


def test_the_run_page_orders_every_page_of_steps_as_the_api_orders_one() -> None:
    """The API orders the steps of each page (`display_order`); the run page gets
    every page and orders them all again, in JavaScript (`displayOrder`), which
    must agree with the Python on any set of ids: task scopes among numbered
    operations by start time, nested scopes, a continued-as-new generation."""
    import random

    node = shutil.which("node")
    assert node
    rng = random.Random(7)
    for _ in range(30):
        ids: set[str] = set()
        for _ in range(rng.randint(1, 40)):
            depth = rng.randint(1, 3)
            parts = [
                rng.choice([str(rng.randint(0, 12)), f"t{rng.randint(0, 3)}"]) for _ in range(depth)
            ]
            ids.add(".".join(parts))
        prefix = rng.choice(["", "~2."])
        steps = [{"id": prefix + i, "started_at": iso(T0 + rng.randint(0, 50) * 1000)} for i in ids]
        rng.shuffle(steps)
        done = subprocess.run(
            [node, str(ROOT / "tests" / "dashboard" / "render_timeline.js")],
            input=json.dumps({"order": True, "steps": steps}),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert json.loads(done.stdout) == [s["id"] for s in display_order(steps)], steps
