"""The worker's side of child runs: delivering a child's end to its parent
after the child's terminal write, and cancelling a child whose parent was
cancelled. The rules are in orchestrator/children.py (shared with the API and
the sweeper, which do the same with the synchronous store)."""

from __future__ import annotations

import json
import logging

from orchestrator.children import cancel_request, notify_request
from orchestrator.clock import Clock
from orchestrator.model import Run, Status

from ._store import AsyncStore

log = logging.getLogger("worker")


async def notify_parent(store: AsyncStore, child: Run, clock: Clock) -> None:
    """Deliver `child`'s end (it is terminal) to its parent: once, whoever does it
    first (this worker, the sweeper); wake the parent if it waits for it."""
    assert child.parent_id is not None
    for _ in range(20):
        parent = await store.get_run(child.parent_id)
        req, wake = notify_request(
            store.settings.table,
            child,
            parent,
            now=clock.now_ms(),
            grace_ms=store.settings.sweep_grace_ms,
        )
        refused = await store.transact(req)
        if refused is None:
            if wake and parent is not None:
                await store.send(parent.id, "child", parent.route, name=parent.name)
                if parent.timer:
                    await store.delete_schedule(parent.timer)
            return
        reasons = json.loads(refused)
        if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
            return  # delivered already
    log.warning("the parent of %s kept changing; the sweeper will deliver its end", child.id)


async def cancel_run(store: AsyncStore, workflow_id: str, reason: str, clock: Clock) -> None:
    """Cancel a child run (its parent was cancelled): at once if no worker holds
    it, through its lease otherwise. A finished child is left alone."""
    for _ in range(20):
        run = await store.get_run(workflow_id)
        if run is None:
            return
        _, req = cancel_request(store.settings.table, run, reason=reason, now=clock.now_ms())
        if req is None:
            return  # finished, or its cancel is already requested
        after = await store.update(req)
        if after is None:
            continue  # it moved since it was read
        if after.status == Status.CANCELLED:
            if run.timer:
                await store.delete_schedule(run.timer)
            if after.signal_seq > 0:  # it got signals: some may be left unconsumed
                try:
                    await store.expire_inbox(after.id, now=clock.now_ms())
                except Exception:
                    log.exception("could not expire the inbox of cancelled run %s", after.id)
            if after.parent_id is not None and not after.parent_polls:
                await notify_parent(store, after, clock)
        return
