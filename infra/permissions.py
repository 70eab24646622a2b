"""Every IAM statement of the deployment, in one place, one list per principal.

Least privilege: each principal gets only the actions its code calls, on the
resources it calls them on. Item operations name the table; Query also names each
index by name (never `index/*`). The only wildcard resources are the ones IAM
cannot narrow further, and each carries the reason that `infra.nag` records as
its cdk-nag acknowledgment:

- `schedule/<group>/*`: schedule names are made at run time from workflow ids, so
  the group is the narrowest scope;
- `<value bucket>/values/sha256/*`: value objects are named by their content's
  digest, known only at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import aws_iam as iam

# There is no `dynamodb:TransactWriteItems` IAM action (cfn-lint W3037 flags it): a
# transaction is authorized item by item with PutItem, UpdateItem, DeleteItem and
# ConditionCheckItem, so those actions are what TransactWriteItems calls need.
# BatchGetItem: flow control reads the runs of stale-looking slots (worker/_flow.py).
# No principal has BatchWriteItem: it deletes as well as puts, and IAM cannot tell
# the two apart inside it. Continue-as-new's TTL rewrite (worker) and fork's copy
# (API) send one PutItem per record instead (docs/security.md says why not
# `dynamodb:LeadingKeys`).
WORKER_ITEM_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:BatchGetItem",
)
API_ITEM_ACTIONS = (
    *WORKER_ITEM_ACTIONS,
    "dynamodb:DeleteItem",  # redrive deletes failed records; schedule definitions are deleted
)
# The sweeper's schedule pass starts missed or buffered ticks: a transaction that
# puts the run (PutItem) and updates the schedule (UpdateItem). Its jobs pass goes
# on with bulk operations the API started (api/jobs.py), and a bulk redrive is the
# API's redrive: a transaction that deletes a run's failed records (DeleteItem)
# under a condition on the run (ConditionCheckItem).
SWEEPER_ITEM_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:UpdateItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
)
QUERY_ACTIONS = ("dynamodb:Query",)
WORKER_QUEUE_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:SendMessage",
    "sqs:GetQueueAttributes",
)
SEND_ACTIONS = ("sqs:SendMessage",)
API_QUEUE_ACTIONS = ("sqs:SendMessage", "sqs:GetQueueAttributes")  # GET /queues: depths
SWEEPER_DLQ_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
WORKER_SCHEDULE_ACTIONS = (
    "scheduler:CreateSchedule",
    "scheduler:DeleteSchedule",
    "scheduler:GetSchedule",
)
API_SCHEDULE_ACTIONS = ("scheduler:DeleteSchedule",)
API_RECURRING_ACTIONS = (
    "scheduler:CreateSchedule",
    "scheduler:UpdateSchedule",
    "scheduler:DeleteSchedule",
)
SWEEPER_SCHEDULE_ACTIONS = ("scheduler:DeleteSchedule",)

# Large values (orchestrator/payloads.py): workers write and read objects; the API
# reads them (GETs inline a value, or presign a GET, which needs s3:GetObject).
WORKER_VALUE_ACTIONS = ("s3:PutObject", "s3:GetObject")
API_VALUE_ACTIONS = ("s3:GetObject",)

VALUES_REASON = (
    "Value objects are keyed by the SHA-256 of their content, known only at run "
    "time; access is scoped to the orchestrator's bucket and its values/sha256/ prefix."
)

SCHEDULES_REASON = (
    "Schedule names are derived at run time from workflow ids; access is scoped to "
    "the orchestrator's own schedule group (schedule/<group>/*)."
)


RECURRING_REASON = (
    "Recurring schedules are named by users at run time (POST /schedules); access is "
    "scoped to the orchestrator's recurring schedule group (schedule/<group>/*)."
)


@dataclass(frozen=True)
class Resources:
    """The ARNs the statements name."""

    table_arn: str
    index_arns: list[str]
    queue_arns: list[str]  # the work queue of each task queue, default first
    dlq_arns: list[str]
    schedules_arn: str  # schedule/<group>/*
    scheduler_role_arn: str
    recurring_schedules_arn: str  # schedule/<recurring group>/*
    recurring_role_arn: str
    values_arn: str  # <value bucket arn>/values/sha256/*


@dataclass(frozen=True)
class Grant:
    """A statement, and why it needs a wildcard resource if it has one."""

    statement: iam.PolicyStatement
    wildcard_reason: str | None = field(default=None)


def _allow(actions: tuple[str, ...], resources: list[str], **kw: object) -> iam.PolicyStatement:
    return iam.PolicyStatement(actions=list(actions), resources=resources, **kw)  # type: ignore[arg-type]


def worker_grants(res: Resources) -> list[Grant]:
    """A worker claims, heartbeats, records steps, parks and wakes runs."""
    return [
        Grant(_allow(WORKER_ITEM_ACTIONS, [res.table_arn])),
        Grant(_allow(QUERY_ACTIONS, [res.table_arn, *res.index_arns])),
        Grant(_allow(WORKER_QUEUE_ACTIONS, res.queue_arns)),
        Grant(_allow(WORKER_SCHEDULE_ACTIONS, [res.schedules_arn]), SCHEDULES_REASON),
        Grant(_allow(WORKER_VALUE_ACTIONS, [res.values_arn]), VALUES_REASON),
        Grant(
            _allow(
                ("iam:PassRole",),
                [res.scheduler_role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
            )
        ),
    ]


def api_grants(res: Resources) -> list[Grant]:
    """The API starts, signals, cancels (deleting a pending wake-up), gets and lists;
    it keeps recurring schedules (their definitions and their Scheduler schedules)."""
    return [
        Grant(_allow(API_ITEM_ACTIONS, [res.table_arn])),
        Grant(_allow(QUERY_ACTIONS, [res.table_arn, *res.index_arns])),
        Grant(_allow(API_QUEUE_ACTIONS, res.queue_arns)),
        Grant(_allow(API_SCHEDULE_ACTIONS, [res.schedules_arn]), SCHEDULES_REASON),
        Grant(_allow(API_RECURRING_ACTIONS, [res.recurring_schedules_arn]), RECURRING_REASON),
        Grant(_allow(API_VALUE_ACTIONS, [res.values_arn]), VALUES_REASON),
        Grant(
            _allow(
                ("iam:PassRole",),
                [res.recurring_role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
            )
        ),
    ]


def sweeper_grants(res: Resources) -> list[Grant]:
    """The sweeper walks new runs and finds due ones by index, re-enqueues them,
    fails unheld runs past their deadline (deleting their schedule) and drains
    the DLQ."""
    return [
        Grant(_allow(SWEEPER_ITEM_ACTIONS, [res.table_arn])),
        Grant(_allow(QUERY_ACTIONS, [res.table_arn, *res.index_arns])),
        Grant(_allow(SEND_ACTIONS, res.queue_arns)),
        Grant(_allow(SWEEPER_DLQ_ACTIONS, res.dlq_arns)),
        Grant(_allow(SWEEPER_SCHEDULE_ACTIONS, [res.schedules_arn]), SCHEDULES_REASON),
    ]
