"""Structured logs for the worker: every line carries the run's context.

The context (worker id, workflow id and name, run status, step name and
position, attempt) lives in a ContextVar, so concurrent runs in one worker
never mix their fields. `json_formatter()` (Powertools' formatter, as in the Lambdas) renders one JSON
object per line;
`configure_logging` installs it (or a text format for people).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Any

_fields: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_fields", default={})  # noqa: B039


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields to every log line emitted inside the block (this task only)."""
    token = _fields.set({**_fields.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _fields.reset(token)


def set_fields(**fields: Any) -> None:
    """Update fields for the rest of the current context (e.g. a status change)."""
    _fields.set({**_fields.get(), **fields})


def current_fields() -> dict[str, Any]:
    return dict(_fields.get())


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in _fields.get().items():
            if not hasattr(record, k):
                setattr(record, k, v)
        if not hasattr(record, "logger"):
            record.logger = record.name  # the documented "logger" field
        return True


def json_formatter() -> logging.Formatter:
    """Powertools' JSON formatter (the Lambdas' logger), with this project's
    documented fields: timestamp (RFC 3339, ms), level, logger, message, the
    run context and any `extra=` fields, and `exception` (plus Powertools'
    `exception_name`) for errors."""
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    formatter = LambdaPowertoolsFormatter(
        use_rfc3339=True,
        json_default=str,
        serialize_stacktrace=False,
        log_record_order=["timestamp", "level", "logger", "message"],
    )
    formatter.remove_keys(["location", "service", "sampling_rate", "xray_trace_id"])
    return formatter


def configure_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    """Log to stderr, as JSON lines (`fmt="json"`) or text, with run context."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class ReplayAwareLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """`ctx.logger`: a line logged while the run replays calls it already
    recorded was logged by an earlier execution; it is dropped, not repeated."""

    def __init__(self, logger: logging.Logger, is_replaying: Any) -> None:
        super().__init__(logger, {})
        self._is_replaying = is_replaying

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self._is_replaying():
            return
        super().log(level, msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:
        return not self._is_replaying() and self.logger.isEnabledFor(level)
