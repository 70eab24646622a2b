"""Findings 6 and 7 of issue #16, on the synthesized templates: authorization by
role (a managed policy per route group for IAM, a scope per route for JWT), a
worker role that trusts only named principals with one-hour sessions, and
throttling (stage route limits, reserved concurrency)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match, Template
from cfn_helpers import API_HANDLER, SWEEPER_HANDLER, cdk_json_context, flat, only
from test_nag_and_lint import violations

from infra import ApiAuth, ApiLimits, Orchestrator
from infra.api import ROUTE_GROUPS

SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}
ANCHOR = "arn:aws:rolesanywhere:eu-west-1:111122223333:trust-anchor/abcd-1234"


def _routes_of(policy: dict[str, Any]) -> set[str]:
    (stmt,) = policy["Properties"]["PolicyDocument"]["Statement"]
    resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
    return {flat(res).rsplit("/$default/", 1)[1] for res in resources}


@pytest.mark.parametrize("group", ROUTE_GROUPS)
def test_each_route_group_has_a_policy_with_exactly_its_routes(
    template: Template, group: str
) -> None:
    _, policy = only(
        template,
        "AWS::IAM::ManagedPolicy",
        {"Description": Match.string_like_regexp(f"Orchestrator API, {group}:")},
    )
    expected = {f"{m}{re.sub(r'[{][^}]+[}]', '*', p)}" for m, p in ROUTE_GROUPS[group]}
    assert _routes_of(policy) == expected
    if group == "read":
        assert all(route.startswith("GET") for route in expected)


def test_jwt_routes_require_their_groups_scope(custom_template: Template) -> None:
    routes = custom_template.find_resources("AWS::ApiGatewayV2::Route")
    assert len(routes) == sum(len(r) for r in ROUTE_GROUPS.values())
    for route in routes.values():
        props = route["Properties"]
        method, path = props["RouteKey"].split(" ", 1)
        (group,) = [g for g, rs in ROUTE_GROUPS.items() if (method, path) in rs]
        assert sorted(props["AuthorizationScopes"]) == sorted(
            [f"orchestrator/{group}", "orchestrator/admin"]
        )


def test_the_stage_throttles_and_the_functions_have_reserved_concurrency(
    template: Template,
) -> None:
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "DefaultRouteSettings": Match.object_like(
                {"ThrottlingRateLimit": 50, "ThrottlingBurstLimit": 100}
            )
        },
    )
    _, api = only(template, "AWS::Lambda::Function", {"Handler": API_HANDLER})
    _, sweeper = only(template, "AWS::Lambda::Function", {"Handler": SWEEPER_HANDLER})
    assert api["Properties"]["ReservedConcurrentExecutions"] == 20
    assert sweeper["Properties"]["ReservedConcurrentExecutions"] == 1


@pytest.fixture(scope="module")
def granted() -> tuple[Stack, Template]:
    """A user's stack: operator roles granted by group, workers via Roles Anywhere."""
    app = App(context={**cdk_json_context(), **SKIP_BUNDLING})
    stack = Stack(app, "Granted")
    orch = Orchestrator(
        stack,
        "Workflows",
        worker_trust_anchor_arn=ANCHOR,
        api_limits=ApiLimits(rate_limit=10, burst_limit=20, reserved_concurrency=5),
        sweeper_reserved_concurrency=None,
    )
    lp = iam.ServicePrincipal("lambda.amazonaws.com")
    orch.grant_read(iam.Role(stack, "Operators", assumed_by=lp))
    app_role = iam.Role(stack, "OrdersApp", assumed_by=lp)
    orch.grant_start(app_role)
    orch.grant_signal(app_role)
    orch.grant_operate(iam.Role(stack, "OnCall", assumed_by=lp))
    return stack, Template.from_stack(stack)


def _policies_of(t: Template, role_name: str) -> set[str]:
    (role,) = [
        r
        for logical_id, r in t.find_resources("AWS::IAM::Role").items()
        if logical_id.startswith(role_name)
    ]
    managed = t.find_resources("AWS::IAM::ManagedPolicy")
    return {
        managed[arn["Ref"]]["Properties"]["Description"].split(",")[1].split(":")[0].strip()
        for arn in role["Properties"]["ManagedPolicyArns"]
    }


def test_grants_attach_the_route_group_policies(granted: tuple[Stack, Template]) -> None:
    _, t = granted
    assert _policies_of(t, "Operators") == {"read"}
    assert _policies_of(t, "OrdersApp") == {"start", "signal"}
    assert _policies_of(t, "OnCall") == {"operate"}


def test_the_worker_role_trusts_roles_anywhere_for_one_anchor_for_an_hour(
    granted: tuple[Stack, Template],
) -> None:
    _, t = granted
    _, role = only(
        t,
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {"Principal": {"Service": "rolesanywhere.amazonaws.com"}}
                            )
                        ]
                    )
                }
            )
        },
    )
    assert role["Properties"]["MaxSessionDuration"] == 3600
    for stmt in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
        assert stmt["Condition"] == {"ArnEquals": {"aws:SourceArn": ANCHOR}}


def test_limits_are_props(granted: tuple[Stack, Template]) -> None:
    _, t = granted
    t.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {"DefaultRouteSettings": Match.object_like({"ThrottlingRateLimit": 10})},
    )
    _, api = only(t, "AWS::Lambda::Function", {"Handler": API_HANDLER})
    _, sweeper = only(t, "AWS::Lambda::Function", {"Handler": SWEEPER_HANDLER})
    assert api["Properties"]["ReservedConcurrentExecutions"] == 5
    assert "ReservedConcurrentExecutions" not in sweeper["Properties"]


def test_the_granted_stack_is_nag_clean(granted: tuple[Stack, Template]) -> None:
    stack, _ = granted
    assert violations(stack) == []


def test_jwt_mode_has_no_iam_grants(custom_stack: Stack) -> None:
    orch = custom_stack.node.find_child("Workflows")
    assert isinstance(orch, Orchestrator)
    with pytest.raises(ValueError, match="jwt"):
        orch.grant_read(iam.Role(Stack(App(), "Other"), "R", assumed_by=iam.AccountRootPrincipal()))
    assert ApiAuth.jwt(issuer="https://i/", audience=["a"], scope_prefix=None).scopes("read") == []
