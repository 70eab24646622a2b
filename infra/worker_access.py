"""Access for workers running outside AWS (in the user's own datacenter).

`policy` is a customer managed policy with exactly the worker's statements; attach
it to any identity that runs workers. `role` carries it and trusts only what the
deployer names explicitly, never the account root (which would let every identity
of the account that may call sts:AssumeRole become a worker):

- `principals`: ARNs of roles (or users, or other accounts' roots) that may
  assume it, e.g. the role your hosts already have;
- `trust_anchor_arn`: an IAM Roles Anywhere trust anchor; the Roles Anywhere
  service may then assume it for hosts holding a certificate from that CA
  (see docs/deploy.md and docs/security.md).

With neither, no role is made: attach `policy` to an identity you manage.
Sessions last one hour by default (`session_duration`); SDKs refresh assumed-role
credentials on their own, so a long-lived worker does not notice.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from constructs import Construct

ROLES_ANYWHERE = "rolesanywhere.amazonaws.com"


class WorkerAccess(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        principals: Sequence[str] | None = None,
        trust_anchor_arn: str | None = None,
        session_duration: Duration | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description="Orchestrator worker: claim, run and record workflows",
        )
        trusted: list[iam.IPrincipal] = [iam.ArnPrincipal(arn) for arn in principals or ()]
        if trust_anchor_arn:
            trusted.append(
                iam.ServicePrincipal(ROLES_ANYWHERE).with_conditions(
                    {"ArnEquals": {"aws:SourceArn": trust_anchor_arn}}
                )
            )
        self.role: iam.Role | None = None
        if trusted:
            self.role = iam.Role(
                self,
                "Role",
                description="Assumed by orchestrator workers in your datacenter",
                assumed_by=iam.CompositePrincipal(*trusted),
                managed_policies=[self.policy],
                max_session_duration=session_duration or Duration.hours(1),
            )
            if trust_anchor_arn:
                # Roles Anywhere also tags the session and sets its source identity.
                self.role.assume_role_policy.add_statements(  # type: ignore[union-attr]
                    iam.PolicyStatement(
                        principals=[iam.ServicePrincipal(ROLES_ANYWHERE)],
                        actions=["sts:TagSession", "sts:SetSourceIdentity"],
                        conditions={"ArnEquals": {"aws:SourceArn": trust_anchor_arn}},
                    )
                )

    def add_statements(self, *statements: iam.PolicyStatement) -> None:
        self.policy.add_statements(*statements)
