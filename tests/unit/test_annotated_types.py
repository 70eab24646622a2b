"""`Annotated` metadata on a workflow's input and a step's return type is
honoured (pydantic constraints and serializers), the same on the first run and
on replay (the value goes through the recorded JSON both times)."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field, PlainSerializer, ValidationError

from orchestrator.model import StepKind, StepRecord
from worker import workflow
from worker._outcomes import _encode_result, _outcome, _result_adapter
from worker._registry import definition_of

Shout = Annotated[str, PlainSerializer(lambda v: v.upper(), return_type=str)]


def shout(text: str) -> Shout:
    return text


def test_a_step_return_serializer_is_applied_before_the_record() -> None:
    adapter = _result_adapter(shout)
    text = _encode_result(shout("hello world"), adapter)
    assert text == '"HELLO WORLD"'
    rec = StepRecord("0", "s", StepKind.STEP, 1, 1, result=text, resolved=True)
    assert _outcome(rec, adapter) == "HELLO WORLD"  # what the workflow sees, on replay too


def test_an_annotated_input_constraint_is_enforced() -> None:
    @workflow("positive")
    async def positive(ctx, input: Annotated[int, Field(gt=0)]) -> int:  # type: ignore[no-untyped-def]
        return input

    d = definition_of(positive)
    assert d.parse_input("3") == 3
    with pytest.raises(ValidationError):
        d.parse_input("0")
