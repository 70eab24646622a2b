"""Moving a pinned run to another build (`orchestrator migrate`).

A pinned run (`@workflow(..., versioning="pinned")`) is claimed only by workers
of its build (the claim's condition in `requests.claim`). Migrating changes that
build with one conditional write decided from one consistent read, fenced like
every other state change: on the status and epoch read (and, when the caller
replay-checked the run, on the epoch it checked), with the epoch moved on. A
run held by a live lease is refused: its owner is working on the old build, and
taking the run from under it would run its current step again on the new one.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ..clock import Clock
from ..errors import BadInputError, ConflictError, NotFoundError
from ..model import BUILD_ID_HELP, BUILD_ID_RE, WORKFLOW_ID_RE, Run, Status
from . import requests as q
from .codec import run_from_item, run_key
from .conditions import conditional_failed, old_item


def check_build_id(build_id: Any) -> str:
    if not isinstance(build_id, str) or not BUILD_ID_RE.fullmatch(build_id):
        raise BadInputError(f"{build_id!r}: {BUILD_ID_HELP}")
    return build_id


def decide(run: Run, to_build: str, *, now: int, expected_epoch: int | None) -> bool:
    """Whether to write (False: already on `to_build`). Raises ConflictError for a
    run that cannot move now. Pure."""
    if run.status.terminal:
        raise ConflictError(
            f"workflow run {run.id!r} is {run.status.value}; it has no build to move"
        )
    if not run.pinned:
        raise ConflictError(
            f"workflow run {run.id!r} is not pinned: any worker that serves {run.name!r} runs it"
        )
    if expected_epoch is not None and run.epoch != expected_epoch:
        raise ConflictError(
            f"workflow run {run.id!r} moved on since it was checked (attempt {expected_epoch}, "
            f"now {run.epoch}); check it again"
        )
    if run.build_id == to_build:
        return False
    if run.status == Status.RUNNING and run.lease_until is not None and run.lease_until >= now:
        raise ConflictError(
            f"workflow run {run.id!r} is running on worker {run.owner} (build {run.build_id}) "
            "with a live lease; migrate it once it parks, or once its lease has expired"
        )
    return True


def migrate(
    ddb: Any,
    table: str,
    clock: Clock,
    workflow_id: str,
    to_build: str,
    *,
    expected_epoch: int | None = None,
) -> tuple[Run, Run, bool]:
    """(before, after, moved). BadInputError, NotFoundError or ConflictError
    write nothing."""
    if not WORKFLOW_ID_RE.fullmatch(workflow_id):
        raise BadInputError(f"{workflow_id!r} is not a valid workflow id")
    check_build_id(to_build)
    item = ddb.get_item(TableName=table, Key=run_key(workflow_id), ConsistentRead=True).get("Item")
    if item is None:
        raise NotFoundError(f"no workflow run {workflow_id!r}")
    run = run_from_item(item)
    now = clock.now_ms()
    if not decide(run, to_build, now=now, expected_epoch=expected_epoch):
        return run, run, False
    assert run.build_id is not None
    try:
        resp = ddb.update_item(
            **q.migrate(
                table,
                workflow_id,
                seen_status=run.status,
                epoch=run.epoch,
                from_build=run.build_id,
                to_build=to_build,
                now=now,
            )
        )
    except ClientError as e:
        if not conditional_failed(e):
            raise
        old = old_item(e)
        if old is not None:
            decide(run_from_item(old), to_build, now=now, expected_epoch=run.epoch)
        raise ConflictError(
            f"workflow run {workflow_id!r} changed while it was migrated; try again"
        ) from None
    return run, run_from_item(resp["Attributes"]), True
