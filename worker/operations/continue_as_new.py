"""`ctx.continue_as_new`: end the run's current history and go on, under the
same id, with a fresh one and a new input (an entity workflow that loops
forever keeps a bounded replay cost).

`return await ctx.continue_as_new(next_input)` never returns: it unwinds the
workflow (a BaseException), and the worker then makes one fenced write on the
run (`AsyncStore.continue_run`, worker/_store.py): generation + 1, the new input,
the epoch moved on, the lease kept. The same worker goes on at once with the
next generation, whose history is empty and whose ids have their own sort-key
prefix (`model.generation_scope`), so a later claim's Query loads that
generation only. Earlier generations stay readable (`GET
/workflows/{id}/steps?generation=N`) and expire by TTL.
"""

from __future__ import annotations

import typing
from typing import Any

from orchestrator.store.codec import encode_json

from .. import _core
from .._registry import to_jsonable
from .._state import ContinueAsNew


async def continue_as_new(next_input: Any) -> typing.NoReturn:
    limit = _core.input_limit()  # stored like a result: offloaded above the threshold
    text = encode_json(to_jsonable(next_input), what="continue_as_new input", limit=limit)
    s, _, _ = _core.current()
    if s.unwinding is not None:
        raise s.unwinding
    _core.unwind(s, ContinueAsNew(text))
