"""What the API, the CLI and the dashboard show for runs and steps (issue #17,
items 3 and 6): a finished run's open wait stops the clock, a run nobody
claimed does not read "running", and every step lists its attempts."""

from __future__ import annotations

import json
from dataclasses import replace

from orchestrator.api.models import step_view
from orchestrator.cli import format as cli_format
from orchestrator.model import StepKind, StepRecord

T0 = 1_790_000_000_000


def _iso(ms: int) -> str:
    from orchestrator.api.models import iso

    return str(iso(ms))


def test_a_step_that_succeeded_at_once_lists_its_one_attempt() -> None:
    rec = StepRecord("0", "s", StepKind.STEP, 1, T0 + 20, result="1", started_at=T0, resolved=True)
    view = step_view(rec)
    assert view["attempts"] == [
        {"attempt": 1, "started_at": _iso(T0), "finished_at": _iso(T0 + 20)}
    ]


def _cancelled_run() -> dict:
    return {
        "id": "r",
        "name": "approval",
        "status": "cancelled",
        "created_at": _iso(T0 - 1000),
        "updated_at": _iso(T0 + 1780),
        "attempt": 1,
    }


def test_an_open_wait_of_a_finished_run_lasts_until_the_run_ended() -> None:
    wait = {
        "id": "0",
        "position": 0,
        "name": "approval",
        "kind": "wait",
        "signal": "approved",
        "started_at": _iso(T0),
        "recorded_at": _iso(T0),
        "resolved": False,
        "deadline": None,
    }
    run = _cancelled_run()
    assert cli_format._took(wait, run) == "1.78 s"  # not the time since it started
    assert "never came" in cli_format._outcome(wait, run)
    with cli_format.out.capture() as cap:
        cli_format.out.print(cli_format._steps_table([wait], run))
    assert "waiting for" not in cap.get()


def test_a_pending_run_nobody_claimed_does_not_read_running() -> None:
    run = {
        **_cancelled_run(),
        "status": "pending",
        "attempt": 0,
        "input": {},
        "output": None,
        "error": None,
    }
    with cli_format.out.capture() as cap:
        cli_format._print_run(run)
    text = " ".join(cap.get().split())
    assert "running" not in text and "not claimed by a worker yet" in text


def _runs() -> list[dict]:
    base = {"created_at": _iso(T0), "updated_at": _iso(T0 + 310), "attempt": 1}
    return [
        {**base, "id": "0b0c3a5e-1f4e-4b57-9d7e-3f2b1c0a9e11", "name": "greet",
         "status": "completed", "output": "Hello, World!"},
        {**base, "id": "5d9f1a40-2b7c-4e0e-8f1d-6a3b2c1d0e22", "name": "greet-v2",
         "status": "pending", "attempt": 0, "unserved": True},
        {**base, "id": "7e1d2c3b-4a59-4687-9a8b-7c6d5e4f3a33", "name": "order",
         "status": "failed", "error": {"type": "StepFailedError", "message": "card declined"}},
    ]  # fmt: skip


def _render(renderable, width: int) -> str:
    from rich.console import Console

    console = Console(width=width, record=True, highlight=False)
    with console.capture() as cap:
        console.print(renderable)
    return cap.get()


def test_list_at_80_columns_keeps_duration_and_detail() -> None:
    text = _render(cli_format._runs_table(_runs(), width=80), 80)
    assert "DURATION" in text and "310 ms" in text
    assert "no live worker serves 'greet-v2'" in text
    assert "StepFailedError: card declined" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_list_piped_is_never_cut() -> None:
    runs = _runs()
    runs[2]["error"]["message"] = "card declined " + "x" * 200
    text = _render(cli_format._runs_table(runs, width=100_000), 100_000)
    assert runs[2]["error"]["message"] in text


def test_flags_show_no_value_in_help(capsys, monkeypatch) -> None:
    from orchestrator.cli import main

    monkeypatch.setenv("COLUMNS", "100")
    main(["start", "--help"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "--wait" in line]
    assert lines and not any("<bool>" in line for line in lines)


def test_an_invoke_shows_an_offloaded_child_output_as_a_reference() -> None:
    """The child's output went to S3: the parent's step view names it (size and
    digest) instead of showing a null output, and reads no value for it."""

    pointer = f"@s3:sha256:{'ab' * 32}:2500000"
    outcome = {"child_id": "r-0", "status": "completed", "output": None, "error": None}
    rec = StepRecord(
        "0",
        "child",
        StepKind.INVOKE,
        1,
        T0 + 20,
        result=json.dumps({**outcome, "output_ref": pointer}),
        started_at=T0,
        resolved=True,
    )
    view = step_view(rec, "r")
    assert view["child_id"] == "r-0" and view["child_status"] == "completed"
    assert view["result"] is None
    assert view["output_ref"] == {"bytes": 2_500_000, "sha256": "ab" * 32}
    inline = replace(rec, result=json.dumps({**outcome, "output": {"a": 1}}))
    assert "output_ref" not in step_view(inline, "r")


def test_a_run_whose_claims_keep_failing_shows_the_error_and_its_count() -> None:
    from orchestrator.api.models import run_view
    from orchestrator.model import ClaimFailure, Run, Status

    run = Run("r", "w", Status.RUNNING, "{}", T0, T0, epoch=3)
    assert "claim_failure" not in run_view(run)
    gone = ClaimFailure("ValueUnavailableError", "value 1a2b… is no longer stored (expired)", 2)
    view = run_view(replace(run, claim_failure=gone))
    assert view["claim_failure"] == {
        "type": "ValueUnavailableError",
        "message": "value 1a2b… is no longer stored (expired)",
        "count": 2,
    }
    assert view["attempt"] == 3
