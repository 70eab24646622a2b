"""A child's outcome as its parent receives it (orchestrator/children.py): an
offloaded output travels as its pointer, whoever delivers it (the child's
worker, the sweeper or the API read the run as stored)."""

from __future__ import annotations

import json

from orchestrator.children import outcome_payload
from orchestrator.model import Run, Status
from orchestrator.payloads import pointer_of


def _child(output: str | None) -> Run:
    return Run(
        id="p-0",
        name="c",
        status=Status.COMPLETED,
        input="null",
        created_at=1,
        updated_at=1,
        output=output,
        parent_id="p",
        parent_op="0",
    )


def test_an_inline_output_is_carried_as_the_value() -> None:
    outcome = json.loads(outcome_payload(_child('{"a":1}')))
    assert outcome["output"] == {"a": 1} and "output_ref" not in outcome


def test_an_offloaded_output_is_carried_as_its_pointer() -> None:
    pointer, _ = pointer_of(b'"' + b"x" * 100_000 + b'"')
    outcome = json.loads(outcome_payload(_child(pointer)))
    assert outcome == {
        "child_id": "p-0",
        "status": "completed",
        "output": None,
        "error": None,
        "output_ref": pointer,
    }
