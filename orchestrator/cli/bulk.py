"""`orchestrator bulk`: cancel, terminate or redrive every run a filter matches,
dry run first (see orchestrator/api/bulk.py). Registered on the main app by `orchestrator/cli/__init__.py`."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import FLAG, JsonFlag, _call, _client, _print_json
from .format import out
from .jobs import NoWait, follow


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
    no_wait: NoWait = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel, terminate or redrive every run a filter matches.

    Cancel and terminate act on unfinished runs. Redrive acts on every run the
    filter matches: a run that is not failed, timed out or cancelled is refused,
    with the reason, and left unchanged.

    A dry run by default: it prints how many runs match. --yes acts on them,
    refused if the count changed since the dry run it makes first, and prints
    each run's outcome (the first 1,000; every outcome is counted).

    The API does it as a job, a page at a time: one that goes on past its request
    is waited for (--no-wait: print its id and return; `orchestrator jobs`).

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
    counted = follow(client, _call(client.bulk, action, **filters, wait=None), wait=not no_wait)
    if counted["status"] == "running":
        if as_json:
            _print_json(counted)
        return
    more = (
        " (more than the 100,000 one job acts on: narrow the filter)"
        if counted["truncated"]
        else ""
    )
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
    done = _call(
        client.bulk, action, **filters, dry_run=False, confirm_count=counted["count"], wait=None
    )
    done = follow(client, done, wait=not no_wait)
    if as_json or done["status"] == "running":
        _print_json(done)
        return
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(done["outcomes"].items()))
    out.print(f"{action}: {done['count']} run(s): {summary or 'nothing to do'}")
    if done.get("message"):
        out.print(f"job {done['job_id']} {done['status']}: {done['message']}", soft_wrap=True)
    for result in done.get("results", []):
        why = f": {result['reason']}" if result.get("reason") else ""
        out.print(f"  {result['id']}: {result['outcome']}{why}", soft_wrap=True)
