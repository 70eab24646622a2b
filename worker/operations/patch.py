"""`ctx.patched` and `ctx.deprecate_patch`: changing a workflow under runs in
flight, by marker (the semantics of DBOS `patch` and Temporal `patched`).

`patched(id)` looks at the id its scope would give the next operation, without
taking it:

- no record there (a new run, or a run that had not reached this point when
  the new code was deployed): record a `patch` marker named `id` at that id
  (first write wins, like every record) and return True: take the new path;
- that marker is there (a run that took the new path before): consume the id,
  return True;
- another operation is there (a run that passed this point under the old
  code): return False and consume nothing, so the old path's next operation
  gets the very id it had.

`deprecate_patch(id)` consumes the id only if the marker is there, and
returns nothing: runs that recorded the marker keep their ids, new runs
record nothing. Once no run recorded before the deprecation is in flight,
the call can go.

Ids are per scope, so both work the same inside a branch, a map item or a
child context: each branch decides for itself.
"""

from __future__ import annotations

from orchestrator.model import STEP_NAME_RE, StepKind, StepRecord

from .. import _core


def _check_id(patch_id: str) -> None:
    if not isinstance(patch_id, str) or not STEP_NAME_RE.fullmatch(patch_id):
        raise ValueError("a patch id is 1 to 200 printable characters")


async def patched(patch_id: str) -> bool:
    _check_id(patch_id)
    s, _, rec = _core.peek("patched")
    if rec is not None and rec.kind not in (StepKind.PATCH, StepKind.CANCEL):
        return False  # a run from before the patch: the old path, and the id stays free
    if rec is not None and rec.kind == StepKind.PATCH and rec.name != patch_id:
        return False  # another patch's marker: it belongs to a later `patched` call
    # Taken from here on (enter delivers a cancel recorded or requested at this id).
    s, op_id, rec = await _core.enter("patched")
    if rec is None:
        marker = StepRecord(
            op_id, patch_id, StepKind.PATCH, s.epoch, s.clock.now_ms(), resolved=True
        )
        rec = await _core.record(s, marker)
    _core.check(s, rec, StepKind.PATCH, patch_id)
    return True


async def deprecate_patch(patch_id: str) -> None:
    _check_id(patch_id)
    _, _, rec = _core.peek("deprecate_patch")
    if rec is not None and rec.kind == StepKind.PATCH and rec.name == patch_id:
        await _core.enter("deprecate_patch")  # a run that recorded the marker: skip it
