"""The order a run's operations are shown in: a tree walk of their ids.

The store returns operations by sort key, which pads numeric parts and puts
every task scope (`t<k>`, docs/architecture.md "Operation ids") after every
numeric sibling: the steps of `asyncio.gather(a(ctx), b(ctx))` at the root
(`t0.0`, `t1.0`, ...) came last, after operations the workflow started long
after them. Shown that way they read as children of whatever came before.

Here each scope's members are ordered as the code created them: numeric
operations by their counter, task scopes by theirs (creation order), and a
task scope is placed before the first numeric sibling that started after its
first operation did (the counters of the two are separate, so start times
are the only record of how they interleave; a tie keeps the numeric one first,
as `create_task` then a step starts the step before the task runs). A scope
is shown whole, its nested operations under it. The generation prefix of a
continued-as-new run (`~g`) is the root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["display_order", "task_scope"]


@dataclass
class _Node:
    part: str
    ops: list[dict[str, Any]] = field(default_factory=list)  # the operation at this id, if any
    children: dict[str, _Node] = field(default_factory=dict)
    first: str | None = None  # the earliest start (ISO 8601) of it and everything under it


def _parts(op_id: str) -> list[str]:
    parts = op_id.split(".")
    return parts[1:] if parts[0].startswith("~") else parts


def task_scope(part: str) -> bool:
    """Whether an id part names a task scope (`t3`) rather than an operation."""
    return part.startswith("t") and part[1:].isdigit()


def _number(part: str) -> int:
    return int(part[1:]) if task_scope(part) else int(part) if part.isdigit() else 0


def display_order(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`steps` (views with `id` and `started_at`) in the order to show them."""
    root = _Node("")
    for s in steps:
        node = root
        for part in _parts(s["id"]):
            node = node.children.setdefault(part, _Node(part))
        node.ops.append(s)
    _first(root)
    out: list[dict[str, Any]] = []
    _walk(root, out)
    return out


def _first(node: _Node) -> str | None:
    starts = [s["started_at"] for s in node.ops if s.get("started_at")]
    starts += [t for t in (_first(c) for c in node.children.values()) if t is not None]
    node.first = min(starts) if starts else None  # ISO 8601 in UTC: text order is time order
    return node.first


def _walk(node: _Node, out: list[dict[str, Any]]) -> None:
    out.extend(node.ops)
    numbered = sorted(
        (c for c in node.children.values() if not task_scope(c.part)), key=lambda c: _number(c.part)
    )
    tasks = sorted(
        (c for c in node.children.values() if task_scope(c.part)), key=lambda c: _number(c.part)
    )
    for child in numbered:
        # Task scopes created before this operation started (in creation order).
        while tasks and _before(tasks[0], child):
            _walk(tasks.pop(0), out)
        _walk(child, out)
    for task in tasks:
        _walk(task, out)


def _before(task: _Node, op: _Node) -> bool:
    return task.first is not None and op.first is not None and task.first < op.first
