"""`orchestrator steps`: operations nested by id, big batches collapsed with
their failed branches first."""

from __future__ import annotations

from rich.console import Console

from orchestrator.cli.format import _steps_table, _visible_steps


def _step(op: str, name: str, **extra: object) -> dict:
    return {
        "id": op,
        "name": name,
        "kind": "step",
        "started_at": "2026-11-26T10:00:00.000Z",
        "recorded_at": "2026-11-26T10:00:01.000Z",
        "result": 1,
        "error": None,
        **extra,
    }


def _map_of(n: int, failed: set[int]) -> list[dict]:
    items = [
        {"index": i, "status": "failed" if i in failed else "succeeded", "result": None}
        for i in range(n)
    ]
    steps = [
        _step("0", "before"),
        {
            **_step("1", "resize"),
            "kind": "map",
            "items": items,
            "completion_reason": "all_completed",
        },
    ]
    for i in range(n):
        err = {"type": "ValueError", "message": f"bad {i}"} if i in failed else None
        steps.append(_step(f"1.{i}.0", f"item-{i}", error=err))
    steps.append(_step("2", "after"))
    return steps


def test_a_map_of_200_items_is_collapsed_with_failures_first() -> None:
    steps = _map_of(200, failed={150, 7})
    rows = _visible_steps(steps, expand=False)
    ids = [r["id"] for r in rows if isinstance(r, dict)]
    assert ids == ["0", "1", "1.7.0", "1.150.0", "2"]
    notes = [r for r in rows if isinstance(r, str)]
    assert notes == ["… 198 operations of batch 1 hidden (--all shows them)"]
    console = Console(width=160, record=True)
    console.print(_steps_table(steps))
    text = console.export_text()
    assert "200 branches: 2 failed, 198 succeeded (all_completed)" in text
    assert "    1.150.0" in text  # nested: indented by depth
    assert len(text.splitlines()) < 12


def test_small_batches_and_expand_show_every_operation() -> None:
    assert len(_visible_steps(_map_of(5, {1}), expand=False)) == 5 + 3
    assert len(_visible_steps(_map_of(200, {1}), expand=True)) == 200 + 3


def test_an_unfinished_big_batch_is_collapsed_from_its_operation_ids() -> None:
    steps = _map_of(30, failed={3})
    steps[1] = {**steps[1], "items": [], "completion_reason": None}
    rows = _visible_steps(steps, expand=False)
    assert [r["id"] for r in rows if isinstance(r, dict)] == ["0", "1", "1.3.0", "2"]
