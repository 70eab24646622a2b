"""`orchestrator bulk`: cancel, terminate or redrive every run a filter matches,
dry run first (see orchestrator/api/bulk.py). Registered on the main app by `orchestrator/cli/__init__.py`."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import FLAG, JsonFlag, _call, _client, _print_json
from .format import out


def bulk(
    action: Annotated[
        str, typer.Argument(help="cancel, terminate or redrive.", show_default=False)
    ],
    name: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only runs created at or after (ISO 8601).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only runs created before (ISO 8601).")] = None,
    reason: Annotated[
        str | None, typer.Option(help="Why; recorded on each run (not with redrive).")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do it (default: a dry run that counts).", metavar=FLAG)
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel, terminate or redrive every run a filter matches.

    Cancel and terminate act on unfinished runs. Redrive acts on every run the
    filter matches: a run that is not failed, timed out or cancelled is refused,
    with the reason, and left unchanged.

    A dry run by default: it prints how many runs match. --yes acts on them,
    refused if the count changed since the dry run it makes first, and prints
    each run's outcome.

    Examples:

      orchestrator bulk cancel --name approval --status waiting --until 2026-11-01

      orchestrator bulk terminate --name order --since 2026-11-26T09:00 --yes

      orchestrator bulk redrive --name order --status failed --since 2026-11-26 --yes
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
        if action == "redrive":
            statuses = ", ".join(f"{n} {st}" for st, n in sorted(counted["statuses"].items()))
            out.print(
                f"dry run: {counted['count']} run(s) match{more}"
                + (f" ({statuses})" if statuses else "")
                + "; add --yes to redrive them (those not failed, timed out or cancelled "
                "are refused)"
            )
        else:
            out.print(
                f"dry run: {counted['count']} unfinished run(s) match{more}; "
                f"add --yes to {action} them"
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
    for result in done.get("results", []):
        why = f": {result['reason']}" if result.get("reason") else ""
        out.print(f"  {result['id']}: {result['outcome']}{why}", soft_wrap=True)
