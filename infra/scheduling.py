"""The EventBridge Scheduler schedule groups and the roles their schedules assume.

`Scheduling`: workers create one-time `at(...)` schedules at run time
(deterministic names, target = the work queue, role = `role`) to wake long sleeps
and signal timeouts. The role can only send to the work queue, and only schedules
of this account's group can assume it (confused-deputy conditions).

`RecurringScheduling`: the API creates users' recurring schedules (cron/rate) in a
group of their own; their target is the API function, invoked with the tick's
scheduled time. Their role can only invoke that function, and only schedules of
that group can assume it. Two groups keep the two kinds apart: workers cannot
touch recurring schedules, and the API cannot create timers.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct


class Scheduling(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queues: list[sqs.IQueue],
        removal_policy: RemovalPolicy,
        group_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.group = scheduler.ScheduleGroup(
            self, "Group", schedule_group_name=group_name, removal_policy=removal_policy
        )
        self.role = iam.Role(
            self,
            "Role",
            description="Assumed by EventBridge Scheduler to send wake-ups to the work queue",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": self.group.schedule_group_arn},
                },
            ),
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sqs:SendMessage"], resources=[q.queue_arn for q in queues]
            )
        )

    @property
    def group_name(self) -> str:
        return self.group.schedule_group_name

    def schedules_arn(self) -> str:
        """Every schedule in the group (`schedule/<group>/*`): names are made at run time."""
        return Stack.of(self).format_arn(
            service="scheduler", resource="schedule", resource_name=f"{self.group_name}/*"
        )


class RecurringScheduling(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy,
        group_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.group = scheduler.ScheduleGroup(
            self, "Group", schedule_group_name=group_name, removal_policy=removal_policy
        )
        self.role = iam.Role(
            self,
            "Role",
            description="Assumed by recurring EventBridge Scheduler schedules to start runs",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": self.group.schedule_group_arn},
                },
            ),
        )

    def allow_invoke(self, function_arn: str) -> None:
        """Ticks invoke this function (the API's) and nothing else."""
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function_arn])
        )

    @property
    def group_name(self) -> str:
        return self.group.schedule_group_name

    def schedules_arn(self) -> str:
        """Every schedule of the group: users name their schedules at run time."""
        return Stack.of(self).format_arn(
            service="scheduler", resource="schedule", resource_name=f"{self.group_name}/*"
        )
