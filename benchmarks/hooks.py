"""Count every AWS call a process makes, with botocore event hooks.

Three events of botocore's (and aiobotocore's) client pipeline are used:

- ``before-call.<service>.<Operation>``: a call begins (stamps its start time);
- ``before-send.<service>.<Operation>``: one HTTP request goes on the wire
  (a retry sends another one). This is what AWS bills, so it is the count used
  for money. The hook also tags the request with an ``X-Bench-Role`` header so
  that the metering moto server can charge DynamoDB capacity to the process
  that sent it;
- ``after-call.<service>.<Operation>`` / ``after-call-error``: the call ended,
  with its parsed response (error codes, and for SQS ReceiveMessage how many
  messages came back: an empty long poll is an idle receive).

`install_everywhere` patches ``botocore.session.Session.__init__`` so that
every session created afterwards in the process (boto3's, and aioboto3's
``AioSession``, a subclass) carries the hooks; clients copy their session's
handlers when they are created. `Recorder.install` registers on one session.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.session

ROLE_HEADER = "X-Bench-Role"
# A context variable, not a thread-local: threads the code under test starts
# with a copy of its context (the sweeper's per-shard threads) keep the role.
_role: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_role", default=None)


def _new_stat() -> dict[str, Any]:
    return {
        "calls": 0,
        "sent": 0,
        "errors": defaultdict(int),
        "messages": 0,
        "empty_receives": 0,
        "latency_s": 0.0,
    }


@contextlib.contextmanager
def role(name: str) -> Iterator[None]:
    """Attribute the calls made inside the block to `name` (this thread, and
    threads started with a copy of its context)."""
    token = _role.set(name)
    try:
        yield
    finally:
        _role.reset(token)


def wrap_role(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with role(name):
            return fn(*args, **kwargs)

    return wrapped


class Recorder:
    """Per role, per "service.Operation": calls, HTTP requests sent, errors by
    code, messages received and empty receives, and summed latency."""

    def __init__(self, default_role: str) -> None:
        self.default_role = default_role
        self._lock = threading.Lock()
        self.stats: dict[str, dict[str, dict[str, Any]]] = defaultdict(
            lambda: defaultdict(_new_stat)
        )

    def current_role(self) -> str:
        return _role.get() or self.default_role

    def reset(self) -> None:
        with self._lock:
            self.stats.clear()

    # --- handlers ----------------------------------------------------------------------
    @staticmethod
    def _op(event_name: str) -> str:
        parts = event_name.split(".")
        return f"{parts[1]}.{parts[2]}" if len(parts) >= 3 else event_name

    def _before_call(self, context: dict[str, Any] | None = None, **_: Any) -> None:
        if context is not None:
            context["bench_t0"] = time.perf_counter()
            context["bench_role"] = self.current_role()

    def _before_send(self, request: Any, event_name: str, **_: Any) -> None:
        who = self.current_role()
        request.headers[ROLE_HEADER] = who
        with self._lock:
            self.stats[who][self._op(event_name)]["sent"] += 1

    def _after_call(
        self,
        http_response: Any,
        parsed: dict[str, Any],
        event_name: str,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        ctx = context or {}
        who = ctx.get("bench_role") or self.current_role()
        op = self._op(event_name)
        with self._lock:
            stat = self.stats[who][op]
            stat["calls"] += 1
            if "bench_t0" in ctx:
                stat["latency_s"] += time.perf_counter() - ctx["bench_t0"]
            if getattr(http_response, "status_code", 200) >= 300:
                code = (parsed or {}).get("Error", {}).get("Code") or "HTTP error"
                stat["errors"][code] += 1
            if op == "sqs.ReceiveMessage":
                n = len((parsed or {}).get("Messages") or [])
                stat["messages"] += n
                if n == 0:
                    stat["empty_receives"] += 1

    def _after_call_error(
        self,
        exception: BaseException,
        event_name: str,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        ctx = context or {}
        who = ctx.get("bench_role") or self.current_role()
        with self._lock:
            stat = self.stats[who][self._op(event_name)]
            stat["calls"] += 1
            stat["errors"][type(exception).__name__] += 1

    # --- wiring ------------------------------------------------------------------------
    def install(self, session: Any) -> None:
        """Register on a botocore Session (or a boto3 Session: its `.events`)."""
        events = getattr(session, "events", None) or session
        register = events.register
        register("before-call", self._before_call, unique_id=f"bench-bc-{id(self)}")
        register("before-send", self._before_send, unique_id=f"bench-bs-{id(self)}")
        register("after-call", self._after_call, unique_id=f"bench-ac-{id(self)}")
        register("after-call-error", self._after_call_error, unique_id=f"bench-ae-{id(self)}")

    def install_everywhere(self) -> None:
        original = botocore.session.Session.__init__
        recorder = self

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            recorder.install(self)

        botocore.session.Session.__init__ = __init__  # type: ignore[method-assign]

    # --- output ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        with self._lock:
            return json.loads(json.dumps(self.stats))

    def dump(self, path: Path, **extra: Any) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"calls": self.snapshot(), **extra}))
        tmp.replace(path)


def merge(*snapshots: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Merge call snapshots from several processes (roles are distinct or summed)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for snap in snapshots:
        for who, ops in snap.items():
            for op, stat in ops.items():
                into = out.setdefault(who, {}).setdefault(op, json.loads(json.dumps(_new_stat())))
                for k, v in stat.items():
                    if k == "errors":
                        for code, n in v.items():
                            into["errors"][code] = into["errors"].get(code, 0) + n
                    else:
                        into[k] += v
    return out
