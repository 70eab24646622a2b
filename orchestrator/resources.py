"""Every name the deployment and the code share: tables, keys, indexes, queues,
the schedule group and the environment variables.

The CDK constructs (`infra/`), the settings loader and the local bootstrap all
import this module, so a table or index name cannot drift between what is
deployed and what the code queries. Standard library only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# --- Environment variables ---------------------------------------------------------------
ENV_PREFIX = "ORCHESTRATOR_"
ENV_TABLE = "ORCHESTRATOR_TABLE"
ENV_QUEUE_URL = "ORCHESTRATOR_QUEUE_URL"
ENV_DLQ_URL = "ORCHESTRATOR_DLQ_URL"
ENV_QUEUE_ARN = "ORCHESTRATOR_QUEUE_ARN"
ENV_SCHEDULE_GROUP = "ORCHESTRATOR_SCHEDULE_GROUP"
ENV_SCHEDULER_ROLE_ARN = "ORCHESTRATOR_SCHEDULER_ROLE_ARN"
ENV_LEASE_SECONDS = "ORCHESTRATOR_LEASE_SECONDS"
# Batched checkpoints: the longest a buffered step result waits for its write (ms).
ENV_CHECKPOINT_FLUSH_MS = "ORCHESTRATOR_CHECKPOINT_FLUSH_MS"
ENV_API_URL = "ORCHESTRATOR_API_URL"
ENV_API_AUTH = "ORCHESTRATOR_API_AUTH"  # "none" | "iam": how the Python client signs requests
ENV_POLL_SECONDS = "ORCHESTRATOR_POLL_SECONDS"
ENV_API_TOKEN = "ORCHESTRATOR_API_TOKEN"  # a bearer token the dashboard proxy sends
ENV_TRACING = "ORCHESTRATOR_TRACING"  # "1": OpenTelemetry spans in the worker
# Test tooling only: a fault-injection spec. When set, `orchestrator.aws.instrument`
# loads `orchestrator.testing_faults` into every client; unset, nothing loads it.
ENV_FAULTS = "ORCHESTRATOR_FAULTS"
ENV_BUILD_ID = (
    "ORCHESTRATOR_BUILD_ID"  # the worker's build id, recorded on the runs it claims first
)
ENV_TASK_QUEUES = "ORCHESTRATOR_TASK_QUEUES"  # comma-separated; "default" is always there
# A pinned run whose build has had no live worker this long is flagged "stranded".
ENV_STRANDED_AFTER_SECONDS = "ORCHESTRATOR_STRANDED_AFTER_SECONDS"
# Claims in a row that the same non-transient error may end before the run fails.
ENV_CLAIM_FAILURE_LIMIT = "ORCHESTRATOR_CLAIM_FAILURE_LIMIT"
ENV_LOOP_STALL_SECONDS = "ORCHESTRATOR_LOOP_STALL_SECONDS"
# Recurring schedules: their own Scheduler group, the function they invoke (the API
# Lambda; found from its context when unset) and the role they assume to invoke it.
ENV_RECURRING_GROUP = "ORCHESTRATOR_RECURRING_GROUP"
ENV_RECURRING_TARGET_ARN = "ORCHESTRATOR_RECURRING_TARGET_ARN"
ENV_RECURRING_ROLE_ARN = "ORCHESTRATOR_RECURRING_ROLE_ARN"
# Large values (claim check, orchestrator/payloads.py): the S3 bucket that holds
# them and the size in bytes above which a value is stored there.
ENV_BUCKET = "ORCHESTRATOR_BUCKET"
ENV_OFFLOAD_BYTES = "ORCHESTRATOR_OFFLOAD_BYTES"

# --- Default physical names (the local stack uses them; CDK may prefix them) -------------
DEFAULT_TABLE_NAME = "orchestrator-state"
DEFAULT_QUEUE_NAME = "orchestrator-work"
DEFAULT_DLQ_NAME = "orchestrator-work-dlq"
DEFAULT_SCHEDULE_GROUP = "orchestrator"
DEFAULT_RECURRING_GROUP = "orchestrator-recurring"
DEFAULT_REGION = "us-east-1"
DEFAULT_BUCKET_NAME = "orchestrator-values"

# --- The state table ---------------------------------------------------------------------
# One table, one partition per run: the run record, its step records and its
# signal inbox share the partition key, so one Query loads a run's whole history.
PK = "pk"  # "WF#<workflow id>"
SK = "sk"  # "RUN" | "STEP#<position:06d>" | "SIG#<name>#<seq:012d>"
TTL_ATTRIBUTE = "expires_at"  # epoch seconds; set on consumed signals only

RUN_PK_PREFIX = "WF#"  # a run's partition: "WF#<workflow id>"
RUN_SK = "RUN"
# Tag index entries live in their own partitions: "TAG#<key>=<value>" (store/sync.py).
TAG_PK_PREFIX = "TAG#"
STEP_SK_PREFIX = "STEP#"
SIGNAL_SK_PREFIX = "SIG#"

# A callback's token lookup: pk = "CB#<token>", sk = "CB" (its own partition: the API
# finds the run from the token alone). In no index.
CALLBACK_PK_PREFIX = "CB#"
CALLBACK_SK = "CB"


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index: its name, key attributes and projected attributes.

    ``projection`` is ``()`` for KEYS_ONLY. Projected attributes are chosen so that
    no high-frequency write (a step, a heartbeat) touches an index.
    """

    name: str
    partition_key: str
    sort_key: str
    sort_key_type: str  # "S" or "N"
    projection: tuple[str, ...]


# List runs newest first (and filter by name): written once when a run is created,
# never again, because its keys and the projected "name" never change.
# The partition key is sharded ("RUNS#<0..LIST_SHARDS-1>") so starts spread over
# several index partitions; a listing merges the shards by sort key.
BY_CREATED = IndexSpec(
    name="by_created",
    partition_key="list_pk",
    sort_key="list_sk",  # "<created ms:013d>#<id>"
    sort_key_type="S",
    projection=("name",),
)
LIST_SHARDS = 4

# The sweeper's index: sparse. "due_at" (epoch ms) is the time after which the
# sweeper must look at the run: wake time + grace for sleepers and timed waits,
# a re-check time for running runs, a re-send time for pending ones. A run enters
# it when it parks, when a signal wakes it, when its owner releases it, or when
# the sweeper's walk of `by_created` finds it unfinished after the grace period;
# it leaves when the run ends. A run that starts and finishes within the grace
# never enters it: no index write on the happy path. Heartbeats never touch it.
BY_DUE = IndexSpec(
    name="by_due",
    partition_key="due_pk",
    sort_key="due_at",
    sort_key_type="N",
    projection=(),
)
DUE_SHARDS = 4

INDEXES = (BY_CREATED, BY_DUE)

# --- Large values (S3) ----------------------------------------------------------------------
# A value above the offload threshold is one object, keyed by the SHA-256 of its
# bytes: "values/sha256/<hex>". Identical values are one object.
VALUE_KEY_PREFIX = "values/sha256/"
# Default threshold (bytes of JSON text): see docs/performance.md, "Large values".
DEFAULT_OFFLOAD_BYTES = 16 * 1024
# Above this, a value always goes to S3 whatever the threshold: it keeps a step
# record (one DynamoDB item, 400 KB at most) well inside the item limit.
MAX_INLINE_BYTES = 200 * 1024
# Objects expire this long after their last write (each write of an identical value
# refreshes it). Longer than the step history's TTL (30 days); a run record older
# than this reads its offloaded values as expired (docs/architecture.md).
VALUE_RETENTION_DAYS = 400


# --- Queues and schedules ------------------------------------------------------------------
MAX_RECEIVE_COUNT = 20  # SQS redrive: deliveries before a message moves to the DLQ
MAX_SQS_DELAY_SECONDS = 900  # longer waits use an EventBridge Scheduler schedule
QUEUE_RETENTION_SECONDS = 14 * 24 * 3600
DEFAULT_LEASE_SECONDS = 30


# --- Task queues ---------------------------------------------------------------------------
# One SQS queue and one DLQ per task queue. "default" is the work queue itself
# (DEFAULT_QUEUE_NAME, or the deployment's name for it); another task queue's
# queues are named after it: "<work queue>-<task queue>" and "<...>-dlq". Workers
# and the API derive a task queue's URL and ARN from the work queue's, so one
# environment variable (ORCHESTRATOR_TASK_QUEUES) lists them all.
DEFAULT_TASK_QUEUE = "default"


def task_queue_name(work_queue_name: str, task_queue: str) -> str:
    if task_queue == DEFAULT_TASK_QUEUE:
        return work_queue_name
    return f"{work_queue_name}-{task_queue}"


def task_dlq_name(work_queue_name: str, dlq_name: str, task_queue: str) -> str:
    if task_queue == DEFAULT_TASK_QUEUE:
        return dlq_name
    return f"{work_queue_name}-{task_queue}-dlq"


# --- Pinned builds --------------------------------------------------------------------------
# A pinned run (`@workflow(..., versioning="pinned")`) is claimed only by workers of
# the build that first claimed it, and its messages go to that build's own queue on
# its task queue: the queue key "<task queue>@<build id>". Its SQS name is the task
# queue's name, "_b_", the build id with the characters SQS refuses made "-", and a
# hash of the build id (two builds that differ only in those characters stay
# apart). Task queue names hold no "_", so no task queue's name can take this form.
# Its dead letters go to the task queue's DLQ.
PIN_SEPARATOR = "@"
MAX_SQS_QUEUE_NAME = 80


def undeclared_queue_fix(task_queue: str) -> str:
    """How to add a task queue the deployment lacks, deployed and local: the
    error that refuses such a queue (a start, a schedule, a worker) names both."""
    return (
        f"deployed, add {task_queue!r} to the stack's task_queues and deploy; "
        f"locally, restart `orchestrator dev --task-queue {task_queue}` "
        f"(it exports {ENV_TASK_QUEUES} for the worker's shell)"
    )


def pinned_queue_key(task_queue: str | None, build_id: str) -> str:
    return f"{task_queue or DEFAULT_TASK_QUEUE}{PIN_SEPARATOR}{build_id}"


def split_queue_key(key: str | None) -> tuple[str, str | None]:
    """(task queue, build id or None) of a queue key ("gpu", "gpu@2026.11.1")."""
    queue, sep, build = (key or DEFAULT_TASK_QUEUE).partition(PIN_SEPARATOR)
    return queue, (build if sep else None)


def pinned_queue_name(work_queue_name: str, task_queue: str, build_id: str) -> str:
    base = task_queue_name(work_queue_name, task_queue)
    digest = hashlib.sha256(build_id.encode()).hexdigest()[:8]
    safe = re.sub(r"[^A-Za-z0-9-]", "-", build_id)
    room = MAX_SQS_QUEUE_NAME - len(base) - len("_b_") - len("_") - len(digest)
    if room < 1:
        raise ValueError(f"work queue name {work_queue_name!r} leaves no room for a build id")
    return f"{base}_b_{safe[:room]}_{digest}"


def queue_name_for(work_queue_name: str, key: str | None) -> str:
    """The SQS queue name of a queue key: a task queue, or a task queue's pinned build."""
    queue, build = split_queue_key(key)
    if build is None:
        return task_queue_name(work_queue_name, queue)
    return pinned_queue_name(work_queue_name, queue, build)


def list_pk(shard: int) -> str:
    return f"RUNS#{shard}"


def due_pk(shard: int) -> str:
    return f"DUE#{shard}"


# The sweeper's progress through `by_created`: one item per list shard, under
# this partition key, holding the sort key of the last run the walk has settled.
SWEEPER_PK = "SWEEPER"
SWEEP_MARK_ATTRIBUTE = "mark"


SWEEP_MARK_SK_PREFIX = "CREATED#"


def sweep_mark_sk(shard: int) -> str:
    return f"{SWEEP_MARK_SK_PREFIX}{shard}"


# The worker registry: one partition, one item per worker ("W#<worker id>").
REGISTRY_PK = "WORKERS"
WORKER_SK_PREFIX = "W#"


# Recurring schedules' definitions: one partition, so one Query lists them all
# without reading EventBridge Scheduler. Each decision (a tick started, skipped,
# buffered) is one write to its schedule's item.
SCHEDULES_PK = "SCHEDULES"


def schedule_sk(name: str) -> str:
    return f"S#{name}"


# Jobs (bulk operations, backfills): one partition, newest first by id. A running
# job is also in `by_due` under its own partition key (never one of the runs'
# DUE#<shard> keys), so the sweeper's jobs pass finds it with one Query.
JOBS_PK = "JOBS"
JOBS_DUE_PK = "JOBS"


def job_sk(job_id: str) -> str:
    return f"JOB#{job_id}"
