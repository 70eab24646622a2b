"""What a CDK app declares into the state table: task queues' flow-control
limits and recurring schedules.

The engine keeps both as items of the state table (`orchestrator/store/flow.py`,
`orchestrator/store/schedules.py`), written at run time by the API. Declared in
CDK, the same items are written at deploy time by CloudFormation custom
resources (`AwsCustomResource`: one DynamoDB request each, built by the store's
own request functions, so the item has exactly the shape the API writes):

- a task queue's limits: `flow.set_limits` on `Q#<queue>` at create and at
  every update; at delete (the limits removed from the prop, or the stack
  deleted) the limits are removed and the item stays (holders and window are
  the workers'), as `orchestrator queue set <queue>` with no option does;
- a schedule: `schedules.put_definition` on `S#<name>` (the definition is
  rewritten, the decision state and a pause are kept), and an
  `AWS::Scheduler::Schedule` in the recurring group with the request the API
  makes (`orchestrator.recurring.schedule_request`); at delete, the item goes.

Every request carries `updated_at` = the synthesis time, so each synthesized
template differs and CloudFormation runs the update at every deploy: the
deployed values win over changes made through the API since the last deploy.

Validation is the API's (its pydantic request models, the expression parser),
run at synth time: bad props fail `cdk synth` with a message naming the prop.

The custom resources share one Lambda function (the CDK singleton) whose role
may only update items of the `QUEUES` and `SCHEDULES` partitions, only the
attributes these requests write, and delete items of `SCHEDULES`; IAM cannot
name a sort key, so that is as narrow as DynamoDB allows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import custom_resources as cr
from constructs import Construct
from pydantic import ValidationError

from orchestrator import resources as r
from orchestrator.api.queue_routes import LimitsRequest, stored_limits
from orchestrator.api.schedules import DEFAULT_CATCHUP_S, ScheduleRequest, schedule_from_request
from orchestrator.errors import BadInputError
from orchestrator.model import Schedule
from orchestrator.recurring import schedule_request
from orchestrator.schedule_expr import ExpressionError, parse
from orchestrator.settings import Settings, parse_task_queues
from orchestrator.store import flow
from orchestrator.store import schedules as sched

TaskQueuesProp = Sequence[str] | Mapping[str, Mapping[str, Any] | None]
Limits = dict[str, int | None]  # `flow.set_limits` keywords


def synth_time_ms() -> int:
    """The `updated_at` of every declared item: when the template was made."""
    return int(time.time() * 1000)


def task_queues_prop(value: TaskQueuesProp) -> tuple[tuple[str, ...], dict[str, Limits]]:
    """(every task queue, `default` first; the limits of those that declare any).

    `["gpu", "bulk"]`, or `{"gpu": {"max_concurrency": 4, "rate_limit": 100,
    "rate_period_seconds": 60}, "bulk": None}`; `default` may carry limits too."""
    if isinstance(value, str):
        raise ValueError(f"task_queues must be a list of names or a dict, not the string {value!r}")
    items: dict[str, Mapping[str, Any] | None] = (
        dict(value) if isinstance(value, Mapping) else dict.fromkeys(value)
    )
    names = parse_task_queues(",".join(n for n in items if n != r.DEFAULT_TASK_QUEUE))
    limits: dict[str, Limits] = {}
    for name, given in items.items():
        if given is None or given == {}:
            continue
        if not isinstance(given, Mapping):
            raise ValueError(
                f"task_queues[{name!r}]: give a dict of max_concurrency, rate_limit, "
                f"rate_period_seconds, not {given!r}"
            )
        try:
            limits[name] = stored_limits(LimitsRequest.model_validate(dict(given)))
        except ValidationError as e:
            raise ValueError(f"task_queues[{name!r}]: {_message(e)}") from None
        except BadInputError as e:
            raise ValueError(f"task_queues[{name!r}]: {e}") from None
    return names, limits


@dataclass(frozen=True)
class ScheduleSpec:
    """A recurring schedule declared in CDK; the fields of `POST /schedules`.

    `expression` is a `cron(...)` (a `rate(...)` keeps the phase of the moment
    the API creates it, which a template cannot know: create those through the
    API). `catchup_window`: a Duration or seconds (one hour by default)."""

    name: str
    workflow: str
    expression: str
    timezone: str = "UTC"
    input: Any = None
    overlap: str = "skip"
    catchup_window: Duration | int | None = None
    task_queue: str | None = None

    def to_schedule(self, task_queues: Sequence[str], now: int) -> Schedule:
        """The definition as the API would store it; ValueError naming the spec."""
        where = f"schedules[{self.name!r}]"
        window = self.catchup_window
        if isinstance(window, Duration):
            window = int(window.to_seconds())
        try:
            req = ScheduleRequest.model_validate(
                {
                    "name": self.name,
                    "workflow": self.workflow,
                    "input": self.input,
                    "expression": self.expression,
                    "timezone": self.timezone,
                    "overlap": self.overlap,
                    "catchup_window_seconds": DEFAULT_CATCHUP_S if window is None else window,
                    "task_queue": self.task_queue,
                }
            )
            parse(req.expression, req.timezone)
            definition = schedule_from_request(req, now)
        except ValidationError as e:
            raise ValueError(f"{where}: {_message(e)}") from None
        except (ExpressionError, BadInputError) as e:
            raise ValueError(f"{where}: {e}") from None
        if req.expression.startswith("rate("):
            raise ValueError(
                f"{where}: a rate() schedule takes its phase from the moment the API creates "
                "it, which a template cannot know; declare a cron() (rate(5 minutes) is "
                "cron(0/5 * * * ? *)) or create it through the API"
            )
        if req.task_queue is not None and req.task_queue not in task_queues:
            raise ValueError(
                f"{where}: task queue {req.task_queue!r} is not declared; "
                f"task_queues has {', '.join(task_queues)}"
            )
        return definition


def declared_schedules(
    specs: Sequence[ScheduleSpec], task_queues: Sequence[str], now: int
) -> list[Schedule]:
    out = [spec.to_schedule(task_queues, now) for spec in specs]
    seen: set[str] = set()
    for s in out:
        if s.name in seen:
            raise ValueError(f"schedules: {s.name!r} is declared twice")
        seen.add(s.name)
    return out


def _message(e: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in e.errors()
    )


class DeclaredState(Construct):
    """The custom resources that write declared limits and schedules, and the
    Scheduler schedules of the declared schedules."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        table: dynamodb.ITable,
        limits: Mapping[str, Limits],
        schedules: Sequence[Schedule],
        recurring_group: str,
        recurring_role_arn: str,
        target_arn: str,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        now: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=removal_policy
        )
        self.role = iam.Role(
            self,
            "Role",
            description="Writes the flow-control limits and schedules declared in CDK",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        )
        self.log_group.grant_write(self.role)
        table_name = table.table_name
        self.limits: dict[str, cr.AwsCustomResource] = {}
        for queue, values in limits.items():
            write = flow.set_limits(table_name, queue, **values, now=now)
            write.pop("ReturnValues")
            clear = flow.set_limits(
                table_name,
                queue,
                max_concurrency=None,
                rate_limit=None,
                rate_period_ms=None,
                now=now,
            )
            clear.pop("ReturnValues")
            self.limits[queue] = self._resource(
                f"Limits-{queue}",
                f"queue-limits/{queue}",
                write=write,
                delete=clear,
                statements=[_update_statement(table, flow.FLOW_PK, write, clear)],
            )
        settings = Settings(
            table=table_name,
            recurring_group=recurring_group,
            recurring_target_arn=target_arn,
            recurring_role_arn=recurring_role_arn,
        )
        self.schedules: dict[str, scheduler.CfnSchedule] = {}
        self.definitions: dict[str, cr.AwsCustomResource] = {}
        for s in schedules:
            write = sched.put_definition(table_name, s)
            definition = self._resource(
                f"Schedule-{s.name}",
                f"schedule/{s.name}",
                write=write,
                delete=sched.delete_definition(table_name, s.name),
                statements=[
                    _update_statement(table, r.SCHEDULES_PK, write),
                    iam.PolicyStatement(
                        actions=["dynamodb:DeleteItem"],
                        resources=[table.table_arn],
                        conditions=_leading_keys(r.SCHEDULES_PK),
                    ),
                ],
            )
            self.definitions[s.name] = definition
            self.schedules[s.name] = _cfn_schedule(self, s, schedule_request(settings, s, now))
            # The definition first: a tick that finds none starts nothing.
            self.schedules[s.name].node.add_dependency(definition)

    def _resource(
        self,
        construct_id: str,
        physical_id: str,
        *,
        write: dict[str, Any],
        delete: dict[str, Any],
        statements: list[iam.PolicyStatement],
    ) -> cr.AwsCustomResource:
        def call(action: str, parameters: dict[str, Any]) -> cr.AwsSdkCall:
            return cr.AwsSdkCall(
                service="DynamoDB",
                action=action,
                parameters=parameters,
                # A constant id: an update never replaces (so never deletes) the item.
                physical_resource_id=cr.PhysicalResourceId.of(physical_id),
            )

        delete_action = "DeleteItem" if "UpdateExpression" not in delete else "UpdateItem"
        return cr.AwsCustomResource(
            self,
            construct_id,
            on_create=call("UpdateItem", write),
            on_update=call("UpdateItem", write),
            on_delete=call(delete_action, delete),
            policy=cr.AwsCustomResourcePolicy.from_statements(statements),
            role=self.role,
            log_group=self.log_group,
            install_latest_aws_sdk=False,
        )


def _leading_keys(pk: str, attributes: list[str] | None = None) -> dict[str, Any]:
    values: dict[str, list[str]] = {"dynamodb:LeadingKeys": [pk]}
    if attributes is not None:
        values["dynamodb:Attributes"] = attributes
    return {"ForAllValues:StringEquals": values}


def _update_statement(
    table: dynamodb.ITable, pk: str, *requests: dict[str, Any]
) -> iam.PolicyStatement:
    """UpdateItem on one partition, and only on the attributes `requests` name
    (with the key attributes, which IAM requires in the list)."""
    attributes = {r.PK, r.SK}
    for req in requests:
        attributes.update(req["ExpressionAttributeNames"].values())
    return iam.PolicyStatement(
        actions=["dynamodb:UpdateItem"],
        resources=[table.table_arn],
        conditions=_leading_keys(pk, sorted(attributes)),
    )


def _cfn_schedule(scope: Construct, s: Schedule, req: dict[str, Any]) -> scheduler.CfnSchedule:
    target = req["Target"]
    retry = target["RetryPolicy"]
    return scheduler.CfnSchedule(
        scope,
        f"Recurring-{s.name}",
        name=req["Name"],
        group_name=req["GroupName"],
        schedule_expression=req["ScheduleExpression"],
        schedule_expression_timezone=req["ScheduleExpressionTimezone"],
        flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(
            mode=req["FlexibleTimeWindow"]["Mode"]
        ),
        state=req["State"],
        description=req["Description"],
        target=scheduler.CfnSchedule.TargetProperty(
            arn=target["Arn"],
            role_arn=target["RoleArn"],
            input=target["Input"],
            retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                maximum_event_age_in_seconds=retry["MaximumEventAgeInSeconds"],
                maximum_retry_attempts=retry["MaximumRetryAttempts"],
            ),
        ),
    )
