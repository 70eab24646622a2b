"""Jobs in the state table: bulk operations and backfills done in bounded pages.

    pk = "JOBS"   sk = "JOB#<id>"   (ids sort by creation time: newest first)

A job item holds what was asked (`request`), where the work stands (`phase`,
`cursor`, `state`) and who may advance it. Every change is one PutItem
conditioned on the `version` the writer read, so two advancers (the API's
first pages, a sweeper, a second sweeper) never both record a page: the loser's
write fails and it stops. A running job is in `by_due` under its own partition
key: due now when nobody holds it, due at its lease's end while somebody does,
so a job whose advancer died is picked up by the next sweep after that. An
ended job leaves `by_due` and expires after JOB_RETENTION_DAYS.
"""

from __future__ import annotations

import builtins
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError

from .. import resources as r
from ..errors import BadInputError, NotFoundError
from .codec import from_item, to_item
from .conditions import conditional_failed

JOB_ID_RE = re.compile(r"[0-9]{13}-[0-9a-f]{8}")
JOB_RETENTION_DAYS = 30
ENDED = ("completed", "refused", "failed", "cancelled")


@dataclass(frozen=True)
class Job:
    id: str
    kind: str  # "bulk" | "backfill"
    request: dict[str, Any]  # what was asked, validated
    created_at: int
    updated_at: int
    status: str = "running"  # or one of ENDED
    phase: str = ""  # bulk: "counting" then "acting"; backfill: "starting"
    cursor: str | None = None  # where the next page starts
    state: dict[str, Any] = field(default_factory=dict)  # counters and kept results
    version: int = 0
    lease_until: int | None = None  # epoch ms; an advancer holds the job until then
    finished_at: int | None = None
    message: str | None = None  # why it was refused, failed or cancelled
    errors: int = 0  # pages in a row that raised

    @property
    def ended(self) -> bool:
        return self.status in ENDED


def job_key(job_id: str) -> dict[str, Any]:
    return to_item({r.PK: r.JOBS_PK, r.SK: r.job_sk(job_id)})


def job_item(job: Job, now: int) -> dict[str, Any]:
    values: dict[str, Any] = {
        r.PK: r.JOBS_PK,
        r.SK: r.job_sk(job.id),
        "id": job.id,
        "kind": job.kind,
        "request": json.dumps(job.request, separators=(",", ":")),
        "status": job.status,
        "phase": job.phase,
        "cursor": job.cursor,
        "state": json.dumps(job.state, separators=(",", ":")),
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "version": job.version,
        "lease_until": job.lease_until,
        "finished_at": job.finished_at,
        "message": job.message,
        "errors": job.errors,
    }
    if job.ended:
        values[r.TTL_ATTRIBUTE] = (job.finished_at or now) // 1000 + JOB_RETENTION_DAYS * 86400
    else:
        values[r.BY_DUE.partition_key] = r.JOBS_DUE_PK
        values[r.BY_DUE.sort_key] = job.lease_until or now
    return to_item(values)


def job_from_item(item: dict[str, Any]) -> Job:
    d = from_item(item)
    return Job(
        id=d["id"],
        kind=d["kind"],
        request=json.loads(d["request"]),
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        status=d["status"],
        phase=d.get("phase", ""),
        cursor=d.get("cursor"),
        state=json.loads(d.get("state", "{}")),
        version=d.get("version", 0),
        lease_until=d.get("lease_until"),
        finished_at=d.get("finished_at"),
        message=d.get("message"),
        errors=d.get("errors", 0),
    )


def check_job_id(job_id: str) -> None:
    if not JOB_ID_RE.fullmatch(job_id):
        raise BadInputError(f"{job_id!r} is not a job id (<13 digits>-<8 hex digits>)")


class JobStore:
    """The synchronous requests, over boto3 (the API, the sweeper, the local stack)."""

    def __init__(self, ddb: Any, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def create(self, job: Job, now: int) -> None:
        self._ddb.put_item(
            TableName=self._table,
            Item=job_item(job, now),
            ConditionExpression="attribute_not_exists(#pk)",
            ExpressionAttributeNames={"#pk": r.PK},
        )

    def get(self, job_id: str) -> Job:
        check_job_id(job_id)
        item = self._ddb.get_item(
            TableName=self._table, Key=job_key(job_id), ConsistentRead=True
        ).get("Item")
        if item is None:
            raise NotFoundError(f"no job {job_id!r}")
        return job_from_item(item)

    def save(self, seen: Job, after: Job, now: int) -> Job | None:
        """Write `after` over the job as `seen` read it. None: somebody else wrote
        it since (another advancer, a cancel), and `after` was not recorded."""
        written = replace(after, version=seen.version + 1, updated_at=now)
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=job_item(written, now),
                ConditionExpression="#v = :v",
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues={":v": {"N": str(seen.version)}},
            )
        except ClientError as e:
            if conditional_failed(e):
                return None
            raise
        return written

    def list(self, *, limit: int, cursor: str | None) -> tuple[builtins.list[Job], str | None]:
        """Newest first; the cursor is the id of the last job of the previous page."""
        req: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": r.PK},
            "ExpressionAttributeValues": {":pk": {"S": r.JOBS_PK}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor is not None:
            check_job_id(cursor)
            req["ExclusiveStartKey"] = job_key(cursor)
        resp = self._ddb.query(**req)
        jobs = [job_from_item(item) for item in resp.get("Items", [])]
        more = "LastEvaluatedKey" in resp and len(jobs) == limit
        return jobs, (jobs[-1].id if more and jobs else None)

    def due(self, now: int, limit: int) -> builtins.list[str]:
        """Ids of running jobs nobody holds (or whose holder's lease has run out)."""
        resp = self._ddb.query(
            TableName=self._table,
            IndexName=r.BY_DUE.name,
            KeyConditionExpression="#pk = :pk AND #due <= :now",
            ExpressionAttributeNames={"#pk": r.BY_DUE.partition_key, "#due": r.BY_DUE.sort_key},
            ExpressionAttributeValues={":pk": {"S": r.JOBS_DUE_PK}, ":now": {"N": str(now)}},
            Limit=limit,
        )
        return [item[r.SK]["S"].removeprefix(r.job_sk("")) for item in resp.get("Items", [])]

    def running_count(self, upto: int) -> int:
        """How many jobs are running, counted up to `upto` (the bound on the read)."""
        resp = self._ddb.query(
            TableName=self._table,
            IndexName=r.BY_DUE.name,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": r.BY_DUE.partition_key},
            ExpressionAttributeValues={":pk": {"S": r.JOBS_DUE_PK}},
            Select="COUNT",
            Limit=upto,
        )
        return int(resp.get("Count", 0))
