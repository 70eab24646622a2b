"""`orchestrator bulk`: act on every run a filter matches, dry run first.
Registered on the main app by `orchestrator/cli.py`."""

from __future__ import annotations

from typing import Annotated

import typer

from .cli_common import FLAG, JsonFlag, _call, _client, _print_json
from .cli_format import out


def bulk(
    action: Annotated[str, typer.Argument(help="cancel or terminate.", show_default=False)],
    name: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only runs created at or after (ISO 8601).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only runs created before (ISO 8601).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why; recorded on each run.")] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do it (default: a dry run that counts).", metavar=FLAG)
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel or terminate every unfinished run a filter matches.

    A dry run by default: it prints how many runs match. --yes acts on them,
    refused if the count changed since the dry run it makes first.

    Examples:

      orchestrator bulk cancel --name approval --status waiting --until 2026-11-01

      orchestrator bulk terminate --name order --since 2026-11-26T09:00 --yes
    """
    client = _client()
    filters = {
        "name": name,
        "status": status,
        "created_after": since,
        "created_before": until,
        "reason": reason,
    }
    counted = _call(client.bulk, action, **filters)
    more = " (the first 1000; narrow the filter for the rest)" if counted["truncated"] else ""
    if not yes:
        if as_json:
            _print_json(counted)
            return
        out.print(
            f"dry run: {counted['count']} unfinished run(s) match{more}; add --yes to {action} them"
        )
        for run_id in counted["sample"]:
            out.print(f"  {run_id}")
        return
    done = _call(client.bulk, action, **filters, dry_run=False, confirm_count=counted["count"])
    if as_json:
        _print_json(done)
        return
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(done["outcomes"].items()))
    out.print(f"{action}: {done['count']} run(s){more}: {summary or 'nothing to do'}")
