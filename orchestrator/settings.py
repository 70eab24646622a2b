"""Configuration from the environment (`ORCHESTRATOR_*` plus the standard AWS
variables). The same worker code runs against the local stack and a CDK
deployment by changing only these variables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import resources as r
from .model import (
    BUILD_ID_HELP,
    BUILD_ID_RE,
    DEFAULT_CHECKPOINT_FLUSH_MS,
    DEFAULT_CLAIM_FAILURE_LIMIT,
    DEFAULT_LOOP_STALL_SECONDS,
    DEFAULT_TASK_QUEUE,
    MAX_CLAIM_FAILURE_LIMIT,
    MAX_LOOP_STALL_SECONDS,
    TASK_QUEUE_RE,
)


class EnvConfig(BaseSettings):
    """The environment's variables, read and checked by pydantic-settings: a
    malformed value (a lease of "ten", a bad task queue name) stops the process
    with the variable's name instead of a traceback deep in a worker. An empty
    variable counts as unset."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", env_ignore_empty=True)

    table: str = Field(default=r.DEFAULT_TABLE_NAME, validation_alias=r.ENV_TABLE, min_length=3)
    queue_url: str = Field(default="", validation_alias=r.ENV_QUEUE_URL)
    dlq_url: str = Field(default="", validation_alias=r.ENV_DLQ_URL)
    queue_arn: str = Field(default="", validation_alias=r.ENV_QUEUE_ARN)
    schedule_group: str = Field(
        default=r.DEFAULT_SCHEDULE_GROUP, validation_alias=r.ENV_SCHEDULE_GROUP
    )
    scheduler_role_arn: str = Field(default="", validation_alias=r.ENV_SCHEDULER_ROLE_ARN)
    recurring_group: str = Field(
        default=r.DEFAULT_RECURRING_GROUP, validation_alias=r.ENV_RECURRING_GROUP
    )
    recurring_target_arn: str = Field(default="", validation_alias=r.ENV_RECURRING_TARGET_ARN)
    recurring_role_arn: str = Field(default="", validation_alias=r.ENV_RECURRING_ROLE_ARN)
    lease_seconds: int = Field(
        default=r.DEFAULT_LEASE_SECONDS, validation_alias=r.ENV_LEASE_SECONDS, ge=1, le=43_200
    )
    checkpoint_flush_ms: int = Field(
        default=DEFAULT_CHECKPOINT_FLUSH_MS,
        validation_alias=r.ENV_CHECKPOINT_FLUSH_MS,
        ge=1,
        le=3_600_000,
    )
    region: str = Field(
        default=r.DEFAULT_REGION, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    api_url: str | None = Field(default=None, validation_alias=r.ENV_API_URL)
    poll_seconds: int = Field(default=20, validation_alias=r.ENV_POLL_SECONDS, ge=0, le=20)
    task_queues: str = Field(default="", validation_alias=r.ENV_TASK_QUEUES)
    stranded_after_s: int = Field(
        default=300, validation_alias=r.ENV_STRANDED_AFTER_SECONDS, ge=1, le=366 * 24 * 3600
    )
    claim_failure_limit: int = Field(
        default=DEFAULT_CLAIM_FAILURE_LIMIT,
        validation_alias=r.ENV_CLAIM_FAILURE_LIMIT,
        ge=1,
        le=MAX_CLAIM_FAILURE_LIMIT,
    )
    loop_stall_seconds: int = Field(
        default=DEFAULT_LOOP_STALL_SECONDS,
        validation_alias=r.ENV_LOOP_STALL_SECONDS,
        ge=1,
        le=MAX_LOOP_STALL_SECONDS,
    )

    # Unset: no value bucket, values stay in DynamoDB (up to MAX_INLINE_BYTES). No
    # default name: S3 names are global, and a guessed one could be anyone's.
    bucket: str = Field(default="", validation_alias=r.ENV_BUCKET)
    offload_bytes: int = Field(
        default=r.DEFAULT_OFFLOAD_BYTES,
        validation_alias=r.ENV_OFFLOAD_BYTES,
        ge=1024,
        le=r.MAX_INLINE_BYTES,
    )

    # The build id a worker records on the runs it claims first (pinned versioning).
    build_id: str | None = Field(default=None, validation_alias=r.ENV_BUILD_ID)
    # OpenTelemetry spans from workers (the `otel` extra): "1", "true", "yes" turn them on.
    tracing: bool = Field(default=False, validation_alias=r.ENV_TRACING)

    @field_validator("build_id")
    @classmethod
    def _build_id(cls, v: str | None) -> str | None:
        if v is not None and not BUILD_ID_RE.fullmatch(v):
            raise ValueError(BUILD_ID_HELP)
        return v

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if v and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", v):
            raise ValueError("an S3 bucket name: 3 to 63 of a-z, 0-9, '.' and '-'")
        return v

    @field_validator("task_queues")
    @classmethod
    def _queues(cls, v: str) -> str:
        parse_task_queues(v)
        return v


class ConfigError(ValueError):
    """An environment variable holds a value the project cannot use."""


def _config_error(e: ValidationError) -> ConfigError:
    parts = []
    for err in e.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        info = EnvConfig.model_fields.get(field)
        alias = info.validation_alias if info is not None else None
        name = (
            " or ".join(str(c) for c in alias.choices)
            if isinstance(alias, AliasChoices)
            else str(alias or field)
        )
        parts.append(f"{name}: {err['msg']}")
    return ConfigError("bad configuration in the environment: " + "; ".join(parts))


@dataclass(frozen=True)
class Settings:
    table: str = r.DEFAULT_TABLE_NAME
    queue_url: str = ""
    dlq_url: str = ""
    queue_arn: str = ""
    schedule_group: str = r.DEFAULT_SCHEDULE_GROUP
    scheduler_role_arn: str = ""
    recurring_group: str = r.DEFAULT_RECURRING_GROUP
    recurring_target_arn: str = ""
    recurring_role_arn: str = ""
    lease_seconds: int = r.DEFAULT_LEASE_SECONDS
    # Batched checkpoints: a buffered step result is written within this long.
    checkpoint_flush_ms: int = DEFAULT_CHECKPOINT_FLUSH_MS
    region: str = r.DEFAULT_REGION
    endpoint_url: str | None = None  # AWS_ENDPOINT_URL: the local stack's moto server
    api_url: str | None = None
    poll_seconds: int = 20  # SQS long-poll wait
    # How long after its due time the sweeper picks a run up. The normal paths
    # (send at start, SQS delay, schedules) come first; the sweeper is the backstop.
    sweep_grace_ms: int = 30_000
    # The deployment's task queues (ORCHESTRATOR_TASK_QUEUES, comma-separated);
    # "default" is always one of them.
    task_queues: tuple[str, ...] = (DEFAULT_TASK_QUEUE,)
    # A pinned run whose build has had no live worker for this long is "stranded".
    stranded_after_s: int = 300
    # A worker fails a run once this many claims in a row ended with the same
    # non-transient error before the run could go on (`model.ClaimFailure`).
    claim_failure_limit: int = DEFAULT_CLAIM_FAILURE_LIMIT
    # A worker whose event loop has not answered for this long stops renewing its
    # leases, so its runs go to other workers (worker/_heartbeats.py).
    loop_stall_seconds: int = DEFAULT_LOOP_STALL_SECONDS
    # Large values: the bucket, and the size above which a value is stored there.
    bucket: str = ""  # the value bucket (ORCHESTRATOR_BUCKET); "" : none, nothing offloaded
    offload_bytes: int = r.DEFAULT_OFFLOAD_BYTES
    build_id: str | None = None  # ORCHESTRATOR_BUILD_ID: a worker's default build id
    tracing: bool = False  # ORCHESTRATOR_TRACING: a worker's default for spans

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """From os.environ (read by pydantic-settings), or from `env` when given."""
        try:
            # A mapping given directly: empty means unset, as env_ignore_empty does
            # for os.environ.
            given = None if env is None else {k: v for k, v in env.items() if v != ""}
            c = EnvConfig() if given is None else EnvConfig.model_validate(given)
        except ValidationError as e:
            raise _config_error(e) from None
        fields = c.model_dump()
        fields["task_queues"] = parse_task_queues(fields["task_queues"])
        return cls(**fields)

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    # --- task queues: each one's SQS queue, derived from the work queue's -------------
    def _queue_name(self) -> str:
        return self.queue_url.rstrip("/").rsplit("/", 1)[-1]

    # A queue key is a task queue ("gpu") or a task queue's pinned build ("gpu@v2").
    def queue_url_for(self, task_queue: str | None) -> str:
        if task_queue in (None, DEFAULT_TASK_QUEUE):
            return self.queue_url
        base, name = self.queue_url.rstrip("/").rsplit("/", 1)
        return f"{base}/{r.queue_name_for(name, task_queue)}"

    def queue_arn_for(self, task_queue: str | None) -> str:
        if task_queue in (None, DEFAULT_TASK_QUEUE):
            return self.queue_arn
        base, name = self.queue_arn.rsplit(":", 1)
        return f"{base}:{r.queue_name_for(name, task_queue)}"

    def dlq_url_for(self, task_queue: str | None) -> str:
        """A pinned build's queue shares its task queue's DLQ."""
        task_queue, _ = r.split_queue_key(task_queue)
        if task_queue == DEFAULT_TASK_QUEUE:
            return self.dlq_url
        base = self.queue_url.rstrip("/").rsplit("/", 1)[0]
        return f"{base}/{r.task_queue_name(self._queue_name(), task_queue)}-dlq"

    def dlq_arn_for(self, task_queue: str | None) -> str:
        base = self.queue_arn.rsplit(":", 1)[0]
        return f"{base}:{self.dlq_url_for(task_queue).rstrip('/').rsplit('/', 1)[-1]}"

    def require_queue(self) -> None:
        if not self.queue_url:
            raise RuntimeError(
                f"{r.ENV_QUEUE_URL} is not set: run `orchestrator dev` and paste its export "
                "lines, or set it to the QueueUrl output of the deployed stack"
            )

    def env_exports(self) -> dict[str, str]:
        """The variables that point a worker or client at this deployment."""
        out = {
            "AWS_REGION": self.region,
            r.ENV_TABLE: self.table,
            r.ENV_QUEUE_URL: self.queue_url,
            r.ENV_QUEUE_ARN: self.queue_arn,
            r.ENV_DLQ_URL: self.dlq_url,
            r.ENV_SCHEDULE_GROUP: self.schedule_group,
            r.ENV_SCHEDULER_ROLE_ARN: self.scheduler_role_arn,
            r.ENV_RECURRING_GROUP: self.recurring_group,
            r.ENV_LEASE_SECONDS: str(self.lease_seconds),
            r.ENV_TASK_QUEUES: ",".join(self.task_queues),
            r.ENV_BUCKET: self.bucket,
        }
        if self.endpoint_url:
            out["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.api_url:
            out[r.ENV_API_URL] = self.api_url
        return out


def parse_task_queues(text: str) -> tuple[str, ...]:
    """`default` first, then the other names in the order given, each once."""
    names = [DEFAULT_TASK_QUEUE, *(n.strip() for n in text.split(",") if n.strip())]
    for n in names:
        if not TASK_QUEUE_RE.fullmatch(n):
            raise ValueError(
                f"task queue {n!r} in {r.ENV_TASK_QUEUES}: use a lowercase letter, then at most "
                "39 lowercase letters, digits or '-'"
            )
    return tuple(dict.fromkeys(names))
