"""Access for workers running outside AWS (in the user's own datacenter).

`policy` is a customer managed policy with exactly the worker's statements; attach
it to any identity that runs workers. `role` carries it and can be assumed by the
named principals (default: the deploying account, i.e. any of its identities that
IAM allows to call sts:AssumeRole on it). Machines without an AWS identity can get
one through IAM Roles Anywhere (see docs/deploy.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from constructs import Construct


class WorkerAccess(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        principals: Sequence[str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description="Orchestrator worker: claim, run and record workflows",
        )
        trusted: list[iam.IPrincipal] = (
            [iam.ArnPrincipal(arn) for arn in principals]
            if principals
            else [iam.AccountRootPrincipal()]
        )
        self.role = iam.Role(
            self,
            "Role",
            description="Assumed by orchestrator workers in your datacenter",
            assumed_by=iam.CompositePrincipal(*trusted),
            managed_policies=[self.policy],
            # Workers are long-lived; SDKs refresh assumed-role credentials on their own.
            max_session_duration=Duration.hours(12),
        )

    def add_statements(self, *statements: iam.PolicyStatement) -> None:
        self.policy.add_statements(*statements)
