"""`ctx.map(name, S3Items(key), workflow=..., batch_size=N)`: a distributed map
over the lines of a JSON Lines object in S3, a batch of items per child run,
its results written back to S3 as JSON Lines.

The parent never holds all the items or all the results, in memory or in its
history:

1. **Plan.** One streaming read of the object finds where each batch starts
   (a byte offset every `batch_size` non-blank lines) and checks every line is
   JSON. The plan (the object's ETag and size, the batch offsets) is the map's
   start record: at most `MAX_BATCHES` offsets, however many items.
2. **Children.** Child `k` is started with a ranged read of its batch (the
   object's ETag required, so an object replaced meanwhile fails the map
   instead of mixing two versions). Its input is
   `{"items": [...], "batch": k, "first_index": k * batch_size}` (offloaded to
   the value bucket like any large input), at most `START_GROUP` batches read
   at a time. Starting, polling and the completion rule are the distributed
   map's (worker/operations/distributed.py); ended children are kept as their
   status only.
3. **Results.** Once the map decides, the children's outputs are streamed in
   batch order into one JSON Lines object in the value bucket
   (`maps/<run id>/g<generation>/<operation id>.jsonl`, one line per batch:
   `{"batch", "first_index", "count", "status", "result" | "error"}`), a
   multipart upload of `PART_BYTES` parts. The decision record holds its key
   and the counts; `S3BatchResult` reads the lines lazily.

A replay of a decided map reads nothing; a replay of an unfinished one reads
its plan from the start record and goes on (children it started exist).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from orchestrator.errors import BadInputError
from orchestrator.model import WORKFLOW_NAME_RE, Run, Status, StepKind, StepRecord, child_run_id
from orchestrator.store.codec import check_size, dumps

from .. import _core
from .._state import duration_ms
from .batch import (
    BatchItem,
    BatchItemStatus,
    CompletionConfig,
    CompletionReason,
    _Policy,
    check_batch_args,
)
from .distributed import run_children
from .invoke import check_task_queue

MAX_BATCHES = 10_000  # children of one map
MAX_BATCH_SIZE = 100_000  # items per child
MAX_LINE_BYTES = 256 * 1024  # one item's line in the object
START_GROUP = 4  # batches read and started at a time
PART_BYTES = 8 * 1024 * 1024  # results upload part (S3's minimum is 5 MiB)
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class S3Items:
    """The items of a distributed map: the non-blank lines of a JSON Lines
    object, each one item. `bucket`: the deployment's value bucket by default
    (ORCHESTRATOR_BUCKET); another one needs the worker's role to read it."""

    key: str
    bucket: str | None = None


class S3BatchResult:
    """What an S3 map did: counts from its record, and one line per batch in
    the results object, read lazily (`async for item in result.items()`)."""

    def __init__(self, body: dict[str, Any], client: Any) -> None:
        self._body = body
        self._client = client
        self.completion_reason = CompletionReason(body["reason"])
        self.total = int(body["batches"])  # batches the map was given
        self.item_count = int(body["items"])
        self.success_count = int(body["succeeded"])
        self.failure_count = int(body["failed"])
        self.results_bucket: str = body["results"]["bucket"]
        self.results_key: str = body["results"]["key"]
        self.results_bytes = int(body["results"]["bytes"])

    @property
    def has_failure(self) -> bool:
        return self.failure_count > 0

    @property
    def status(self) -> str:
        return "failed" if self.has_failure else "succeeded"

    async def items(self) -> AsyncIterator[BatchItem[Any]]:
        """One item per batch started, in batch order: its result (what the child
        returned) or its error."""
        from .batch import _error

        s = _core.current()[0]
        lines = _lines(self._client, self.results_bucket, self.results_key, None)
        while True:
            try:
                # A read that fails transiently unwinds the run (`_core.io`), never
                # reaching the workflow's code.
                line = await _core.io(s, lines.__anext__())
            except StopAsyncIteration:
                return
            d = json.loads(line)
            status = BatchItemStatus(d["status"])
            if status == BatchItemStatus.FAILED:
                where = f"batch {d['batch']}"
                yield BatchItem(
                    d["batch"], status, error=_error(where, where, d.get("error") or {})
                )
            else:
                yield BatchItem(d["batch"], status, result=d.get("result"))


async def s3_map(
    name: str,
    source: S3Items,
    workflow: str,
    *,
    batch_size: int,
    max_concurrency: int | None,
    completion: CompletionConfig | None,
    execution_timeout: timedelta | float | None,
    task_queue: str | None = None,
) -> S3BatchResult:
    check_batch_args(name, max_concurrency, completion)
    check_task_queue(task_queue)
    if not isinstance(workflow, str) or not WORKFLOW_NAME_RE.fullmatch(workflow):
        raise ValueError(f"{workflow!r} is not a workflow name")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be an int from 1 to {MAX_BATCH_SIZE:,}")
    if not isinstance(source.key, str) or not 1 <= len(source.key.encode()) <= 1024:
        raise ValueError("S3Items needs a key of 1 to 1024 bytes")
    timeout_ms = None if execution_timeout is None else duration_ms(execution_timeout)
    s, op_id, rec = await _core.enter("map")
    values = s.store.values
    client, value_bucket = values.client, values.bucket
    if client is None:
        raise ValueError(
            "a map over S3Items needs the value bucket (ORCHESTRATOR_BUCKET): its results "
            "are written there"
        )
    if rec is not None:
        _core.check(s, rec, StepKind.MAP, name)
        body = json.loads(rec.result or "{}")
        if rec.resolved:
            return S3BatchResult(body, client)
        plan = body
    else:
        _core.check_lease(s)
        bucket = source.bucket or value_bucket
        plan = await _core.io(s, _plan(client, bucket, source.key, batch_size))
        plan["workflow"] = workflow
        now = s.clock.now_ms()
        start = StepRecord(
            op_id, name, StepKind.MAP, s.epoch, now, started_at=now, result=dumps(plan)
        )
        rec = await _core.record(s, start)
    offsets: list[int] = plan["offsets"]
    batches = len(offsets) - 1
    ids = [child_run_id(s.workflow_id, f"{op_id}.{k}") for k in range(batches)]
    limit = _core.input_limit()

    async def read_batch(k: int) -> list[str]:
        return [
            line
            async for line in _lines(
                client, plan["bucket"], plan["key"], plan["etag"], offsets[k], offsets[k + 1]
            )
        ]

    async def inputs_of(indexes: list[int]) -> list[str]:
        out = []
        for k in indexes:
            lines = await _core.io(s, read_batch(k))
            text = (
                '{"items":[' + ",".join(lines) + f'],"batch":{k},"first_index":{k * batch_size}}}'
            )
            try:
                check_size(text, what=f"batch {k}'s input", limit=limit)
            except BadInputError as e:
                raise ValueError(f"batch {k} cannot be sent: {e}; use a smaller batch_size") from e
            out.append(text)
        return out

    outcomes, reason = await run_children(
        s,
        op_id,
        ids,
        inputs_of,
        workflow,
        max_concurrency,
        _Policy(batches, completion),
        timeout_ms,
        task_queue,
        start_group=START_GROUP,
        slim=True,
    )
    key = f"maps/{s.workflow_id}/g{s.generation}/{op_id}.jsonl"
    _core.check_lease(s)
    counts, size = await _core.io(
        s, _write_results(s, client, value_bucket, key, ids, outcomes, plan, batch_size)
    )
    body = {
        "reason": reason.value,
        "workflow": workflow,
        "batches": batches,
        "items": plan["items"],
        "succeeded": counts[BatchItemStatus.SUCCEEDED],
        "failed": counts[BatchItemStatus.FAILED],
        "started": counts[BatchItemStatus.STARTED],
        "results": {"bucket": value_bucket, "key": key, "bytes": size},
        "source": {k: plan[k] for k in ("bucket", "key", "etag", "size")},
    }
    done = StepRecord(
        op_id,
        name,
        StepKind.MAP,
        s.epoch,
        s.clock.now_ms(),
        started_at=rec.started_at,
        result=dumps(body),
        resolved=True,
    )
    rec = await _core.record(s, done)
    return S3BatchResult(json.loads(rec.result or "{}"), client)


async def _plan(client: Any, bucket: str, key: str, batch_size: int) -> dict[str, Any]:
    """One streaming read: the offset where each batch starts, and the end."""
    try:
        head = await client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchKey", "403", "AccessDenied", "NoSuchBucket"):
            raise  # transient or unexpected: `_core.io` decides
        raise ValueError(f"the items object s3://{bucket}/{key} cannot be read: {e}") from e
    etag, size = head["ETag"], int(head["ContentLength"])
    offsets = [0]
    items = 0
    line_no = 0
    async for line, end in _raw_lines(client, bucket, key, etag, 0, size):
        line_no += 1
        if len(line) > MAX_LINE_BYTES:
            raise ValueError(
                f"line {line_no} of s3://{bucket}/{key} is over {MAX_LINE_BYTES} bytes"
            )
        if line.strip():
            try:
                json.loads(line)
            except ValueError as e:
                raise ValueError(f"line {line_no} of s3://{bucket}/{key} is not JSON: {e}") from e
            items += 1
            if items % batch_size == 0:
                offsets.append(end)
                if len(offsets) - 1 > MAX_BATCHES:
                    raise ValueError(_too_many(batch_size))
    if items % batch_size:
        offsets.append(size)  # the last batch, short
    if len(offsets) - 1 > MAX_BATCHES:
        raise ValueError(_too_many(batch_size))
    return {
        "bucket": bucket,
        "key": key,
        "etag": etag,
        "size": size,
        "items": items,
        "offsets": offsets,
        "batch_size": batch_size,
    }


def _too_many(batch_size: int) -> str:
    return (
        f"the map would start more than {MAX_BATCHES:,} children (batch_size {batch_size:,}); "
        "use a larger batch_size"
    )


async def _raw_lines(
    client: Any, bucket: str, key: str, etag: str | None, start: int, end: int
) -> AsyncIterator[tuple[bytes, int]]:
    """The lines of bytes [start, end) of the object (each without its newline),
    with the offset just past each; read in chunks, `etag` required if given."""
    if end <= start:
        return
    args: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": f"bytes={start}-{end - 1}"}
    if etag is not None:
        args["IfMatch"] = etag
    try:
        resp = await client.get_object(**args)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("PreconditionFailed", "412"):
            raise ValueError(
                f"s3://{bucket}/{key} changed since the map read it (ETag {etag}); "
                "a map's items object must not change while it runs"
            ) from e
        raise
    carry = b""
    at = start
    body = resp["Body"]  # aiobotocore's StreamingBody: read(n) streams
    try:
        while True:
            chunk = await body.read(READ_CHUNK)
            if not chunk:
                break
            data = carry + chunk
            lines = data.split(b"\n")
            carry = lines.pop()
            for line in lines:
                at += len(line) + 1
                yield line, at
            if len(carry) > MAX_LINE_BYTES:
                raise ValueError(f"a line of s3://{bucket}/{key} is over {MAX_LINE_BYTES} bytes")
    finally:
        body.close()
    if carry:
        at += len(carry)
        yield carry, at


async def _lines(
    client: Any,
    bucket: str,
    key: str,
    etag: str | None,
    start: int = 0,
    end: int | None = None,
) -> AsyncIterator[str]:
    """The non-blank lines of the object's bytes [start, end), as text."""
    if end is None:
        head = await client.head_object(Bucket=bucket, Key=key)
        end = int(head["ContentLength"])
    async for line, _ in _raw_lines(client, bucket, key, etag, start, end):
        if line.strip():
            yield line.decode()


async def _write_results(
    s: Any,
    client: Any,
    bucket: str,
    key: str,
    ids: list[str],
    outcomes: dict[int, Run | None],
    plan: dict[str, Any],
    batch_size: int,
) -> tuple[dict[BatchItemStatus, int], int]:
    """Stream each started child's outcome, in batch order, into the results
    object; (counts by status, bytes written)."""
    counts = {status: 0 for status in BatchItemStatus}
    upload = _Upload(client, bucket, key)
    try:
        started = sorted(outcomes)
        for at in range(0, len(started), 100):
            part = started[at : at + 100]
            ended = [k for k in part if outcomes[k] is not None]
            runs = await s.store.get_runs([ids[k] for k in ended]) if ended else {}
            for k in part:
                run = runs.get(ids[k])
                line: dict[str, Any] = {
                    "batch": k,
                    "first_index": k * batch_size,
                    "count": min(batch_size, plan["items"] - k * batch_size),
                }
                if outcomes[k] is None or run is None:
                    status = BatchItemStatus.STARTED
                elif run.status == Status.COMPLETED:
                    status = BatchItemStatus.SUCCEEDED
                    output = await s.store.values.get(run.output)
                    line["result"] = json.loads(output or "null")
                else:
                    status = BatchItemStatus.FAILED
                    err = run.error.as_dict() if run.error else {"type": run.status.value}
                    line["error"] = {**err, "status": run.status.value}
                line["status"] = status.value
                counts[status] += 1
                await upload.write((json.dumps(line, separators=(",", ":")) + "\n").encode())
        size = await upload.close()
    except BaseException:
        await upload.abort()
        raise
    return counts, size


class _Upload:
    """A multipart upload of PART_BYTES parts; one PutObject when it is small."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self._size += len(data)
        if len(self._buffer) >= PART_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._upload_id is None:
            resp = await self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType="application/x-ndjson"
            )
            self._upload_id = resp["UploadId"]
        number = len(self._parts) + 1
        resp = await self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})
        self._buffer.clear()

    async def close(self) -> int:
        if self._upload_id is None:
            await self._client.put_object(
                Bucket=self._bucket,
                Key=self._key,
                Body=bytes(self._buffer),
                ContentType="application/x-ndjson",
            )
            return self._size
        if self._buffer:
            await self._flush()
        await self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        return self._size

    async def abort(self) -> None:
        if self._upload_id is not None:
            # One that fails is left to the bucket's lifecycle rule.
            with contextlib.suppress(Exception):
                await self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
                )
