"""The floor: the calls that no durable-workflow design on these services can
avoid, made by a minimal script with the same concurrency as the real run.

Per workflow: the start write (conditional put of the run record) and one SQS
send; one receive; one claim (conditional update); one conditional put per
step; one completion (conditional update); the delete of the message, batched
up to 10 per DeleteMessageBatch with the worker's own batcher (a per-message
DeleteMessage is avoidable, so the floor does not pay for it either). No
history read (a fresh run has none), no index, no heartbeat, no lease
bookkeeping beyond the claim's epoch, no API hop, no thread hop for the step
function. Its step records have the same attributes and size as the engine's.

Starts run in the harness process (`start_one`); each worker is its own
process (`python -m benchmarks.floor --role floor-worker-0 ...`) with the
same aiobotocore stack as the real worker, `K` processes of `N` slots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from worker._deletes import DeleteBatcher

from .hooks import Recorder
from .workload import make_result

FLOOR_TABLE = "bench-floor"
FLOOR_QUEUE = "bench-floor-work"
ENV_FLOOR_QUEUE_URL = "BENCH_FLOOR_QUEUE_URL"


def create_resources(ddb: Any, sqs: Any, visibility: int) -> str:
    """A table with the same keys as the engine's and no index; a plain queue."""
    ddb.create_table(
        TableName=FLOOR_TABLE,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    url = sqs.create_queue(QueueName=FLOOR_QUEUE, Attributes={"VisibilityTimeout": str(visibility)})
    return str(url["QueueUrl"])


def _s(v: str) -> dict[str, str]:
    return {"S": v}


def _n(v: int) -> dict[str, str]:
    return {"N": str(v)}


def start_one(ddb: Any, sqs: Any, queue_url: str, wid: str, input_text: str) -> None:
    """The start: the conditional put of the run record, then the send."""
    now = int(time.time() * 1000)
    ddb.put_item(
        TableName=FLOOR_TABLE,
        Item={
            "pk": _s(f"WF#{wid}"),
            "sk": _s("RUN"),
            "name": _s("bench"),
            "status": _s("pending"),
            "input": _s(input_text),
            "created_at": _n(now),
            "epoch": _n(0),
        },
        ConditionExpression="attribute_not_exists(pk)",
    )
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"id": wid}))


# --- the floor worker process --------------------------------------------------------------
async def _run_worker(
    queue_url: str,
    concurrency: int,
    poll_seconds: int,
    stop: asyncio.Event,
    ready: Path,
    stats: dict[str, float],
) -> None:
    import aioboto3
    from aiobotocore.config import AioConfig

    session = aioboto3.Session()
    config = AioConfig(read_timeout=40, max_pool_connections=max(20, 2 * concurrency))
    kw: dict[str, Any] = {
        "endpoint_url": os.environ.get("AWS_ENDPOINT_URL"),
        "region_name": os.environ.get("AWS_REGION", "us-east-1"),
        "config": config,
    }
    async with session.client("dynamodb", **kw) as ddb, session.client("sqs", **kw) as sqs:
        owner = f"floor-{os.getpid()}"
        deletes = DeleteBatcher(sqs, queue_url)
        tasks: set[asyncio.Task[None]] = set()
        freed = asyncio.Event()

        async def handle(message: dict[str, Any]) -> None:
            body = json.loads(message["Body"])
            wid = body["id"]
            resp = await ddb.update_item(
                TableName=FLOOR_TABLE,
                Key={"pk": _s(f"WF#{wid}"), "sk": _s("RUN")},
                UpdateExpression="SET #st = :running, #ow = :owner, #ep = #ep + :one",
                ConditionExpression="#st = :pending",
                ExpressionAttributeNames={"#st": "status", "#ow": "owner", "#ep": "epoch"},
                ExpressionAttributeValues={
                    ":running": _s("running"),
                    ":pending": _s("pending"),
                    ":owner": _s(owner),
                    ":one": _n(1),
                },
                ReturnValues="ALL_NEW",
            )
            item = resp["Attributes"]
            epoch = int(item["epoch"]["N"])
            spec = json.loads(item["input"]["S"])
            for i in range(int(spec["steps"])):
                started = int(time.time() * 1000)
                result = json.dumps(make_result(i, int(spec.get("result_bytes", 100))))
                await ddb.put_item(
                    TableName=FLOOR_TABLE,
                    Item={
                        "pk": _s(f"WF#{wid}"),
                        "sk": _s(f"STEP#{i:06d}"),
                        "position": _n(i),
                        "name": _s(f"s{i}"),
                        "kind": _s("step"),
                        "epoch": _n(epoch),
                        "recorded_at": _n(int(time.time() * 1000)),
                        "result": _s(result),
                        "started_at": _n(started),
                    },
                    ConditionExpression="attribute_not_exists(sk)",
                )
            await ddb.update_item(
                TableName=FLOOR_TABLE,
                Key={"pk": _s(f"WF#{wid}"), "sk": _s("RUN")},
                UpdateExpression="SET #st = :done, #out = :out REMOVE #ow",
                ConditionExpression="#ep = :epoch",
                ExpressionAttributeNames={
                    "#st": "status",
                    "#out": "output",
                    "#ow": "owner",
                    "#ep": "epoch",
                },
                ExpressionAttributeValues={
                    ":done": _s("completed"),
                    ":out": _s(json.dumps({"steps": spec["steps"]})),
                    ":epoch": _n(epoch),
                },
            )
            deletes.add(message["ReceiptHandle"])

        async def guarded(message: dict[str, Any]) -> None:
            try:
                await handle(message)
            except Exception:
                logging.exception("floor run failed")

        def done(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            freed.set()

        async def poll() -> None:
            while True:
                free = concurrency - len(tasks)
                if free <= 0:
                    freed.clear()
                    await freed.wait()
                    continue
                resp = await sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=min(10, free),
                    WaitTimeSeconds=poll_seconds,
                )
                for m in resp.get("Messages", []):
                    t = asyncio.create_task(guarded(m))
                    tasks.add(t)
                    t.add_done_callback(done)

        poller = asyncio.create_task(poll())
        ready.write_text("ready")
        cpu0 = time.process_time()
        await stop.wait()
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        if tasks:
            await asyncio.wait(set(tasks), timeout=10)
        await deletes.close()
        stats["cpu_s"] = time.process_time() - cpu0


def main() -> None:
    import signal

    parser = argparse.ArgumentParser()
    parser.add_argument("--role", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--poll-seconds", type=int, default=20)
    parser.add_argument("--counts-out", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    recorder = Recorder(args.role)
    recorder.install_everywhere()

    async def run(stats: dict[str, float]) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await _run_worker(
            os.environ[ENV_FLOOR_QUEUE_URL],
            args.concurrency,
            args.poll_seconds,
            stop,
            args.ready_file,
            stats,
        )

    stats: dict[str, float] = {}
    asyncio.run(run(stats))
    recorder.dump(args.counts_out, worker_stats=stats)


if __name__ == "__main__":
    main()
