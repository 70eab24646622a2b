"""A Lambda function with its own role and log group, and nothing else.

The role starts empty (no AWS managed policy): it may write to its own log group,
and the wiring in `Orchestrator` adds exactly the statements the handler uses.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.bundling import LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME


class OrchestratorFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        handler: str,
        description: str,
        service_name: str,
        environment: Mapping[str, str],
        memory_size: int,
        timeout: Duration,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=removal_policy
        )
        self.role = iam.Role(
            self,
            "Role",
            description=f"{description}: logs and the statements granted by Orchestrator",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        )
        # CreateLogStream/PutLogEvents on this log group only (its Arn ends in ":*").
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCHITECTURE,
            code=code,
            handler=handler,
            role=self.role,
            log_group=self.log_group,
            memory_size=memory_size,
            timeout=timeout,
            reserved_concurrent_executions=reserved_concurrency,
            environment={**environment, "POWERTOOLS_SERVICE_NAME": service_name},
        )

    def add_statements(self, *statements: iam.PolicyStatement) -> None:
        for statement in statements:
            self.role.add_to_policy(statement)
