"""The sweeper: a Lambda function an EventBridge rule invokes once a minute.

An EventBridge rule (not a Scheduler schedule) because a rate rule needs no role
and no group of its own: it invokes through the function's resource policy. Two
runs overlapping is harmless (the sweeper only re-enqueues; the claim decides),
so the timeout may approach the period.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.function import OrchestratorFunction

SWEEPER_HANDLER = "orchestrator.sweeper.handler"
SWEEP_PERIOD = Duration.minutes(1)


class Sweeper(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        environment: Mapping[str, str],
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        reserved_concurrency: int | None = 1,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = OrchestratorFunction(
            self,
            "Handler",
            code=code,
            handler=SWEEPER_HANDLER,
            description="Orchestrator sweeper: re-dispatches runs a lost message left behind",
            service_name="orchestrator-sweeper",
            environment=environment,
            memory_size=256,
            timeout=Duration.seconds(55),
            log_retention=log_retention,
            removal_policy=removal_policy,
            # One sweep at a time is enough (two at once are safe, but never needed).
            reserved_concurrency=reserved_concurrency,
        )
        self.rule = events.Rule(
            self,
            "EveryMinute",
            description="Runs the orchestrator sweeper",
            schedule=events.Schedule.rate(SWEEP_PERIOD),
            targets=[targets.LambdaFunction(self.handler.function, retry_attempts=0)],
        )
