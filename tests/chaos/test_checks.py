"""The campaign's invariant checks catch what they claim to catch: a clean
synthetic outcome passes, and each planted violation is reported by its check."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.model import Run, Status, StepKind, StepRecord
from tests.chaos.campaign import Config, Outcome, Planned
from tests.chaos.checks import CHECKS, check

RID = "chaos-1-0000-steps"
PK = f"WF#{RID}"
CLAIM = (
    "SET #st = :running, #ow = :owner, #lu = :lease, #ep = #ep + :one, #ua = :now REMOVE #wa, #ws"
)
FINISH = "SET #st = :status, #ua = :now, #out = :out REMOVE #ow, #lu, #dp, #da, #wa, #ws, #tm"


def _clean() -> Outcome:
    plan = [Planned(RID, "steps", "chaos.steps", {"n": 2, "pause": 0}, 0.0, "completed", [0, 1])]
    run = Run(
        id=RID,
        name="chaos.steps",
        status=Status.COMPLETED,
        input="{}",
        created_at=1000,
        updated_at=1300,
        epoch=2,
        output="[0,1]",
    )
    history = [
        StepRecord("0", "s0", StepKind.STEP, 1, 1100, result="0", resolved=True),
        StepRecord("1", "s1", StepKind.STEP, 2, 1250, result="1", resolved=True),
    ]
    executions = [
        {"run": RID, "step": "s0", "epoch": 1, "pid": 1, "t": 1090},
        {"run": RID, "step": "s1", "epoch": 1, "pid": 1, "t": 1150},  # killed before its put
        {"run": RID, "step": "s1", "epoch": 2, "pid": 2, "t": 1240},
    ]
    journal = [
        {"op": "dynamodb.PutItem", "pk": PK, "sk": "RUN", "t0": 1000, "t1": 1005},
        _claim(1, 1010, 1015),
        _step(0, 1, 1100, 1101, 1105),
        _claim(2, 1200, 1205),
        _step(1, 2, 1250, 1251, 1255),
        {
            "op": "dynamodb.UpdateItem",
            "pk": PK,
            "sk": "RUN",
            "update": FINISH,
            "epoch_cond": 2,
            "t0": 1300,
            "t1": 1305,
        },
    ]
    return Outcome(
        cfg=Config(),
        plan=plan,
        runs={RID: run},
        histories={RID: history},
        executions=executions,
        journal=journal,
        fault_log=[],
        kills=1,
        pauses=0,
        withheld=0,
        worker_processes=2,
        api_errors=Counter(),
        seconds=1.0,
        settled=True,
        workdir=Path("."),
    )


def _claim(epoch: int, t0: int, t1: int) -> dict[str, Any]:
    return {
        "op": "dynamodb.UpdateItem",
        "pk": PK,
        "sk": "RUN",
        "update": CLAIM,
        "new_epoch": epoch,
        "t0": t0,
        "t1": t1,
    }


def _step(pos: int, epoch: int, recorded: int, t0: int, t1: int) -> dict[str, Any]:
    return {
        "op": "dynamodb.PutItem",
        "pk": PK,
        "sk": f"STEP#{pos:06d}",
        "item_epoch": epoch,
        "recorded_at": recorded,
        "resolved": True,
        "t0": t0,
        "t1": t1,
    }


def test_a_clean_outcome_has_no_violation() -> None:
    report = check(_clean())
    assert report.total_violations == 0, report.violations
    assert report.facts["executions per step record"] == {1: 1, 2: 1}


def _failed(o: Outcome) -> None:
    o.runs[RID] = Run(RID, "chaos.steps", Status.FAILED, "{}", 1000, 1300, epoch=2)


def _recorded_twice(o: Outcome) -> None:
    o.histories[RID].append(
        StepRecord("2", "s1", StepKind.STEP, 2, 1260, result="1", resolved=True)
    )


def _resolved_twice(o: Outcome) -> None:
    o.journal.append(_step(1, 1, 1270, 1271, 1275))


def _ran_after_recorded(o: Outcome) -> None:
    o.executions.append({"run": RID, "step": "s0", "epoch": 2, "pid": 2, "t": 1210})


def _fenced_run_write(o: Outcome) -> None:
    # epoch 1's owner parks the run after epoch 2 claimed it (the condition is gone)
    o.journal.append(
        {
            "op": "dynamodb.UpdateItem",
            "pk": PK,
            "sk": "RUN",
            "update": "SET #st = :sleeping",
            "epoch_cond": 1,
            "t0": 1220,
            "t1": 1225,
        }
    )


def _fenced_step_write(o: Outcome) -> None:
    # epoch 1 records s1 after epoch 2's claim was acknowledged (recorded_at says so)
    o.journal[4] = _step(1, 1, 1230, 1231, 1235)


def _after_the_end(o: Outcome) -> None:
    o.journal.append(_step(2, 2, 1400, 1401, 1405))


def _never_executed(o: Outcome) -> None:
    o.executions = [x for x in o.executions if x["step"] != "s0"]


@pytest.mark.parametrize(
    ("plant", "which"),
    [
        (_failed, 0),
        (_recorded_twice, 1),
        (_resolved_twice, 2),
        (_ran_after_recorded, 3),
        (_fenced_run_write, 4),
        (_fenced_step_write, 5),
        (_after_the_end, 6),
        (_never_executed, 7),
    ],
)
def test_each_check_reports_its_planted_violation(
    plant: Callable[[Outcome], None], which: int
) -> None:
    o = copy.deepcopy(_clean())
    plant(o)
    report = check(o)
    assert report.violations[CHECKS[which]], f"{CHECKS[which]} missed it: {report.violations}"
