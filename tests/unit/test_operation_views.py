"""Operations that the views used to mislabel: a callback shown as the engine's
signal and its stored wrapper, a patch marker shown as a signal with a start
time of zero, and the steps of `asyncio.gather` branches (task scopes) listed
last and nested under whatever came before them."""

from __future__ import annotations

import json

from rich.console import Console

from orchestrator.api.models import iso, run_view, step_view
from orchestrator.cli import format as cli_format
from orchestrator.model import Run, Status, StepKind, StepRecord
from orchestrator.step_order import display_order

T0 = 1_790_000_000_000


def _render(renderable: object) -> str:
    console = Console(width=200, record=True, highlight=False)
    with console.capture() as cap:
        console.print(renderable)
    return cap.get()


def _callback(body: object | None, **extra: object) -> StepRecord:
    return StepRecord(
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
        **extra,  # type: ignore[arg-type]
    )


def test_a_completed_callback_shows_its_result_not_the_stored_wrapper() -> None:
    view = step_view(_callback({"ok": True, "result": {"approved": True}}))
    assert view["result"] == {"approved": True} and view["error"] is None
    assert "ok" not in json.dumps(view.get("result"))
    text = cli_format._outcome(view)
    assert text == "callback 'approval' completed: {\"approved\": true}"


def test_a_failed_callback_shows_its_error() -> None:
    error = {"type": "Rejected", "message": "over budget"}
    view = step_view(_callback({"ok": False, "error": error}))
    assert view["result"] is None and view["error"] == error
    assert cli_format._outcome(view) == "callback 'approval' failed: Rejected: over budget"


def test_a_run_waiting_for_a_callback_names_the_callback_not_its_signal() -> None:
    run = Run("r", "cb", Status.WAITING, "null", T0, T0, epoch=1, wait_signal="sys:cb:0")
    view = run_view(run)
    assert view["waiting_for"] is None and view["waiting_for_callbacks"] == ["0"]
    steps = [step_view(_callback(None))]
    with cli_format.out.capture() as cap:
        cli_format._print_run({**view, "input": None}, steps=steps)
    text = cap.get()
    assert "waiting for callback 'approval'" in text and "sys:cb" not in text
    assert cli_format._detail(view) == "waiting for callback at operation 0"
    assert "waiting for callback 'approval'" in cli_format._outcome(steps[0])


def test_a_run_waiting_for_a_signal_and_a_child_lists_both() -> None:
    run = Run("r", "p", Status.WAITING, "null", T0, T0, wait_signal="go,sys:child:3")
    view = run_view(run)
    assert view["waiting_for"] == "go" and view["waiting_for_children"] == ["3"]
    assert cli_format._waits(view) == "signal 'go' or child run of operation 3"
    spawn = {"id": "3", "name": "spawn", "kind": "invoke"}
    assert cli_format._waits(view, [spawn]) == "signal 'go' or child run of 'spawn'"


def test_a_patch_marker_is_a_marker_with_no_duration() -> None:
    rec = StepRecord("0", "fix-1", StepKind.PATCH, 1, T0, resolved=True)
    view = step_view(rec)
    assert view["kind"] == "patch" and view["started_at"] is None
    assert "signal" not in view and "payload" not in view
    assert cli_format._outcome(view) == "patch marker: this run took the code path of patch 'fix-1'"
    # A marker has no duration, even with a start time read back as zero.
    assert cli_format._took({**view, "started_at": iso(0)}) == ""
    text = _render(cli_format._steps_table([view]))
    assert "signal" not in text and "None" not in text and "d " not in text


def _op(op_id: str, started_ms: int, kind: str = "step") -> dict:
    return {
        "id": op_id,
        "name": f"op-{op_id}",
        "kind": kind,
        "started_at": iso(T0 + started_ms),
        "recorded_at": iso(T0 + started_ms + 1),
        "result": None,
        "error": None,
    }


# A workflow: step 0, a child context at 1 (its steps 1.0, 1.1), then
# gather(a(ctx), b(ctx)) at the root (tasks t0, t1, two steps each), then step 2.
# Inside the context, a task of its own (1.t0) after 1.0. The store lists ids
# by sort key, task scopes after every numeric sibling:
STORE_ORDER = [
    _op("0", 0),
    _op("1", 10, "context"),
    _op("1.0", 11),
    _op("1.1", 40),
    _op("1.t0.0", 20),
    _op("2", 90),
    _op("t0.0", 50),
    _op("t0.1", 60),
    _op("t1.0", 50),
    _op("t1.1", 70),
]


def test_task_scopes_are_listed_where_the_code_created_them() -> None:
    ids = [s["id"] for s in display_order(STORE_ORDER)]
    assert ids == ["0", "1", "1.0", "1.t0.0", "1.1", "t0.0", "t0.1", "t1.0", "t1.1", "2"]


def test_task_scopes_keep_creation_order_and_a_generation_prefix_is_the_root() -> None:
    # t1 started no later than t0 (same ms): creation order decides between tasks.
    steps = [_op("~2.0", 0), _op("~2.1", 90), _op("~2.t1.0", 50), _op("~2.t0.0", 50)]
    assert [s["id"] for s in display_order(steps)] == ["~2.0", "~2.t0.0", "~2.t1.0", "~2.1"]
    # A tie with a numeric operation keeps the numeric one first.
    tie = [_op("0", 0), _op("1", 50), _op("t0.0", 50)]
    assert [s["id"] for s in display_order(tie)] == ["0", "1", "t0.0"]


def test_the_steps_table_groups_a_task_scope_under_a_header_of_its_own() -> None:
    rows = _render(cli_format._steps_table(STORE_ORDER, expand=True)).splitlines()[1:]
    firsts = [row.split()[0] for row in rows if row.strip()]
    assert firsts == [
        "0", "1", "1.0", "t0", "1.t0.0", "1.1", "t0", "t0.0", "t0.1", "t1", "t1.0", "t1.1", "2",
    ]  # fmt: skip
    indent = {row.split()[0]: len(row) - len(row.lstrip()) for row in rows if row.strip()}
    assert indent["t0.0"] == indent["1.0"] > indent["1"] == indent["2"]
    task_rows = [row for row in rows if row.split()[:2] == ["t0", "task"]]
    assert len(task_rows) == 2 and task_rows[1].index("t0") == indent["2"]
