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
ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/workflows"),
    ("GET", "/workflows"),
    ("GET", "/workflows/{id}"),
    ("GET", "/workflows/{id}/steps"),
    ("POST", "/workflows/{id}/signals"),
    ("POST", "/workflows/{id}/cancel"),
    ("GET", "/workers"),
    ("POST", "/schedules"),
    ("GET", "/schedules"),
    ("GET", "/schedules/{name}"),
    ("DELETE", "/schedules/{name}"),
    ("POST", "/schedules/{name}/pause"),
    ("POST", "/schedules/{name}/resume"),
    ("POST", "/schedules/{name}/trigger"),
    ("POST", "/schedules/{name}/backfill"),
    ("GET", "/queues"),
    ("POST", "/queues/{name}"),
    ("GET", "/"),
    ("GET", "/dashboard/{file}"),
)
ROUTE_WILDCARD_REASON = (
    "Each route is named by method and shape; the '*' stands only for a path parameter "
    "(a workflow id, a schedule name, or a dashboard file name), which an execute-api ARN "
    "can only match by "
    "wildcard."
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
    def jwt(cls, *, issuer: str, audience: Sequence[str]) -> ApiAuth:
        """A bearer JWT from an OIDC issuer (Cognito, Auth0, Okta, ...)."""
        return cls("jwt", issuer, tuple(audience))


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
    """The API function and its HTTP API: routes, authorizer, stage, access logs.

    `invoke_policy` (IAM mode only) grants `execute-api:Invoke` on exactly these
    routes; attach it to the roles of the applications that call the API.
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
    ) -> None:
        super().__init__(scope, construct_id)
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
        )
        integration = integrations.HttpLambdaIntegration("Handler", self.handler.function)
        for method, path in ROUTES:
            self.api.add_routes(
                path=path, methods=[apigwv2.HttpMethod(method)], integration=integration
            )
        self.invoke_policy: iam.ManagedPolicy | None = None
        if auth.mode == "iam":
            invoke = iam.PolicyStatement(
                actions=["execute-api:Invoke"],
                resources=[self.route_arn(method, path) for method, path in ROUTES],
            )
            self.invoke_policy = iam.ManagedPolicy(
                self,
                "InvokePolicy",
                description="Call the orchestrator HTTP API (SigV4): execute-api:Invoke on its routes",
                statements=[invoke],
            )
            nag.acknowledge_wildcards(self.invoke_policy, invoke, ROUTE_WILDCARD_REASON)

    @property
    def url(self) -> str:
        return self.stage.url

    def route_arn(self, method: str, path: str) -> str:
        """`.../<stage>/<METHOD>/workflows/*`: a path parameter can only be a wildcard."""
        return self.api.arn_for_execute_api(method, re.sub(r"\{[^}]+\}", "*", path), STAGE)
