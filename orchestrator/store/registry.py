"""The worker registry: each worker keeps one item up to date, so the API, the
CLI and the dashboard can show live workers and flag runs that no live worker
serves.

    pk = "WORKERS"   sk = "W#<worker id>"

All workers share one partition so that one Query lists them; a worker writes
once per REGISTRY_INTERVAL_S (20 s), so even a thousand workers make 50 writes
a second there, far below a partition's 1,000. Items expire by TTL an hour
after a worker was last seen; a worker that stops cleanly marks itself stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import resources as r
from .codec import from_item, to_attr, to_item

REGISTRY_PK = r.REGISTRY_PK
REGISTRY_INTERVAL_S = 20
LIVE_WINDOW_MS = 3 * REGISTRY_INTERVAL_S * 1000  # missed two beats: not live
REGISTRY_TTL_S = 3600


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    names: list[str]
    concurrency: int
    busy: int
    started_at: int
    last_seen: int
    stopped: bool = False
    task_queues: list[str] = field(default_factory=lambda: ["default"])
    # Exactly what it runs, as "name" (on default) or "name@queue": a workflow
    # declared on one task queue runs from that queue only.
    served: list[str] = field(default_factory=list)
    build_id: str | None = None  # the worker's build id (Worker(build_id=...)), if any

    def live(self, now: int) -> bool:
        return not self.stopped and self.last_seen >= now - LIVE_WINDOW_MS

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def put_worker(table: str, info: WorkerInfo) -> dict[str, Any]:
    # Unconditional: the worker is the only writer of its own item.
    item = {
        r.PK: REGISTRY_PK,
        r.SK: f"{r.WORKER_SK_PREFIX}{info.id}",
        **info.as_dict(),
        r.TTL_ATTRIBUTE: info.last_seen // 1000 + REGISTRY_TTL_S,
    }
    return {"TableName": table, "Item": to_item(item)}


def query_workers(table: str) -> dict[str, Any]:
    return {
        "TableName": table,
        "KeyConditionExpression": "#pk = :pk",
        "ExpressionAttributeNames": {"#pk": r.PK},
        "ExpressionAttributeValues": {":pk": to_attr(REGISTRY_PK)},
    }


def worker_from_item(item: dict[str, Any]) -> WorkerInfo:
    d = from_item(item)
    return WorkerInfo(
        id=d["id"],
        host=d.get("host", ""),
        pid=d.get("pid", 0),
        names=list(d.get("names", [])),
        concurrency=d.get("concurrency", 0),
        busy=d.get("busy", 0),
        started_at=d.get("started_at", 0),
        last_seen=d.get("last_seen", 0),
        stopped=bool(d.get("stopped", False)),
        task_queues=list(d.get("task_queues") or ["default"]),
        served=list(d.get("served") or []),
        build_id=d.get("build_id"),
    )


def list_workers(ddb: Any, table: str) -> list[WorkerInfo]:
    pages = ddb.get_paginator("query").paginate(**query_workers(table))
    return [worker_from_item(i) for page in pages for i in page.get("Items", [])]
