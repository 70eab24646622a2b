"""Create the table, queues and schedule group on an emulator, from the same
`orchestrator.resources` the CDK stack is built from."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from .. import resources as r
from ..settings import Settings

SCHEDULER_ROLE_ARN = "arn:aws:iam::123456789012:role/orchestrator-scheduler"
# Recurring schedules target the API "Lambda": locally the emulator hands their
# events to the API's service in-process instead.
API_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:orchestrator-api"
RECURRING_ROLE_ARN = "arn:aws:iam::123456789012:role/orchestrator-recurring"


def table_definition(table: str) -> dict[str, Any]:
    attrs = {r.PK: "S", r.SK: "S"}
    gsis = []
    for ix in r.INDEXES:
        attrs[ix.partition_key] = "S"
        attrs[ix.sort_key] = ix.sort_key_type
        projection: dict[str, Any] = (
            {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(ix.projection)}
            if ix.projection
            else {"ProjectionType": "KEYS_ONLY"}
        )
        gsis.append(
            {
                "IndexName": ix.name,
                "KeySchema": [
                    {"AttributeName": ix.partition_key, "KeyType": "HASH"},
                    {"AttributeName": ix.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": projection,
            }
        )
    return {
        "TableName": table,
        "KeySchema": [
            {"AttributeName": r.PK, "KeyType": "HASH"},
            {"AttributeName": r.SK, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": k, "AttributeType": t} for k, t in attrs.items()
        ],
        "GlobalSecondaryIndexes": gsis,
        "BillingMode": "PAY_PER_REQUEST",
    }


def bootstrap(
    session: Any,
    endpoint_url: str,
    settings: Settings,
    *,
    max_receive_count: int = r.MAX_RECEIVE_COUNT,
) -> Settings:
    """Create everything (idempotent) and return settings that point at it.
    `max_receive_count` is the redrive policy's (tests use a small one)."""
    kw = {"endpoint_url": endpoint_url, "region_name": settings.region}
    ddb = session.client("dynamodb", **kw)
    sqs = session.client("sqs", **kw)
    scheduler = session.client("scheduler", **kw)
    try:
        ddb.create_table(**table_definition(settings.table))
        ddb.update_time_to_live(
            TableName=settings.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": r.TTL_ATTRIBUTE},
        )
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceInUseException":
            raise
    queue_url, queue_arn, dlq_url = _queues(
        sqs, settings, r.DEFAULT_QUEUE_NAME, r.DEFAULT_DLQ_NAME, max_receive_count
    )
    for task_queue in settings.task_queues:
        if task_queue != r.DEFAULT_TASK_QUEUE:
            _queues(
                sqs,
                settings,
                r.task_queue_name(r.DEFAULT_QUEUE_NAME, task_queue),
                r.task_dlq_name(r.DEFAULT_QUEUE_NAME, r.DEFAULT_DLQ_NAME, task_queue),
                max_receive_count,
            )
    bucket = settings.bucket or r.DEFAULT_BUCKET_NAME  # the local stack always has one
    _bucket(session.client("s3", **kw), bucket)
    for group in (settings.schedule_group, settings.recurring_group):
        try:
            scheduler.create_schedule_group(Name=group)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConflictException":
                raise
    return settings.with_(
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        scheduler_role_arn=SCHEDULER_ROLE_ARN,
        recurring_target_arn=settings.recurring_target_arn or API_FUNCTION_ARN,
        recurring_role_arn=settings.recurring_role_arn or RECURRING_ROLE_ARN,
        endpoint_url=endpoint_url,
        bucket=bucket,
    )


def _bucket(s3: Any, name: str) -> None:
    """The large-value bucket (idempotent), with the deployed bucket's lifecycle."""
    try:
        s3.create_bucket(Bucket=name)
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_bucket_lifecycle_configuration(
        Bucket=name,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "expire-values",
                    "Status": "Enabled",
                    "Filter": {"Prefix": r.VALUE_KEY_PREFIX},
                    "Expiration": {"Days": r.VALUE_RETENTION_DAYS},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        },
    )


def _queues(
    sqs: Any, settings: Settings, name: str, dlq_name: str, max_receive_count: int
) -> tuple[str, str, str]:
    """A work queue and its DLQ (idempotent): (queue URL, queue ARN, DLQ URL)."""
    dlq_url = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    attributes = {
        "VisibilityTimeout": str(settings.lease_seconds + 5),
        "MessageRetentionPeriod": str(r.QUEUE_RETENTION_SECONDS),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
        ),
    }
    try:
        queue_url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as e:
        if "QueueAlreadyExists" not in e.response["Error"]["Code"]:
            raise
        # Same name, other settings (moto's state is shared by every server in a process).
        queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return queue_url, queue_arn, dlq_url
