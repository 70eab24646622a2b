"""Commands that act on one run or callback: `signal`, `terminate`, `cancel`,
and the `callback` group. Registered on the main app by `orchestrator/cli/__init__.py`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from .common import JsonFlag, RunId, _call, _client, _json_arg, _print_json, err
from .format import _status, out


def signal(
    workflow_id: RunId,
    name: Annotated[str, typer.Argument(help="Signal name.", show_default=False)],
    payload: Annotated[
        str | None,
        typer.Option("--payload", "-p", help="JSON payload, or @FILE to read it from a file."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Send a signal to a run; it is buffered until the run waits for it.

    Examples:

      orchestrator signal approval-ada approved --payload '{"approved": true}'

      orchestrator signal approval-ada approved --json
    """
    value = _json_arg(payload, "--payload")
    sent = _call(_client().signal, workflow_id, name, value)
    if as_json:
        _print_json(sent)
        return
    effect = "it woke the run" if sent["woke"] else "buffered until the run waits for it"
    out.print(f"signal {sent['signal']!r} sent to {workflow_id} (#{sent['seq']}): {effect}")
    if sent.get("warning"):
        err.print(f"warning: {sent['warning']} (see `orchestrator inbox {workflow_id}`)")


def terminate(
    workflow_id: RunId,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why; recorded on the run.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """End a run now, with no cleanup (cancel lets a running run clean up first).

    Examples:

      orchestrator terminate order-42 --reason "stuck on a dead gateway"
    """
    res = _call(_client().terminate, workflow_id, reason=reason)
    if as_json:
        _print_json(res)
        return
    out.print(f"{workflow_id}: {res['message']}")


def cancel(
    workflow_id: RunId,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why; recorded on the run.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a run.

    A pending, sleeping or waiting run is cancelled at once; a running run at its
    next durable call.

    Examples:

      orchestrator cancel approval-ada

      orchestrator cancel approval-ada --reason "duplicate request" --json
    """
    client = _client()
    kwargs = {"reason": reason} if reason else {}
    result = _call(client.cancel, workflow_id, **kwargs)
    if as_json:
        _print_json(result)
        return
    message = result.get("message") or result.get("outcome", "")
    out.print(Text.assemble(f"{workflow_id}: ", _status(result["status"]), f"  {message}"))


callback_app = typer.Typer(
    help="Complete or heartbeat a callback a workflow created (by its id, the token).",
    no_args_is_help=True,
)
CallbackId = Annotated[
    str, typer.Argument(help="The callback's id (cb.id).", show_default=False, metavar="ID")
]


@callback_app.command("succeed")
def callback_succeed(
    callback_id: CallbackId,
    result: Annotated[
        str | None,
        typer.Option("--result", "-r", help="JSON result, or @FILE to read it from a file."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Complete a callback with a result.

    Example:

      orchestrator callback succeed ID --result '{"approved": true}'
    """
    value = _json_arg(result, "--result")
    reply = _call(_client().callback_succeed, callback_id, value)
    _callback_done(reply, as_json)


@callback_app.command("fail")
def callback_fail(
    callback_id: CallbackId,
    error_type: Annotated[
        str, typer.Option("--type", help="The error's type, e.g. Rejected.")
    ] = "Error",
    message: Annotated[str, typer.Option("--message", "-m", help="The error message.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Complete a callback with a failure (the workflow gets CallbackFailedError).

    Example:

      orchestrator callback fail ID --type Rejected --message "over budget"
    """
    reply = _call(_client().callback_fail, callback_id, error_type, message)
    _callback_done(reply, as_json)


@callback_app.command("heartbeat")
def callback_heartbeat(callback_id: CallbackId, as_json: JsonFlag = False) -> None:
    """Keep a callback with a heartbeat timeout alive."""
    reply = _call(_client().callback_heartbeat, callback_id)
    if as_json:
        _print_json(reply)
        return
    deadline = reply.get("heartbeat_deadline")
    out.print(
        f"heartbeat recorded; next one due by {deadline}" if deadline else "heartbeat recorded"
    )


def _callback_done(reply: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(reply)
        return
    effect = "it woke the run" if reply["woke"] else "kept until the run waits for it"
    out.print(f"callback {reply['outcome']}: {effect}")
