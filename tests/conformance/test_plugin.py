"""Conformance, plugin suite (requirements 10-x): hooks an application registers
on the worker (worker/plugins.py) see each claim start and end, each step start
and end, and each attempt of its function, and one that raises changes no run.

The suite's worker registers four plugins (`workflows_plugin.PLUGINS`): the
requirements' CONFPLUGIN, the faulty one of 10-4 and the two of 10-5. Every run
meets all four, so every scenario also shows the faulty plugin changing
nothing. The requirements' statuses are this engine's words: SUCCEEDED is
`completed` for a run and `succeeded` for an operation or attempt, FAILED is
`failed`; an invocation that ends in a suspend ends `parked`.
"""

from __future__ import annotations

from typing import Any

from tests.conformance import workflows_plugin
from tests.conformance.workflows_plugin import PLUGINS, records

WORKFLOWS = workflows_plugin.ALL

SCENARIOS = {
    "10-1": ("plugin-greet", "ada"),
    "10-2": ("plugin-greet", "grace"),
    "10-3": ("plugin-10-3", None),
    "10-4": ("plugin-greet", "edsger"),
    "10-5": ("plugin-greet", "barbara"),
    "10-6": ("plugin-10-6", None),
    "10-7": ("plugin-10-7", None),
}


def _hooks(o: Any, plugin: str = "CONFPLUGIN") -> list[dict[str, Any]]:
    """The plugin's records for the run, without the run id."""
    return [
        {k: v for k, v in r.items() if k not in ("run", "plugin")}
        for r in records(o.run.id, plugin)
    ]


def _index(hooks: list[dict[str, Any]], **match: Any) -> int:
    found = [i for i, h in enumerate(hooks) if all(h.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, hooks)
    return found[0]


def _count(hooks: list[dict[str, Any]], **match: Any) -> int:
    return sum(all(h.get(k) == v for k, v in match.items()) for h in hooks)


def test_plugins_are_registered_in_order() -> None:
    assert [p.label for p in PLUGINS] == [
        "CONFPLUGIN",
        "CONFPLUGIN-FAULTY",
        "CONFPLUGIN-A",
        "CONFPLUGIN-B",
    ]


def test_10_1_invocation_hooks_start_and_end_one_invocation(outcomes) -> None:
    o = outcomes["10-1"]
    assert (o.status, o.output) == ("completed", "Hello, ada!")
    assert o.ran("greet") == 1 and o.parks == 0
    hooks = _hooks(o)
    start = _index(hooks, hook="invocation-start", first=True)
    end = _index(hooks, hook="invocation-end", status="completed")
    attempt = _index(hooks, hook="attempt-start", n=1)  # the step body runs in between
    assert start < attempt < end == len(hooks) - 1
    assert _count(hooks, hook="invocation-start", first=False) == 0


def test_10_2_operation_hooks_carry_the_recorded_id(outcomes) -> None:
    o = outcomes["10-2"]
    assert o.status == "completed"
    assert o.shape() == [("0", "step", "greet")]
    hooks = _hooks(o)
    assert _count(hooks, hook="operation-start", op="0") == 1
    assert _count(hooks, hook="operation-end", op="0", status="succeeded") == 1
    assert _count(hooks, hook="operation-end", status="failed") == 0
    assert _index(hooks, hook="operation-start") < _index(hooks, hook="operation-end")


def test_10_3_attempt_hooks_fire_per_attempt_with_its_number_and_outcome(outcomes) -> None:
    o = outcomes["10-3"]
    assert (o.status, o.output) == ("completed", "Operation succeeded")
    assert o.ran("unreliable") == 2
    rec = o.ops["0"]
    assert [a["attempt"] for a in rec.attempts] == [1, 2]
    attempts = [h for h in _hooks(o) if h["hook"].startswith("attempt-")]
    assert attempts == [
        {"hook": "attempt-start", "n": 1, "op": "0"},
        {"hook": "attempt-end", "n": 1, "op": "0", "outcome": "failed"},
        {"hook": "attempt-start", "n": 2, "op": "0"},
        {"hook": "attempt-end", "n": 2, "op": "0", "outcome": "succeeded"},
    ]


def test_10_4_a_plugin_that_raises_changes_no_run(outcomes) -> None:
    o = outcomes["10-4"]
    assert (o.status, o.output) == ("completed", "Hello, edsger!")
    assert o.shape() == [("0", "step", "greet")] and o.ran("greet") == 1
    faulty = _hooks(o, "CONFPLUGIN-FAULTY")
    for hook in (
        "invocation-start",
        "invocation-end",
        "operation-start",
        "operation-end",
        "attempt-start",
        "attempt-end",
    ):
        assert _count(faulty, hook=hook) == 1, hook  # each ran, then raised
    assert _index(faulty, hook="invocation-start") < _index(faulty, hook="invocation-end")
    # The plugin registered after it still saw every hook.
    assert len(_hooks(o, "CONFPLUGIN-A")) == len(faulty)


def test_10_5_every_registered_plugin_receives_the_hooks(outcomes) -> None:
    o = outcomes["10-5"]
    assert (o.status, o.output) == ("completed", "Hello, barbara!")
    a, b = _hooks(o, "CONFPLUGIN-A"), _hooks(o, "CONFPLUGIN-B")
    assert _index(a, hook="invocation-start") < _index(a, hook="invocation-end", status="completed")
    assert _count(b, hook="invocation-start") == 1
    assert _count(b, hook="invocation-end", status="completed") == 1


def test_10_6_the_first_invocation_flag_is_true_once_then_false_on_replay(outcomes) -> None:
    o = outcomes["10-6"]
    assert o.status == "completed" and o.parks == 1
    hooks = [h for h in _hooks(o) if h["hook"].startswith("invocation-")]
    assert hooks == [
        {"hook": "invocation-start", "first": True},
        {"hook": "invocation-end", "status": "parked"},
        {"hook": "invocation-start", "first": False},
        {"hook": "invocation-end", "status": "completed"},
    ]


def test_10_7_the_invocation_end_hook_sees_a_failed_run(outcomes) -> None:
    o = outcomes["10-7"]
    assert (o.status, o.error_type) == ("failed", "StepFailedError")
    assert o.ran("fails") == 1
    hooks = _hooks(o)
    start = _index(hooks, hook="invocation-start", first=True)
    assert _index(hooks, hook="invocation-end", status="failed") > start
    assert _count(hooks, hook="invocation-end", status="completed") == 0
    assert _count(hooks, hook="operation-end", op="0", status="failed") == 1
