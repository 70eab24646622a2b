"""What every `orchestrator` command shares: the API client from the root
option, JSON arguments, and the one-line `error:` exit for user mistakes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import OrchestratorError

err = Console(stderr=True, highlight=False)

STATUSES = ("pending", "running", "sleeping", "waiting", "completed", "failed", "cancelled")
_options: dict[str, Any] = {
    "api_url": None
}  # set by the root callback in orchestrator/cli/__init__.py

# Flags take no value: no "<bool>" in --help (click 8.2+ shows one by default).
FLAG = ""
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON instead of a table.", metavar=FLAG)
]
RunId = Annotated[str, typer.Argument(help="The run's id.", show_default=False, metavar="ID")]


# --- errors: one line, non-zero --------------------------------------------------------------
def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _json_arg(text: str | None, what: str) -> Any:
    """A JSON option's value; `@path` reads the JSON from a file."""
    if text is None:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as e:
            raise _fail(f"{what}: cannot read {text[1:]!r}: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(f"{what} is not valid JSON: {e}") from None


def _client() -> Any:
    from ..client import Client

    try:
        return Client(_options["api_url"])
    except OrchestratorError as e:
        raise _fail(e.message) from None


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except OrchestratorError as e:
        raise _fail(e.message) from None
    except TimeoutError as e:
        raise _fail(str(e) or "the API did not answer in time") from None
    except OSError as e:
        raise _fail(f"cannot reach the API: {e}") from None


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
