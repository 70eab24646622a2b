"""Shared by the infra tests: the custom-stack props, and lookups that find template
resources by type and properties (never by hashed logical id)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import Duration
from aws_cdk.assertions import Match, Template

from infra.declared import ScheduleSpec
from infra.nag import flatten_cfn_reference as flat
from orchestrator import resources as r

ROOT = Path(__file__).resolve().parents[2]
JWT_ISSUER = "https://issuer.example.com/"
JWT_AUDIENCE = ("orchestrator-api",)
WORKER_PRINCIPALS = (
    "arn:aws:iam::111122223333:role/datacenter-workers",
    "arn:aws:iam::444455556666:root",
)
PARTITION_ARN = "arn:<AWS::Partition>"
API_HANDLER = "orchestrator.api.lambda_handler.handler"
SWEEPER_HANDLER = "orchestrator.sweeper.handler"
# Declared in the custom stack (tests/infra/test_declared.py).
GPU_LIMITS = {"max_concurrency": 4, "rate_limit": 100, "rate_period_seconds": 60}
NIGHTLY = ScheduleSpec(
    name="nightly",
    workflow="reconcile",
    expression="cron(0 2 * * ? *)",
    timezone="Europe/Paris",
    input={"full": True},
    overlap="buffer_one",
    catchup_window=Duration.hours(2),
    task_queue="gpu",
)


def cdk_json_context() -> dict[str, Any]:
    """The feature flags `cdk synth` runs with, so the tests synthesize the same thing."""
    return dict(json.loads((ROOT / "cdk.json").read_text())["context"])


def only(t: Template, type_: str, props: Any = None) -> tuple[str, dict[str, Any]]:
    found = t.find_resources(type_, {"Properties": props} if props is not None else None)
    assert len(found) == 1, f"expected one {type_}, found {list(found)}"
    logical_id, resource = next(iter(found.items()))
    return logical_id, dict(resource)


def _main_queues(t: Template) -> dict[str, Any]:
    """The work queue and its DLQ: not the per-task-queue pairs (`TaskQueue<name>`)."""
    return {k: v for k, v in t.find_resources("AWS::SQS::Queue").items() if "TaskQueue" not in k}


def work_queue(t: Template) -> str:
    (queue_id,) = [k for k, v in _main_queues(t).items() if "RedrivePolicy" in v["Properties"]]
    return queue_id


def dlq(t: Template) -> str:
    (queue_id,) = set(_main_queues(t)) - {work_queue(t)}
    return queue_id


def task_queues(t: Template) -> list[str]:
    """The work queues of the task queues besides default (with a RedrivePolicy)."""
    return sorted(
        k
        for k, v in t.find_resources("AWS::SQS::Queue").items()
        if "TaskQueue" in k and "RedrivePolicy" in v["Properties"]
    )


def role_of_function(t: Template, handler: str) -> str:
    _, fn = only(t, "AWS::Lambda::Function", {"Handler": handler})
    return str(fn["Properties"]["Role"]["Fn::GetAtt"][0])


def role_trusting(t: Template, principal: Any) -> tuple[str, dict[str, Any]]:
    doc = {"Statement": Match.array_with([Match.object_like({"Principal": principal})])}
    return only(t, "AWS::IAM::Role", {"AssumeRolePolicyDocument": Match.object_like(doc)})


def grants_of_role(t: Template, role_id: str) -> dict[str, set[str]]:
    """Flattened resource -> actions, over the role's inline and managed policies."""
    docs = [
        p["Properties"]["PolicyDocument"]
        for p in t.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    role = t.find_resources("AWS::IAM::Role")[role_id]["Properties"]
    managed = t.find_resources("AWS::IAM::ManagedPolicy")
    for arn in role.get("ManagedPolicyArns", []):
        docs.append(managed[arn["Ref"]]["Properties"]["PolicyDocument"])
    out: dict[str, set[str]] = {}
    for doc in docs:
        for stmt in doc["Statement"]:
            assert stmt["Effect"] == "Allow"
            actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
            res = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
            for resource in res:
                out.setdefault(flat(resource), set()).update(actions)
    return out


def scheduler_role(t: Template, kind: str) -> tuple[str, str, dict[str, Any]]:
    """(group id, role id, role) of the "timer" group (one-time wake-ups, the role
    sends to the work queue) or the "recurring" one (the role invokes the API)."""
    doc = {
        "Statement": Match.array_with(
            [Match.object_like({"Principal": {"Service": "scheduler.amazonaws.com"}})]
        )
    }
    roles = t.find_resources(
        "AWS::IAM::Role", {"Properties": {"AssumeRolePolicyDocument": Match.object_like(doc)}}
    )
    found = []
    for role_id, role in roles.items():
        condition = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
        group_id = condition["ArnLike"]["aws:SourceArn"]["Fn::GetAtt"][0]
        actions = {a for acts in grants_of_role(t, role_id).values() for a in acts}
        if ("sqs:SendMessage" in actions) == (kind == "timer"):
            found.append((group_id, role_id, dict(role)))
    assert len(found) == 1, f"expected one {kind} scheduler role, found {found}"
    return found[0]


def named(t: Template) -> dict[str, str]:
    """The resources statements should name, as cdk-nag-style flattened strings."""
    table = only(t, "AWS::DynamoDB::Table")[0]
    groups = t.find_resources("AWS::Scheduler::ScheduleGroup")
    timer_group, timer_role, _ = scheduler_role(t, "timer")
    recurring_group, recurring_role, _ = scheduler_role(t, "recurring")
    group_name = groups[timer_group]["Properties"]["Name"]
    bucket = only(t, "AWS::S3::Bucket")[0]
    recurring_name = groups[recurring_group]["Properties"]["Name"]
    return {
        "recurring_schedules": f"{PARTITION_ARN}:scheduler:<AWS::Region>:<AWS::AccountId>:"
        f"schedule/{recurring_name}/*",
        "recurring_role": f"<{recurring_role}.Arn>",
        "table": f"<{table}.Arn>",
        **{ix.name: f"<{table}.Arn>/index/{ix.name}" for ix in r.INDEXES},
        "queue": f"<{work_queue(t)}.Arn>",
        "dlq": f"<{dlq(t)}.Arn>",
        "schedules": f"{PARTITION_ARN}:scheduler:<AWS::Region>:<AWS::AccountId>:schedule/{group_name}/*",
        "scheduler_role": f"<{timer_role}.Arn>",
        "values": f"<{bucket}.Arn>/{r.VALUE_KEY_PREFIX}*",
    }


def without_logs(grants: dict[str, set[str]]) -> dict[str, set[str]]:
    return {
        res: acts
        for res, acts in grants.items()
        if not acts <= {"logs:CreateLogStream", "logs:PutLogEvents"}
    }
