"""`orchestrator schedule ...` against the embedded stack, in process."""

from __future__ import annotations

import json

import pytest

from orchestrator import resources as r
from orchestrator.cli import main
from orchestrator.local import LocalStack


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_schedule_commands(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(r.ENV_API_URL, stack.api_url)
    code, out, err = run(
        capsys,
        "schedule",
        "create",
        "nightly",
        "--workflow",
        "count",
        "--cron",
        "cron(0 2 * * ? *)",
        "--timezone",
        "Europe/Paris",
        "--input",
        '{"steps": 1}',
    )
    assert code == 0, err
    assert "nightly" in out and "next:" in out
    code, out, _ = run(capsys, "schedule", "list")
    assert code == 0 and "nightly" in out
    listed = json.loads(run(capsys, "schedule", "list", "--json")[1])
    assert listed[0]["timezone"] == "Europe/Paris"
    code, out, _ = run(capsys, "schedule", "pause", "nightly", "--note", "maintenance")
    assert code == 0 and "paused" in out
    shown = json.loads(run(capsys, "schedule", "show", "nightly", "--json")[1])
    assert shown["state"] == "paused" and shown["note"] == "maintenance"
    assert run(capsys, "schedule", "resume", "nightly")[0] == 0
    code, out, _ = run(capsys, "schedule", "trigger", "nightly")
    assert code == 0 and "started sched-nightly-" in out
    code, out, _ = run(
        capsys,
        "schedule",
        "backfill",
        "nightly",
        "--start",
        "2026-01-01T00:00:00Z",
        "--end",
        "2026-01-03T00:00:00Z",
    )
    assert code == 0 and "2 tick(s): 2 started" in out
    code, out, err = run(capsys, "schedule", "create", "x", "--workflow", "count", "--rate", "0 s")
    assert code != 0 and err.startswith("error:") and "Traceback" not in err
    assert run(capsys, "schedule", "delete", "nightly")[0] == 0
    code, _, err = run(capsys, "schedule", "show", "nightly")
    assert code != 0 and "no schedule named" in err
