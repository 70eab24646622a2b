"""What a worker does with a message whose claim was refused (the other half of
`Worker._claim_and_run`): drop it, forward it to the queue that serves the
run, hand it back for another fleet (worker/_handoff.py), or keep it until
the run can be claimed; and which messages the receiving loop hands back
without a claim (`_foreign`). Internal to the worker."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from orchestrator.dispatch import parse_body, parse_name
from orchestrator.model import DEFAULT_TASK_QUEUE, Run, Status
from orchestrator.resources import split_queue_key

from ._handoff import HANDOFF_YIELD_S, NameCache, ServedNames, plan
from ._serving import pinned_elsewhere
from ._store import AsyncStore

log = logging.getLogger("worker")


class _Refusals:
    """The refused-claim half of Worker. The attributes below are Worker's."""

    build_id: str | None
    task_queues: tuple[str, ...]
    _store: AsyncStore | None
    _pinned: Any
    _served: dict[str, Any]
    _name_cache: NameCache
    _others: ServedNames | None
    _yield_until: float

    async def _refused(self, old: Run | None, message: dict[str, Any], now: int) -> None:
        """The claim lost. Decide what the message is still good for."""
        store = self._store
        assert store is not None
        receipt = message["ReceiptHandle"]
        if old is None or old.status.terminal:
            await store.delete_message(receipt)  # unknown run, or terminal: invariant 5
            return
        pinned_to = pinned_elsewhere(old, self.build_id, self._pinned)
        if pinned_to is not None:
            # Another build's pinned run (a message that took the shared queue): pass
            # it on to that build's queue, which only its workers poll.
            await store.send(old.id, "forward", pinned_to, name=old.name)
            await store.delete_message(receipt)
            return
        queue = old.task_queue or DEFAULT_TASK_QUEUE
        if queue not in self.task_queues:
            # A message on the wrong queue (sent by a path that did not know the run's
            # queue): pass it on to the run's own queue, whose workers claim it.
            await store.send(old.id, "forward", old.route, name=old.name)
            await store.delete_message(receipt)
            return
        if old.name not in self._served.get(queue, ()):
            self._name_cache.put(old.id, old.name, queue)
            await self._hand_off(message, old.id, old.name, queue)
            return
        if (
            old.status in (Status.SLEEPING, Status.WAITING)
            and old.wake_at is not None
            and old.wake_at > now
        ):
            remaining = -(-(old.wake_at - now) // 1000)
            if remaining <= 900:
                await store.set_visibility(receipt, remaining)  # an early timer: come back when due
            else:
                await store.delete_message(receipt)  # the schedule or the sweeper wakes it
            return
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        if old.status == Status.RUNNING and old.lease_until is not None and receives > 1:
            # Delivered before: it may be the owner's own message, back because its
            # visibility lapsed (the owner was paused between receive and claim, or
            # could not extend it). Deleting it would leave the run without a message
            # if the owner then died. Keep it until the lease would expire: a live
            # owner refuses it again then, a dead one's run is claimed with it.
            remaining = -(-(old.lease_until - now) // 1000)
            await store.set_visibility(receipt, max(1, remaining) + 1)
            return
        # Held by a live owner (which keeps its own message in flight; a copy seen
        # for the first time cannot be that message), or parked on a signal (the
        # signal's delivery wakes it): this copy is a duplicate.
        await store.delete_message(receipt)

    def _foreign(self, message: dict[str, Any], queue_key: str) -> tuple[str, str] | None:
        """(run id, name) of a message the receiving loop hands back at once
        without a claim: its name hint (written only on the run's own queue) or
        the name a refused claim left in the cache is one this worker does not
        serve on that queue. A pinned build's queue: the claim decides."""
        if split_queue_key(queue_key)[1] is not None:
            return None
        body = message.get("Body", "")
        workflow_id = parse_body(body)
        if workflow_id is None:
            return None
        name = parse_name(body) or self._name_cache.get(workflow_id, queue_key)
        if name is None or name in self._served.get(queue_key, ()):
            return None
        return workflow_id, name

    async def _hand_off(
        self, message: dict[str, Any], workflow_id: str, name: str, task_queue: str
    ) -> None:
        """A message for a name this worker does not serve on `task_queue`, the
        run's task queue (worker/_handoff.py)."""
        store = self._store
        assert store is not None and self._others is not None
        receipt = message["ReceiptHandle"]
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        h = plan(receives, *await self._others.route(name, task_queue))
        log.debug(
            "run %s (%s), receive %d: %s %d s", workflow_id, name, receives, *vars(h).values()
        )
        if h.action == "visible":
            if h.seconds == 0:
                # Sit out the next receive: a long poll of this worker waiting on the
                # queue could take the message straight back (SQS hands a visible
                # message to any waiting poll); the worker that serves it should.
                self._yield_until = asyncio.get_running_loop().time() + HANDOFF_YIELD_S
            await store.set_visibility(receipt, h.seconds)
        elif h.action == "resend":
            # A fresh copy (its receive count starts again), delayed.
            await store.send(workflow_id, "handoff", task_queue, delay_s=h.seconds, name=name)
            await store.delete_message(receipt)
        else:
            await store.delete_message(receipt)  # the sweeper offers it again, with backoff
