"""Default operation names: `ctx.parallel`, `ctx.map` and `ctx.wait_for_callback`
may be called without a name.

A name is recorded with its operation and checked on every replay
(`_core.check`: kind and name at each id), so it is what tells a replay that the
code changed under a running run. Without a name, the default is the function's
qualified name (`charge_all.<locals>.charge`, `notify`): swapping `map(charge)`
for `map(refund)` at the same place is still a NonDeterminismError. A function
with no usable name (a lambda, a `functools.partial`) gives the operation's kind
(`parallel`, `map`, `wait_for_callback`), as a parallel always does: the replay
check then compares the kind only, as it would for two operations given one name.
"""

from __future__ import annotations

from typing import Any

MAX_NAME = 200


def default_name(fn: Any, kind: str) -> str:
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(qualname, str) or not qualname or "<lambda>" in qualname:
        return kind
    return qualname[:MAX_NAME]


def branch_name(fn: Any, index: int) -> str:
    """A parallel branch's default name (nested batches record it)."""
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(qualname, str) or not qualname or "<lambda>" in qualname:
        return f"branch-{index}"
    return qualname[:MAX_NAME]
