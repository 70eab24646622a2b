"""`OrchestratorStack`: the `Orchestrator` construct in a stack of its own, with the
outputs a user copies into a worker's environment (see docs/deploy.md)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from infra.orchestrator_construct import Orchestrator

DESCRIPTION = "Durable workflow orchestrator: DynamoDB, SQS, EventBridge Scheduler, Lambda"


class OrchestratorStack(Stack):
    """Keyword arguments other than the stack's own go to `Orchestrator`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: Environment | None = None,
        description: str = DESCRIPTION,
        termination_protection: bool = False,
        **orchestrator_props: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=env,
            description=description,
            termination_protection=termination_protection,
        )
        self.orchestrator = o = Orchestrator(self, "Orchestrator", **orchestrator_props)
        outputs = {
            "ApiUrl": (o.api_url, "HTTP API base URL (ORCHESTRATOR_API_URL)"),
            "TableName": (o.state.table.table_name, "State table (ORCHESTRATOR_TABLE)"),
            "QueueUrl": (o.queues.queue.queue_url, "Work queue (ORCHESTRATOR_QUEUE_URL)"),
            "QueueArn": (o.queues.queue.queue_arn, "Work queue ARN (ORCHESTRATOR_QUEUE_ARN)"),
            "DlqUrl": (o.queues.dlq.queue_url, "Dead-letter queue (ORCHESTRATOR_DLQ_URL)"),
            "ScheduleGroup": (
                o.scheduling.group_name,
                "Schedule group (ORCHESTRATOR_SCHEDULE_GROUP)",
            ),
            "SchedulerRoleArn": (
                o.scheduling.role.role_arn,
                "Role schedules assume (ORCHESTRATOR_SCHEDULER_ROLE_ARN)",
            ),
            "BucketName": (o.values.bucket.bucket_name, "Value bucket (ORCHESTRATOR_BUCKET)"),
            "WorkerPolicyArn": (
                o.worker_policy.managed_policy_arn,
                "Managed policy with the worker permissions",
            ),
        }
        if o.worker_role is not None:
            outputs["WorkerRoleArn"] = (o.worker_role.role_arn, "Role for workers to assume")
        for group, policy in o.api.policies.items():
            outputs[f"Api{group.title()}PolicyArn"] = (
                policy.managed_policy_arn,
                f"Managed policy: call the API's {group} routes (IAM auth)",
            )
        outputs["LeaseSeconds"] = (
            str(o.lease_seconds),
            "Workflow lease (ORCHESTRATOR_LEASE_SECONDS)",
        )
        if o.api.invoke_policy is not None:
            outputs["ApiInvokePolicyArn"] = (
                o.api.invoke_policy.managed_policy_arn,
                "Managed policy that lets a caller invoke the API (IAM auth)",
            )
        for output_id, (value, text) in outputs.items():
            CfnOutput(self, output_id, value=value, description=text)
