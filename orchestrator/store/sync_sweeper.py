"""The sweeper's and the children's requests of the synchronous store (a part of
`Store`, orchestrator/store/sync.py): the `by_due` shards, the walk of
`by_created`, the sweeper's fenced failures and re-arms, and a parent's
children read from its own history."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .. import resources as r
from ..children import child_already_notified, notify_due, notify_request
from ..clock import Clock
from ..errors import ConflictError, ExecutionTimeoutError, NotFoundError
from ..model import ErrorInfo, Run, StepKind, StepRecord, child_run_id
from . import sweeps
from .codec import run_from_item, to_attr
from .conditions import conditional_failed


class _SweeperRequests:
    """The sweeper's half of Store. The attributes and methods below are Store's."""

    _ddb: Any
    _table: str
    _clock: Clock

    if TYPE_CHECKING:

        def get(self, workflow_id: str) -> Run: ...
        def steps(self, workflow_id: str, generation: int | None = None) -> list[StepRecord]: ...
        def _query_all(self, req: dict[str, Any]) -> list[dict[str, Any]]: ...
        def _batch_get(self, ids: list[str]) -> dict[str, Run]: ...
        def _expire_after_end(self, run: Run) -> None: ...

    # --- sweeper ------------------------------------------------------------------------
    def due(self, shard: int, *, now: int, limit: int = 100) -> list[str]:
        resp = self._ddb.query(
            TableName=self._table,
            IndexName=r.BY_DUE.name,
            KeyConditionExpression="#dp = :dp AND #da <= :now",
            ExpressionAttributeNames={"#dp": r.BY_DUE.partition_key, "#da": r.BY_DUE.sort_key},
            ExpressionAttributeValues={":dp": to_attr(r.due_pk(shard)), ":now": to_attr(now)},
            Limit=limit,
        )
        return [i[r.PK]["S"].removeprefix(r.RUN_PK_PREFIX) for i in resp.get("Items", [])]

    # --- the sweeper's walk of by_created --------------------------------------------
    def _applied(self, request: dict[str, Any]) -> bool:
        """Send one conditional UpdateItem: True if applied, False if its condition
        failed (the item moved since it was read)."""
        try:
            self._ddb.update_item(**request)
            return True
        except ClientError as e:
            if conditional_failed(e):
                return False
            raise

    def sweep_marks(self) -> dict[int, str]:
        """The walk's progress per list shard: the sort key of the last run settled."""
        items = self._query_all(
            {
                "TableName": self._table,
                "KeyConditionExpression": "#pk = :pk",
                "ExpressionAttributeNames": {"#pk": r.PK},
                "ExpressionAttributeValues": {":pk": to_attr(r.SWEEPER_PK)},
                "ConsistentRead": True,
            }
        )
        marks: dict[int, str] = {}
        for item in items:
            sk = item[r.SK]["S"]
            mark = item.get(r.SWEEP_MARK_ATTRIBUTE, {}).get("S")
            if sk.startswith(r.SWEEP_MARK_SK_PREFIX) and mark:
                marks[int(sk.removeprefix(r.SWEEP_MARK_SK_PREFIX))] = mark
        return marks

    def created_after(
        self, shard: int, *, after: str, upto: str, limit: int
    ) -> list[tuple[str, str]]:
        """(sort key, id) of runs in one `by_created` shard with after < key <= upto,
        oldest first."""
        resp = self._ddb.query(
            TableName=self._table,
            IndexName=r.BY_CREATED.name,
            KeyConditionExpression="#lp = :lp AND #ls BETWEEN :lo AND :hi",
            ExpressionAttributeNames={
                "#lp": r.BY_CREATED.partition_key,
                "#ls": r.BY_CREATED.sort_key,
            },
            ExpressionAttributeValues={
                ":lp": to_attr(r.list_pk(shard)),
                ":lo": to_attr(after or "0"),
                ":hi": to_attr(upto),
            },
            ScanIndexForward=True,
            Limit=limit + 1,  # the bound itself comes back when it is a run's key
        )
        rows = []
        for item in resp.get("Items", []):
            sk = item[r.BY_CREATED.sort_key]["S"]
            if sk != after:
                rows.append((sk, sk.split("#", 1)[1]))
        return rows[:limit]

    def runs(self, ids: list[str]) -> dict[str, Run]:
        """Several runs by id in BatchGetItem calls (eventually consistent reads)."""
        return self._batch_get(ids)

    def promote(self, run: Run, *, due_at: int, dispatch: bool) -> bool:
        """Put a run the walk found unfinished into `by_due`. False if it moved
        since `run` was read, or is in the index already."""
        return self._applied(
            sweeps.promote(
                self._table,
                run.id,
                epoch=run.epoch,
                status=run.status,
                due_at=due_at,
                dispatch=dispatch,
            )
        )

    def advance_sweep_mark(self, shard: int, mark: str) -> bool:
        """Move the walk's progress in one shard forward; False if another sweeper
        already moved it as far or further."""
        return self._applied(
            sweeps.advance_sweep_mark(self._table, shard, mark=mark, now=self._clock.now_ms())
        )

    def _ended(self, request: dict[str, Any]) -> bool:
        """Send one conditional terminal write (ALL_NEW): True if applied, then
        with its effects on the run's inbox (`Store.expire_inbox`); False if its
        condition failed (the run moved since it was read)."""
        try:
            resp = self._ddb.update_item(**request)
        except ClientError as e:
            if conditional_failed(e):
                return False
            raise
        self._expire_after_end(run_from_item(resp["Attributes"]))
        return True

    def fail_poisoned(self, run: Run, *, now: int, message: str) -> bool:
        """Fail a running run whose lease has expired, as read (`run`), with a
        PoisonMessageError. False if it moved since it was read."""
        error = ErrorInfo("PoisonMessageError", message)
        return self._ended(
            sweeps.fail_poisoned(
                self._table,
                run.id,
                epoch=run.epoch,
                now=now,
                error=error,
                notify_due=notify_due(run, now),
            )
        )

    def fail_timed_out(self, run: Run, *, now: int) -> bool:
        """Fail a run no worker holds, as read (`run`), whose execution deadline has
        passed. False if it moved since it was read."""
        error = ErrorInfo(
            ExecutionTimeoutError.__name__,
            f"the run's execution timeout passed (deadline {run.deadline_at} ms since the "
            f"epoch) while it was {run.status.value} and no worker held it",
        )
        return self._ended(
            sweeps.fail_timed_out(
                self._table,
                run.id,
                epoch=run.epoch,
                seen=run.status,
                now=now,
                error=error,
                notify_due=notify_due(run, now),
            )
        )

    def _child_ids(self, workflow_id: str, *, open_only: bool) -> list[str]:
        """Children from the parent's own history: an `invoke` operation's child,
        and a distributed map's items (its record names the workflow and count)."""
        ids: list[str] = []
        for s in self.steps(workflow_id):
            if open_only and s.resolved:
                continue
            if s.kind == StepKind.INVOKE:
                ids.append(child_run_id(workflow_id, s.op_id))
            elif s.kind == StepKind.MAP and s.result and '"workflow"' in s.result:
                total = int(json.loads(s.result).get("total", 0))
                ids += [child_run_id(workflow_id, f"{s.op_id}.{i}") for i in range(total)]
        return ids

    def open_children(self, workflow_id: str) -> list[str]:
        """The ids of this run's children whose end it has not recorded (its
        unresolved `invoke` operations and distributed maps) and that have not
        ended: those a cancel of the run cancels."""
        ids = self._child_ids(workflow_id, open_only=True)
        found = self._batch_get(ids)
        return [i for i in ids if i in found and not found[i].status.terminal]

    def children_page(
        self, workflow_id: str, *, offset: int, limit: int
    ) -> tuple[list[tuple[str, Run | None]], bool]:
        """The ids of this run's children from `offset` on, at most `limit`, each
        with its run (None: not started yet), in operation order; and whether
        more ids follow."""
        ids = self._child_ids(workflow_id, open_only=False)
        chunk = ids[offset : offset + limit]
        found = self._batch_get(chunk)
        return [(i, found.get(i)) for i in chunk], offset + limit < len(ids)

    def children(self, workflow_id: str) -> list[Run]:
        """The runs this run started (`ctx.invoke`, distributed `ctx.map`), in
        operation order. Read from the parent's own history (one Query) and
        BatchGetItem: no index."""
        ids = self._child_ids(workflow_id, open_only=False)
        found = self._batch_get(ids)
        return [found[i] for i in ids if i in found]

    def notify_parent(self, child: Run, *, grace_ms: int) -> tuple[bool, str | None]:
        """Deliver an ended child's outcome to its parent (orchestrator/children.py).
        Returns (woke, timer): woke when the parent waited for it (the caller then
        dispatches the parent), and the parent's wait timer to delete. Nothing
        happens if it was delivered already."""
        assert child.parent_id is not None
        for _ in range(20):
            try:
                parent: Run | None = self.get(child.parent_id)
            except NotFoundError:
                parent = None
            req, wake = notify_request(
                self._table, child, parent, now=self._clock.now_ms(), grace_ms=grace_ms
            )
            try:
                self._ddb.transact_write_items(**req)
                return wake, (parent.timer if wake and parent is not None else None)
            except ClientError as e:
                if e.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                if child_already_notified(dict(e.response)):
                    return False, None
                # The parent moved (a signal, a claim, a park): read it again.
        raise ConflictError(f"the parent of {child.id!r} is changing too fast; try again")

    def rearm(self, run: Run, *, due_at: int, count: bool = True) -> bool:
        """Move a due run's `due_at`, as read (`run`); `count`: a re-send, which the
        pending backoff counts. False if it moved since it was read."""
        return self._applied(
            sweeps.rearm(
                self._table,
                run.id,
                epoch=run.epoch,
                status=run.status,
                old_due=run.due_at or 0,
                due_at=due_at,
                count=count,
            )
        )
