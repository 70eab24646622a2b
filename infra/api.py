"""The HTTP API: the API Lambda behind an API Gateway HTTP API.

Every route requires authentication (IAM/SigV4 by default, or a JWT authorizer);
there is no anonymous route, so nobody can start, signal or cancel a workflow
without credentials. Only the routes of the HTTP interface exist (anything else
gets a 404 from API Gateway without invoking the function), and the stage writes
JSON access logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import nag
from infra.function import OrchestratorFunction

API_HANDLER = "orchestrator.api.lambda_handler.handler"
STAGE = "$default"
# Every route by group. A group is what a role may do: `read` (runs, steps, inboxes,
# histories, workers, schedules, queues, value previews, jobs, the dashboard and the
# OpenAPI document), `start`, `signal` (signals, and callback completions from outside systems),
# `operate` (cancel, terminate, bulk actions, redrive, fork, migrate, schedules, queue
# limits, job cancels).
ROUTE_GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "read": (
        ("GET", "/workflows"),
        ("GET", "/workflows/{id}"),
        ("GET", "/workflows/{id}/steps"),
        ("GET", "/workflows/{id}/signals"),
        ("GET", "/workflows/{id}/history"),
        ("GET", "/workers"),
        ("GET", "/schedules"),
        ("GET", "/schedules/{name}"),
        ("GET", "/queues"),
        ("GET", "/values/{sha256}/preview"),
        ("GET", "/jobs"),
        ("GET", "/jobs/{id}"),
        ("GET", "/"),
        ("GET", "/dashboard/{file}"),
        ("GET", "/openapi.json"),
    ),
    "start": (("POST", "/workflows"),),
    "signal": (
        ("POST", "/workflows/{id}/signals"),
        ("POST", "/callbacks/{id}/succeed"),
        ("POST", "/callbacks/{id}/fail"),
        ("POST", "/callbacks/{id}/heartbeat"),
    ),
    "operate": (
        ("POST", "/workflows/{id}/cancel"),
        ("POST", "/workflows/{id}/terminate"),
        ("POST", "/bulk/{id}"),
        ("POST", "/workflows/{id}/redrive"),
        ("POST", "/workflows/{id}/fork"),
        ("POST", "/workflows/{id}/migrate"),
        ("POST", "/schedules"),
        ("DELETE", "/schedules/{name}"),
        ("POST", "/schedules/{name}/pause"),
        ("POST", "/schedules/{name}/resume"),
        ("POST", "/schedules/{name}/trigger"),
        ("POST", "/schedules/{name}/backfill"),
        ("POST", "/queues/{name}"),
        ("POST", "/jobs/{id}/cancel"),
    ),
}
ROUTES: tuple[tuple[str, str], ...] = tuple(r for rs in ROUTE_GROUPS.values() for r in rs)
DEFAULT_SCOPE_PREFIX = "orchestrator/"
ADMIN_GROUP = "admin"  # the JWT scope <prefix>admin is accepted on every route
ROUTE_WILDCARD_REASON = (
    "Each route is named by method and shape; the '*' stands only for a path parameter "
    "(a workflow id, a callback id, a schedule or queue name, or a dashboard file name), "
    "which an execute-api ARN can only match by wildcard."
)
_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "caller": "$context.identity.userArn",
    "jwtSubject": "$context.authorizer.claims.sub",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
}


@dataclass(frozen=True)
class ApiAuth:
    """How API callers authenticate. There is deliberately no anonymous mode."""

    mode: Literal["iam", "jwt"] = "iam"
    jwt_issuer: str = ""
    jwt_audience: tuple[str, ...] = ()
    # JWT: each route requires the scope <prefix><group> (or <prefix>admin) in the
    # token's scope claim; None turns scopes off (any valid token may call any route).
    scope_prefix: str | None = DEFAULT_SCOPE_PREFIX

    def scopes(self, group: str) -> list[str]:
        """The JWT scopes accepted on the routes of `group` (none in IAM mode)."""
        if self.mode != "jwt" or self.scope_prefix is None:
            return []
        return [f"{self.scope_prefix}{group}", f"{self.scope_prefix}{ADMIN_GROUP}"]

    def __post_init__(self) -> None:
        if self.mode == "jwt" and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError("a JWT authorizer needs an issuer URL and at least one audience")
        if self.mode not in ("iam", "jwt"):
            raise ValueError(f"unknown API auth mode {self.mode!r} (use 'iam' or 'jwt')")

    @classmethod
    def iam(cls) -> ApiAuth:
        """SigV4-signed requests; the caller needs `execute-api:Invoke` on the route."""
        return cls("iam")

    @classmethod
    def jwt(
        cls,
        *,
        issuer: str,
        audience: Sequence[str],
        scope_prefix: str | None = DEFAULT_SCOPE_PREFIX,
    ) -> ApiAuth:
        """A bearer JWT from an OIDC issuer (Cognito, Auth0, Okta, ...); each route
        requires its group's scope (`orchestrator/read`, `/start`, `/signal`,
        `/operate`, or `orchestrator/admin`) unless `scope_prefix` is None."""
        return cls("jwt", issuer, tuple(audience), scope_prefix)


@dataclass(frozen=True)
class ApiLimits:
    """Throttling: the stage's default route limits (requests per second, and
    the burst above it), and the API function's reserved concurrency (also its
    cap: a flood of requests cannot take the account's whole Lambda
    concurrency, and cannot cost more than this many functions at once).
    None leaves a limit off."""

    rate_limit: float | None = 50.0
    burst_limit: int | None = 100
    reserved_concurrency: int | None = 20


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogs:
    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FIELDS))


class Api(Construct):
    """The API function and its HTTP API: routes, authorizer, stage, access logs,
    throttling.

    IAM mode: `policies[group]` is a managed policy granting `execute-api:Invoke`
    on that group's routes (read, start, signal, operate); `grant_read(role)` and
    its siblings attach one. `invoke_policy` covers every route (an admin).
    JWT mode: each route requires its group's scope (`ApiAuth.scopes`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        environment: Mapping[str, str],
        auth: ApiAuth,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        limits: ApiLimits | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        limits = limits or ApiLimits()
        self.auth = auth
        self.handler = OrchestratorFunction(
            self,
            "Handler",
            code=code,
            handler=API_HANDLER,
            description="Orchestrator HTTP API",
            service_name="orchestrator-api",
            environment=environment,
            memory_size=512,  # faster cold starts (pydantic import) for little more cost
            timeout=Duration.seconds(10),  # well under the HTTP API's 30 s limit
            log_retention=log_retention,
            removal_policy=removal_policy,
            reserved_concurrency=limits.reserved_concurrency,
        )
        authorizer: apigwv2.IHttpRouteAuthorizer = (
            authorizers.HttpIamAuthorizer()
            if auth.mode == "iam"
            else authorizers.HttpJwtAuthorizer(
                "JwtAuthorizer", auth.jwt_issuer, jwt_audience=list(auth.jwt_audience)
            )
        )
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            api_name=f"{Stack.of(self).stack_name}-orchestrator",
            description="Durable workflow orchestrator: start, signal, cancel, get, list",
            create_default_stage=False,  # the stage below adds access logs
            default_authorizer=authorizer,
        )
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=removal_policy
        )
        self.stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=self.api,
            stage_name=STAGE,
            auto_deploy=True,
            access_log_settings=_AccessLogs(self.access_logs),
            throttle=apigwv2.ThrottleSettings(
                rate_limit=limits.rate_limit, burst_limit=limits.burst_limit
            )
            if limits.rate_limit is not None or limits.burst_limit is not None
            else None,
        )
        integration = integrations.HttpLambdaIntegration("Handler", self.handler.function)
        for group, routes in ROUTE_GROUPS.items():
            for method, path in routes:
                self.api.add_routes(
                    path=path,
                    methods=[apigwv2.HttpMethod(method)],
                    integration=integration,
                    authorization_scopes=auth.scopes(group) or None,
                )
        self.policies: dict[str, iam.ManagedPolicy] = {}
        self.invoke_policy: iam.ManagedPolicy | None = None
        if auth.mode == "iam":
            for group, routes in ROUTE_GROUPS.items():
                self.policies[group] = self._invoke_policy(
                    f"{group.title()}Policy",
                    f"Orchestrator API, {group}: execute-api:Invoke on its {group} routes",
                    routes,
                )
            self.invoke_policy = self._invoke_policy(
                "InvokePolicy",
                "Orchestrator API, every route (an administrator): execute-api:Invoke",
                ROUTES,
            )

    def _invoke_policy(
        self, construct_id: str, description: str, routes: Sequence[tuple[str, str]]
    ) -> iam.ManagedPolicy:
        invoke = iam.PolicyStatement(
            actions=["execute-api:Invoke"],
            resources=[self.route_arn(method, path) for method, path in routes],
        )
        policy = iam.ManagedPolicy(self, construct_id, description=description, statements=[invoke])
        nag.acknowledge_wildcards(policy, invoke, ROUTE_WILDCARD_REASON)
        return policy

    # --- authorization by role (IAM mode) ----------------------------------------------------
    def grant(self, group: str, grantee: iam.IRole | iam.IUser | iam.IGroup) -> None:
        """Attach the managed policy of a route group to a role, user or group."""
        if group not in self.policies:
            raise ValueError(
                f"no IAM policy for {group!r}: the API uses {self.auth.mode} auth"
                if self.auth.mode != "iam"
                else f"unknown route group {group!r}; one of {', '.join(ROUTE_GROUPS)}"
            )
        grantee.add_managed_policy(self.policies[group])

    def grant_read(self, grantee: iam.IRole | iam.IUser | iam.IGroup) -> None:
        """Read runs, steps and workers; open the dashboard (an operator read-only role)."""
        self.grant("read", grantee)

    def grant_start(self, grantee: iam.IRole | iam.IUser | iam.IGroup) -> None:
        self.grant("start", grantee)

    def grant_signal(self, grantee: iam.IRole | iam.IUser | iam.IGroup) -> None:
        self.grant("signal", grantee)

    def grant_operate(self, grantee: iam.IRole | iam.IUser | iam.IGroup) -> None:
        """Cancel, terminate, redrive, fork and migrate runs (one at a time or in
        bulk); manage recurring schedules and queue limits."""
        self.grant("operate", grantee)

    @property
    def url(self) -> str:
        return self.stage.url

    def route_arn(self, method: str, path: str) -> str:
        """`.../<stage>/<METHOD>/workflows/*`: a path parameter can only be a wildcard."""
        return self.api.arn_for_execute_api(method, re.sub(r"\{[^}]+\}", "*", path), STAGE)
