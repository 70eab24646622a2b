"""The CDK app: `python -m infra` or `npx cdk synth` (cdk.json runs the former).

Needs neither Docker nor AWS credentials to synthesize. Options come from CDK
context (`-c key=value` or cdk.json):

| context key | meaning | default |
| --- | --- | --- |
| `orchestrator:stackName` | stack name | `Orchestrator` |
| `orchestrator:apiAuth` | `iam` or `jwt` | `iam` |
| `orchestrator:jwtIssuer`, `orchestrator:jwtAudience` | JWT issuer URL, audiences (comma separated) | |
| `orchestrator:leaseSeconds` | workflow lease | `resources.DEFAULT_LEASE_SECONDS` |
| `orchestrator:ephemeral` | `true`: destroy data with the stack, no deletion protection | `false` |
| `orchestrator:workerPrincipals` | ARNs that may assume the worker role (comma separated) | none |
| `orchestrator:workerTrustAnchorArn` | an IAM Roles Anywhere trust anchor for the worker role | none (no role: attach WorkerPolicyArn) |
| `orchestrator:namePrefix` | fixed physical names `<prefix>orchestrator-state`... | generated |
| `orchestrator:taskQueues` | task queues besides `default` (comma separated): one SQS queue and DLQ each | none |
| `orchestrator:nag` | run cdk-nag `AwsSolutionsChecks` during synth | `true` |
| `orchestrator:bundle` | `false`: skip Lambda bundling (template checks without PyPI; never deploy that) | `true` |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_cdk import Annotations, App, Environment, Validations

from infra.api import ApiAuth
from infra.orchestrator_construct import Retention
from infra.stack import OrchestratorStack

DEFAULT_STACK_NAME = "Orchestrator"


def _ctx(app: App, key: str) -> Any:
    return app.node.try_get_context(f"orchestrator:{key}")


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def props_from_context(app: App) -> dict[str, Any]:
    """The `Orchestrator` keyword arguments the context asks for."""
    props: dict[str, Any] = {}
    if str(_ctx(app, "apiAuth") or "iam").lower() == "jwt":
        props["api_auth"] = ApiAuth.jwt(
            issuer=str(_ctx(app, "jwtIssuer") or ""), audience=_list(_ctx(app, "jwtAudience"))
        )
    if (lease := _ctx(app, "leaseSeconds")) is not None:
        props["lease_seconds"] = int(lease)
    if _flag(_ctx(app, "ephemeral"), False):
        props["retention"] = Retention.ephemeral()
    if principals := _list(_ctx(app, "workerPrincipals")):
        props["worker_principals"] = principals
    if anchor := _ctx(app, "workerTrustAnchorArn"):
        props["worker_trust_anchor_arn"] = str(anchor)
    if (prefix := _ctx(app, "namePrefix")) is not None:
        props["name_prefix"] = str(prefix)
    if task_queues := _list(_ctx(app, "taskQueues")):
        props["task_queues"] = task_queues
    if pinned_builds := _list(_ctx(app, "pinnedBuilds")):
        props["pinned_builds"] = pinned_builds
    return props


def build_app(
    context: Mapping[str, Any] | None = None, *, outdir: str | None = None
) -> tuple[App, OrchestratorStack]:
    """The app and its one stack; `context` adds to what the CDK CLI passes in."""
    app = App(context=dict(context or {}), outdir=outdir)
    bundle = _flag(_ctx(app, "bundle"), True)
    if not bundle:
        # The CLI refuses `-c aws:...` keys; this is the same switch the tests use.
        app.node.set_context("aws:cdk:bundling-stacks", [])
    env = Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=os.environ.get("CDK_DEFAULT_REGION"),
    )
    stack = OrchestratorStack(
        app,
        str(_ctx(app, "stackName") or DEFAULT_STACK_NAME),
        env=env,
        **props_from_context(app),
    )
    if not bundle:
        Annotations.of(stack).add_warning_v2(
            "orchestrator:unbundled",
            "orchestrator:bundle=false: the Lambda asset lacks its dependencies; "
            "synthesize to inspect the template, never deploy it",
        )
    if _flag(_ctx(app, "nag"), True):
        from cdk_nag import AwsSolutionsChecks

        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> None:
    # Under the CLI, CDK_OUTDIR says where; run directly, write to ./cdk.out (not a temp dir).
    app, _ = build_app(outdir=os.environ.get("CDK_OUTDIR") or "cdk.out")
    app.synth()
