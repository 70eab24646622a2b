"""The synthesized template: resources built from `orchestrator.resources`,
encryption, the API's auth, the alarms, the outputs, and the props of the construct
embedded in a user's stack. Resources are found by type and properties, never by
(hashed) logical id."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Match, Template
from cfn_helpers import (
    API_HANDLER,
    JWT_AUDIENCE,
    JWT_ISSUER,
    PARTITION_ARN,
    SWEEPER_HANDLER,
    WORKER_PRINCIPALS,
    dlq,
    grants_of_role,
    named,
    only,
    role_trusting,
    scheduler_role,
    work_queue,
)

from infra import ApiAuth, Orchestrator, Retention
from infra.api import ROUTES
from infra.app import props_from_context
from infra.bundling import EXCLUDE, LAMBDA_LOCK, lambda_requirements, locked_pins, pip_command
from infra.nag import flatten_cfn_reference as flat
from orchestrator import resources as r


# --- the state table -----------------------------------------------------------------------
def test_table_key_schema_indexes_and_ttl_come_from_the_naming_module(template: Template) -> None:
    indexes = [
        {
            "IndexName": ix.name,
            "KeySchema": [
                {"AttributeName": ix.partition_key, "KeyType": "HASH"},
                {"AttributeName": ix.sort_key, "KeyType": "RANGE"},
            ],
            "Projection": (
                {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(ix.projection)}
                if ix.projection
                else {"ProjectionType": "KEYS_ONLY"}
            ),
        }
        for ix in r.INDEXES
    ]
    attributes = [
        {"AttributeName": r.PK, "AttributeType": "S"},
        {"AttributeName": r.SK, "AttributeType": "S"},
    ]
    for ix in r.INDEXES:
        attributes += [
            {"AttributeName": ix.partition_key, "AttributeType": "S"},
            {"AttributeName": ix.sort_key, "AttributeType": ix.sort_key_type},
        ]
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": r.PK, "KeyType": "HASH"},
                {"AttributeName": r.SK, "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": Match.array_equals(attributes),
            "GlobalSecondaryIndexes": Match.array_equals(indexes),
            "TimeToLiveSpecification": {"AttributeName": r.TTL_ATTRIBUTE, "Enabled": True},
        },
    )


def test_table_is_on_demand_encrypted_recoverable_and_protected(template: Template) -> None:
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like(
                {
                    "BillingMode": "PAY_PER_REQUEST",
                    "SSESpecification": {"SSEEnabled": True},
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "DeletionProtectionEnabled": True,
                    "TableName": Match.absent(),  # generated: several deployments per account
                }
            ),
            "DeletionPolicy": "Retain",
        },
    )


# --- queues and scheduling --------------------------------------------------------------------
def test_work_queue_redrives_to_an_encrypted_dlq(template: Template) -> None:
    template.resource_count_is("AWS::SQS::Queue", 2)
    template.all_resources_properties("AWS::SQS::Queue", {"SqsManagedSseEnabled": True})
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "VisibilityTimeout": r.DEFAULT_LEASE_SECONDS,
            "MessageRetentionPeriod": r.QUEUE_RETENTION_SECONDS,
            "ReceiveMessageWaitTimeSeconds": 20,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": [dlq(template), "Arn"]},
                "maxReceiveCount": r.MAX_RECEIVE_COUNT,
            },
        },
    )


def test_both_queues_refuse_requests_without_tls(template: Template) -> None:
    for queue_id in (work_queue(template), dlq(template)):
        template.has_resource_properties(
            "AWS::SQS::QueuePolicy",
            {
                "Queues": [{"Ref": queue_id}],
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                },
            },
        )


def test_scheduler_role_only_sends_to_the_work_queue(template: Template) -> None:
    group_id, role_id, role = scheduler_role(template, "timer")
    condition = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
    assert condition == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnLike": {"aws:SourceArn": {"Fn::GetAtt": [group_id, "Arn"]}},
    }
    assert grants_of_role(template, role_id) == {named(template)["queue"]: {"sqs:SendMessage"}}


def test_recurring_schedules_role_only_invokes_the_api_function(template: Template) -> None:
    group_id, role_id, role = scheduler_role(template, "recurring")
    condition = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
    assert condition["ArnLike"] == {"aws:SourceArn": {"Fn::GetAtt": [group_id, "Arn"]}}
    api_fn, _ = only(template, "AWS::Lambda::Function", {"Handler": API_HANDLER})
    assert grants_of_role(template, role_id) == {f"<{api_fn}.Arn>": {"lambda:InvokeFunction"}}


# --- functions, API, sweeper ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("handler", "service"),
    [
        (API_HANDLER, "orchestrator-api"),
        (SWEEPER_HANDLER, "orchestrator-sweeper"),
    ],
)
def test_functions_get_every_setting_from_the_environment(
    template: Template, handler: str, service: str
) -> None:
    t = template
    _, fn = only(t, "AWS::Lambda::Function", {"Handler": handler})
    props = fn["Properties"]
    assert (props["Runtime"], props["Architectures"]) == ("python3.12", ["x86_64"])
    env = props["Environment"]["Variables"]
    groups = t.find_resources("AWS::Scheduler::ScheduleGroup")
    timer_group, timer_role, _ = scheduler_role(t, "timer")
    recurring_group, recurring_role, _ = scheduler_role(t, "recurring")
    assert env == {
        r.ENV_TABLE: {"Ref": only(t, "AWS::DynamoDB::Table")[0]},
        r.ENV_QUEUE_URL: {"Ref": work_queue(t)},
        r.ENV_QUEUE_ARN: {"Fn::GetAtt": [work_queue(t), "Arn"]},
        r.ENV_DLQ_URL: {"Ref": dlq(t)},
        r.ENV_SCHEDULE_GROUP: groups[timer_group]["Properties"]["Name"],
        r.ENV_SCHEDULER_ROLE_ARN: {"Fn::GetAtt": [timer_role, "Arn"]},
        r.ENV_RECURRING_GROUP: groups[recurring_group]["Properties"]["Name"],
        r.ENV_RECURRING_ROLE_ARN: {"Fn::GetAtt": [recurring_role, "Arn"]},
        r.ENV_LEASE_SECONDS: str(r.DEFAULT_LEASE_SECONDS),
        r.ENV_BUCKET: {"Ref": only(t, "AWS::S3::Bucket")[0]},
        "POWERTOOLS_SERVICE_NAME": service,
    }


def test_both_functions_share_one_code_asset(template: Template) -> None:
    keys = {
        f["Properties"]["Code"]["S3Key"]
        for f in template.find_resources("AWS::Lambda::Function").values()
    }
    assert len(keys) == 1


def test_sweeper_runs_every_minute(template: Template) -> None:
    fn_id, _ = only(template, "AWS::Lambda::Function", {"Handler": SWEEPER_HANDLER})
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(1 minute)",
            "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [fn_id, "Arn"]}})],
        },
    )


def test_every_route_requires_iam_auth_by_default(template: Template) -> None:
    routes = template.find_resources("AWS::ApiGatewayV2::Route")
    assert {route["Properties"]["RouteKey"] for route in routes.values()} == {
        f"{method} {path}" for method, path in ROUTES
    }
    template.all_resources_properties("AWS::ApiGatewayV2::Route", {"AuthorizationType": "AWS_IAM"})
    template.resource_count_is("AWS::ApiGatewayV2::Authorizer", 0)
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AutoDeploy": True,
            "AccessLogSettings": Match.object_like(
                {"Format": Match.string_like_regexp("requestId")}
            ),
        },
    )


def test_api_invoke_policy_names_each_route(template: Template) -> None:
    api_id, _ = only(template, "AWS::ApiGatewayV2::Api", {"ProtocolType": "HTTP"})
    _, policy = only(
        template,
        "AWS::IAM::ManagedPolicy",
        {
            "Description": Match.string_like_regexp("every route"),
            "PolicyDocument": Match.object_like(
                {"Statement": [Match.object_like({"Action": "execute-api:Invoke"})]}
            ),
        },
    )
    (stmt,) = policy["Properties"]["PolicyDocument"]["Statement"]
    prefix = f"{PARTITION_ARN}:execute-api:<AWS::Region>:<AWS::AccountId>:<{api_id}>/$default/"
    assert {flat(res) for res in stmt["Resource"]} == {
        prefix + f"{method}{re.sub(r'[{][^}]+[}]', '*', path)}" for method, path in ROUTES
    }


def test_jwt_mode_puts_a_jwt_authorizer_on_every_route(custom_template: Template) -> None:
    t = custom_template
    authorizer_id, _ = only(
        t,
        "AWS::ApiGatewayV2::Authorizer",
        {
            "AuthorizerType": "JWT",
            "JwtConfiguration": {"Issuer": JWT_ISSUER, "Audience": list(JWT_AUDIENCE)},
            "IdentitySource": ["$request.header.Authorization"],
        },
    )
    t.all_resources_properties(
        "AWS::ApiGatewayV2::Route",
        {"AuthorizationType": "JWT", "AuthorizerId": {"Ref": authorizer_id}},
    )
    t.resource_count_is("AWS::IAM::ManagedPolicy", 1)  # the worker policy; no invoke policy


def test_anonymous_api_and_bad_props_are_refused() -> None:
    with pytest.raises(ValueError):
        ApiAuth(mode="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ApiAuth.jwt(issuer="https://issuer.example.com/", audience=[])
    with pytest.raises(ValueError):
        Orchestrator(Stack(App(), "S"), "O", lease_seconds=0)


# --- alarms ------------------------------------------------------------------------------------
def test_alarms_watch_dlq_depth_and_oldest_message_age(template: Template) -> None:
    template.resource_count_is("AWS::CloudWatch::Alarm", 2)
    for metric, queue_id, threshold in (
        ("ApproximateNumberOfMessagesVisible", dlq(template), 1),
        ("ApproximateAgeOfOldestMessage", work_queue(template), 1800),
    ):
        template.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {
                "Namespace": "AWS/SQS",
                "MetricName": metric,
                "Dimensions": [
                    {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
                ],
                "Threshold": threshold,
            },
        )


# --- outputs and the construct in a user's stack -------------------------------------------------
def test_stack_outputs_what_a_worker_needs(template: Template) -> None:
    assert set(template.find_outputs("*")) >= {
        "ApiUrl",
        "TableName",
        "QueueUrl",
        "QueueArn",
        "DlqUrl",
        "ScheduleGroup",
        "SchedulerRoleArn",
        "WorkerPolicyArn",
        "ApiInvokePolicyArn",
        "ApiReadPolicyArn",
        "ApiStartPolicyArn",
        "ApiSignalPolicyArn",
        "ApiOperatePolicyArn",
    }


def test_construct_props_reach_the_resources(custom_template: Template) -> None:
    t = custom_template
    capacity = {"ReadCapacityUnits": 3, "WriteCapacityUnits": 2}
    t.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like(
                {
                    "TableName": r.DEFAULT_TABLE_NAME,
                    "BillingMode": Match.absent(),  # provisioned is the CloudFormation default
                    "ProvisionedThroughput": capacity,
                    "GlobalSecondaryIndexes": [
                        Match.object_like({"ProvisionedThroughput": capacity})
                    ]
                    * len(r.INDEXES),
                    "DeletionProtectionEnabled": False,
                }
            ),
            "DeletionPolicy": "Delete",
        },
    )
    t.has_resource_properties(
        "AWS::SQS::Queue", {"QueueName": r.DEFAULT_QUEUE_NAME, "VisibilityTimeout": 90}
    )
    t.has_resource_properties("AWS::SQS::Queue", {"QueueName": r.DEFAULT_DLQ_NAME})
    t.has_resource_properties("AWS::Scheduler::ScheduleGroup", {"Name": r.DEFAULT_SCHEDULE_GROUP})
    t.has_resource_properties("AWS::Scheduler::ScheduleGroup", {"Name": r.DEFAULT_RECURRING_GROUP})
    t.has_resource_properties(
        "AWS::CloudWatch::Alarm", {"MetricName": "ApproximateAgeOfOldestMessage", "Threshold": 7200}
    )
    t.all_resources_properties("AWS::Logs::LogGroup", {"RetentionInDays": 7})
    for handler in (API_HANDLER, SWEEPER_HANDLER):  # the custom resources' function has none
        only(t, "AWS::Lambda::Function", _env_like(handler, {r.ENV_LEASE_SECONDS: "90"}))
    _, role = role_trusting(t, {"AWS": Match.any_value()})
    principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"]
    assert sorted(principal) == sorted(WORKER_PRINCIPALS)


# --- Lambda packaging ----------------------------------------------------------------------------
def test_bundling_targets_the_lambda_platform_and_pins_versions() -> None:
    cmd = pip_command("/out", lambda_requirements())
    joined = " ".join(cmd)
    for flag in (
        "--platform manylinux2014_x86_64",
        "--implementation cp",
        "--python-version 3.12",
        "--only-binary=:all:",
        "--target /out",
    ):
        assert flag in joined
    assert {req.split("==")[0] for req in lambda_requirements()} == {
        "pydantic",
        "pydantic-settings",
        "aws-lambda-powertools",
    }
    assert all("==" in req for req in lambda_requirements())
    assert {"local", "tests", "__pycache__"} <= set(EXCLUDE)


def test_the_bundle_installs_from_a_hash_lock_that_matches_the_tested_versions() -> None:
    """`python -m infra.lock` regenerates the lock when this fails."""
    cmd = " ".join(pip_command("/out", lambda_requirements(), lock=LAMBDA_LOCK))
    assert f"--require-hashes -r {LAMBDA_LOCK}" in cmd
    pins = locked_pins()
    for req in lambda_requirements():
        name, version = req.split("==")
        assert pins[name] == version, f"{LAMBDA_LOCK.name} is stale for {name}"
    assert {"pydantic-core", "typing-extensions", "jmespath"} <= set(pins)  # transitive too
    lines = LAMBDA_LOCK.read_text().splitlines()
    assert sum("--hash=sha256:" in line for line in lines) == len(pins)


def test_cdk_context_selects_the_construct_props() -> None:
    app = App(
        context={
            "orchestrator:apiAuth": "jwt",
            "orchestrator:jwtIssuer": JWT_ISSUER,
            "orchestrator:jwtAudience": "a, b",
            "orchestrator:leaseSeconds": "60",
            "orchestrator:ephemeral": "true",
            "orchestrator:workerPrincipals": ",".join(WORKER_PRINCIPALS),
            "orchestrator:namePrefix": "dev-",
        }
    )
    assert props_from_context(app) == {
        "api_auth": ApiAuth.jwt(issuer=JWT_ISSUER, audience=["a", "b"]),
        "lease_seconds": 60,
        "retention": Retention.ephemeral(),
        "worker_principals": list(WORKER_PRINCIPALS),
        "name_prefix": "dev-",
    }
    assert props_from_context(App()) == {}  # defaults: IAM auth, retained data


# --- task queues ---------------------------------------------------------------------------------
def test_each_task_queue_gets_a_queue_and_dlq_named_by_the_resource_module(
    custom_template: Template,
) -> None:
    t = custom_template
    gpu = r.task_queue_name(r.DEFAULT_QUEUE_NAME, "gpu")
    gpu_dlq = r.task_dlq_name(r.DEFAULT_QUEUE_NAME, r.DEFAULT_DLQ_NAME, "gpu")
    queue_id, _ = only(t, "AWS::SQS::Queue", {"QueueName": gpu})
    dlq_id, _ = only(t, "AWS::SQS::Queue", {"QueueName": gpu_dlq})
    t.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": gpu,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                "maxReceiveCount": r.MAX_RECEIVE_COUNT,
            },
        },
    )
    for handler in (API_HANDLER, SWEEPER_HANDLER):
        only(t, "AWS::Lambda::Function", _env_like(handler, {r.ENV_TASK_QUEUES: "default,gpu"}))
    grants = grants_of_role(t, _worker_role_id(t))
    assert "sqs:ReceiveMessage" in grants[f"<{queue_id}.Arn>"]


def _env_like(handler: str, variables: dict[str, str]) -> dict[str, Any]:
    return {"Handler": handler, "Environment": {"Variables": Match.object_like(variables)}}


def _worker_role_id(t: Template) -> str:
    return role_trusting(t, {"AWS": Match.any_value()})[0]


def test_a_fleet_policy_names_only_its_task_queues() -> None:
    from aws_cdk import App, Stack

    from tests.infra.conftest import SKIP_BUNDLING

    app = App(context={**SKIP_BUNDLING})
    stack = Stack(app, "Fleets")
    orch = Orchestrator(stack, "O", name_prefix="", task_queues=["gpu"])
    orch.worker_policy_for("GpuWorkers", ["gpu"])
    with pytest.raises(ValueError, match="unknown task queue"):
        orch.worker_policy_for("Nope", ["bulk"])
    t = Template.from_stack(stack)
    gpu_queue, _ = only(
        t, "AWS::SQS::Queue", {"QueueName": r.task_queue_name(r.DEFAULT_QUEUE_NAME, "gpu")}
    )
    default_queue, _ = only(t, "AWS::SQS::Queue", {"QueueName": r.DEFAULT_QUEUE_NAME})
    policies = t.find_resources(
        "AWS::IAM::ManagedPolicy",
        {"Properties": {"Description": Match.string_like_regexp("serving task queue")}},
    )
    (policy,) = policies.values()
    resources = {
        flat(res)
        for stmt in policy["Properties"]["PolicyDocument"]["Statement"]
        if "sqs:ReceiveMessage" in stmt["Action"]
        for res in (stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]])
    }
    assert resources == {f"<{gpu_queue}.Arn>"}
    assert f"<{default_queue}.Arn>" not in resources


def test_pinned_builds_get_a_queue_per_task_queue_sharing_its_dlq_and_granted_to_the_fleet() -> (
    None
):
    from aws_cdk import App, Stack

    from tests.infra.conftest import SKIP_BUNDLING

    app = App(context={**SKIP_BUNDLING})
    stack = Stack(app, "Pinned")
    with pytest.raises(ValueError, match="pinned_builds"):
        Orchestrator(stack, "Bad", name_prefix="", pinned_builds=["not a build"])
    orch = Orchestrator(
        stack, "O", name_prefix="", task_queues=["gpu"], pinned_builds=["2026.11.1"]
    )
    orch.worker_policy_for("GpuWorkers", ["gpu"])
    t = Template.from_stack(stack)
    queue_ids = {}
    for tq, dlq_name in (("default", r.DEFAULT_DLQ_NAME), ("gpu", "orchestrator-work-gpu-dlq")):
        name = r.pinned_queue_name(r.DEFAULT_QUEUE_NAME, tq, "2026.11.1")
        queue_ids[tq], queue = only(t, "AWS::SQS::Queue", {"QueueName": name})
        dlq_id, _ = only(t, "AWS::SQS::Queue", {"QueueName": dlq_name})
        target = queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
        assert target == {"Fn::GetAtt": [dlq_id, "Arn"]}  # the task queue's own DLQ
    (policy,) = t.find_resources(
        "AWS::IAM::ManagedPolicy",
        {"Properties": {"Description": Match.string_like_regexp("serving task queue")}},
    ).values()
    resources = {
        flat(res)
        for stmt in policy["Properties"]["PolicyDocument"]["Statement"]
        if "sqs:ReceiveMessage" in stmt["Action"]
        for res in (stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]])
    }
    assert f"<{queue_ids['gpu']}.Arn>" in resources
    assert f"<{queue_ids['default']}.Arn>" not in resources
