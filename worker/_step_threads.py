"""The sync steps' thread pool, which knows what runs in it: at shutdown a
sync function cannot be interrupted, and the process lives until it returns,
so the worker says which steps it waits for."""

from __future__ import annotations

import contextvars
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._logs import _fields as _log_fields


def _step_label(fn: Any, args: tuple[Any, ...]) -> str:
    """ "run <id> step <name>" for a step submitted as `copy_context().run(call)`
    (the context carries the log fields), else the function's name."""
    ctx = getattr(fn, "__self__", None)
    if isinstance(ctx, contextvars.Context):
        fields = ctx.get(_log_fields, {})
        if "step" in fields:
            return f"run {fields.get('workflow_id')} step {fields['step']}"
        fn = args[0] if args else fn
    fn = getattr(fn, "func", fn)
    return str(getattr(fn, "__qualname__", repr(fn)))


class _StepThreads(ThreadPoolExecutor):
    """The sync steps' thread pool, counting the functions running in it: at
    shutdown a sync function cannot be interrupted, and the process lives until
    it returns, so the worker says which ones it waits for."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._running: Counter[str] = Counter()
        self._lock = threading.Lock()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        label = _step_label(fn, args)

        def counted() -> Any:
            with self._lock:
                self._running[label] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self._running[label] -= 1
                    if not self._running[label]:
                        del self._running[label]

        return super().submit(counted)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running.elements())

    def join(self) -> None:
        for t in list(self._threads):
            t.join()
