"""`orchestrator show --follow` prints every step of a run that ends between two
polls (found in a loaded full-suite run: the last step was never shown)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from orchestrator.api.models import run_view, step_view
from orchestrator.cli.runs import _follow
from orchestrator.model import Run, Status, StepKind, StepRecord

RUN = Run(id="f-1", name="waiter", status=Status.WAITING, input="{}", created_at=1, updated_at=2)
WAIT = step_view(
    StepRecord("0", "wait-0", StepKind.WAIT, 1, 3, result='"hi"', signal="go", resolved=True)
)
STEP = step_view(StepRecord("1", "after-0", StepKind.STEP, 2, 4, result='"done"', resolved=True))


class EndsBetweenPolls:
    """The run completes right after the follower's first look at its steps:
    the step it recorded last is only in a steps read made after that."""

    def __init__(self) -> None:
        self.gets = 0
        self.ended = False

    def get(self, workflow_id: str) -> dict[str, Any]:
        self.gets += 1
        if self.gets >= 2:
            self.ended = True
        if not self.ended:
            return run_view(RUN)
        return run_view(replace(RUN, status=Status.COMPLETED, output='["hi"]', updated_at=5))

    def steps(self, workflow_id: str) -> list[dict[str, Any]]:
        return [WAIT, STEP] if self.ended else [WAIT]


def test_a_run_that_ends_between_two_polls_shows_its_last_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _follow(EndsBetweenPolls(), "f-1", 0.01, as_json=False) == 0
    out = capsys.readouterr().out
    assert "#1 step after-0" in out
    assert "output:" in out
