"""Which task queues a worker polls, and which workflow names it runs from each."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.model import DEFAULT_TASK_QUEUE, Run
from orchestrator.resources import ENV_BUILD_ID, pinned_queue_key, undeclared_queue_fix
from orchestrator.settings import Settings

from ._registry import WorkflowDefinition


def _serve(
    defs: dict[str, WorkflowDefinition], task_queues: Sequence[str] | None, settings: Settings
) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    """(the task queues to poll, task queue -> the names run from it).

    A workflow declared on a task queue (`@workflow(..., task_queue=)`) runs from
    that queue only; the others run from every queue polled. Without
    `task_queues`, a worker polls the queues its workflows declare, and "default"
    if one of them declares none."""
    declared = {d.task_queue for d in defs.values() if d.task_queue}
    if task_queues is None:
        undeclared = any(d.task_queue is None for d in defs.values())
        queues = sorted(declared) + ([DEFAULT_TASK_QUEUE] if undeclared else [])
    else:
        queues = list(dict.fromkeys(task_queues))
        if not queues:
            raise ValueError("a Worker serves at least one task queue")
    for q in queues:
        if q not in settings.task_queues:
            raise ValueError(
                f"task queue {q!r} is not one of the deployment's ({', '.join(settings.task_queues)}); "
                f"{undeclared_queue_fix(q)}"
            )
    served: dict[str, list[str]] = {q: [] for q in queues}
    for d in defs.values():
        for q in [d.task_queue] if d.task_queue else queues:
            if q in served:
                served[q].append(d.name)
    if not any(served.values()):
        raise ValueError("none of the workflows runs on the task queues this worker polls")
    return tuple(queues), {q: sorted(names) for q, names in served.items()}


def _pinned(
    defs: dict[str, WorkflowDefinition],
    task_queues: tuple[str, ...],
    served: dict[str, list[str]],
    build_id: str | None,
) -> tuple[list[str], tuple[str, ...]]:
    """(the pinned names, every queue key to poll). A worker that runs pinned
    workflows polls its build's queue ("<task queue>@<build>") on each task queue
    that carries one of them, besides the task queues themselves: new runs come
    through the shared queue, a pinned run's later messages through its build's."""
    pinned = sorted(n for n, d in defs.items() if d.pinned)
    if not pinned:
        return pinned, task_queues
    if build_id is None:
        raise ValueError(
            f"workflow(s) {', '.join(pinned)} are versioning='pinned': give the worker a "
            f"build id (build_id=, --build-id or {ENV_BUILD_ID})"
        )
    builds = tuple(
        pinned_queue_key(q, build_id) for q in task_queues if set(served[q]) & set(pinned)
    )
    return pinned, task_queues + builds


def pinned_elsewhere(run: Run, build_id: str | None, pinned: list[str]) -> str | None:
    """The queue key of the build `run` is pinned to, when that is not `build_id`.
    A run not yet marked pinned whose name this worker pins and that another build
    claimed first is that build's too (the claim refuses it the same way)."""
    if run.build_id is None or run.build_id == build_id:
        return None
    if run.pinned or run.name in pinned:
        return pinned_queue_key(run.task_queue, run.build_id)
    return None
