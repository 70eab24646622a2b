"""IAM: least privilege, statement by statement. The expected actions are spelled out
here, from the issue, rather than imported from the code under test."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match, Template
from cfn_helpers import (
    API_HANDLER,
    SWEEPER_HANDLER,
    WORKER_PRINCIPALS,
    grants_of_role,
    named,
    role_of_function,
    role_trusting,
    task_queues,
    without_logs,
)

from orchestrator import resources as r

QUERY = {"dynamodb:Query"}
# The issue lists dynamodb:TransactWriteItems, but IAM has no such action (cfn-lint
# W3037): TransactWriteItems is authorized per item by PutItem/UpdateItem/
# ConditionCheckItem, which the grants below include.


def index_query(n: dict[str, str]) -> dict[str, set[str]]:
    """Query on each index, named (never `index/*`)."""
    return {n[ix.name]: QUERY for ix in r.INDEXES}


def all_statements(t: Template) -> list[dict[str, Any]]:
    docs = [
        p["Properties"]["PolicyDocument"] for p in t.find_resources("AWS::IAM::Policy").values()
    ]
    docs += [
        p["Properties"]["PolicyDocument"]
        for p in t.find_resources("AWS::IAM::ManagedPolicy").values()
    ]
    for role in t.find_resources("AWS::IAM::Role").values():
        docs += [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
    return [stmt for doc in docs for stmt in doc["Statement"]]


def test_no_wildcard_actions_and_no_star_resource(template: Template) -> None:
    statements = all_statements(template)
    assert statements
    for stmt in statements:
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        assert not [a for a in actions if "*" in a], stmt
        assert stmt["Resource"] != "*" and "*" not in stmt["Resource"], stmt


def test_no_statement_may_batch_write_the_table_unless_leading_keys_narrow_it(
    template: Template, custom_template: Template
) -> None:
    """BatchWriteItem deletes as well as puts, and IAM cannot tell the two apart
    inside it: only a `dynamodb:LeadingKeys` condition could narrow it. No
    principal has it at all (docs/security.md, "Roles and what they may do")."""
    for t in (template, custom_template):
        for stmt in all_statements(t):
            actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
            if "dynamodb:BatchWriteItem" in actions:
                assert "dynamodb:LeadingKeys" in json.dumps(stmt.get("Condition", {})), stmt


def test_no_role_trusts_the_account_root_and_without_principals_there_is_no_worker_role(
    template: Template,
) -> None:
    for role in template.find_resources("AWS::IAM::Role").values():
        assert ":root" not in json.dumps(role["Properties"]["AssumeRolePolicyDocument"])
    assert not template.find_resources(
        "AWS::IAM::Role",
        {
            "Properties": {
                "AssumeRolePolicyDocument": Match.object_like(
                    {"Statement": [Match.object_like({"Principal": {"AWS": Match.any_value()}})]}
                )
            }
        },
    )


def test_worker_policy_has_exactly_the_worker_statements(custom_template: Template) -> None:
    template = custom_template
    n = named(template)
    role_id, role = role_trusting(template, {"AWS": Match.any_value()})
    statement = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert sorted(statement["Principal"]["AWS"]) == sorted(WORKER_PRINCIPALS)
    assert role["Properties"]["MaxSessionDuration"] == 3600
    assert grants_of_role(template, role_id) == {
        n["table"]: {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
            "dynamodb:ConditionCheckItem",
            "dynamodb:BatchGetItem",
        },
        **index_query(n),
        **{
            queue: {
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:SendMessage",
                "sqs:GetQueueAttributes",
            }
            for queue in [n["queue"], *(f"<{q}.Arn>" for q in task_queues(template))]
        },
        n["schedules"]: {
            "scheduler:CreateSchedule",
            "scheduler:DeleteSchedule",
            "scheduler:GetSchedule",
        },
        n["scheduler_role"]: {"iam:PassRole"},
        n["values"]: {"s3:PutObject", "s3:GetObject"},
    }
    template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {
            "PolicyDocument": Match.object_like(
                {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Action": "iam:PassRole",
                                    "Condition": {
                                        "StringEquals": {
                                            "iam:PassedToService": "scheduler.amazonaws.com"
                                        }
                                    },
                                }
                            )
                        ]
                    )
                }
            )
        },
    )


def test_api_function_has_exactly_the_api_statements(template: Template) -> None:
    n = named(template)
    grants = grants_of_role(template, role_of_function(template, API_HANDLER))
    assert without_logs(grants) == {
        n["table"]: {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:ConditionCheckItem",
            "dynamodb:DeleteItem",
        },
        **index_query(n),
        n["queue"]: {"sqs:SendMessage", "sqs:GetQueueAttributes"},
        n["schedules"]: {"scheduler:DeleteSchedule"},
        n["recurring_schedules"]: {
            "scheduler:CreateSchedule",
            "scheduler:UpdateSchedule",
            "scheduler:DeleteSchedule",
        },
        n["recurring_role"]: {"iam:PassRole"},
        n["values"]: {"s3:GetObject"},
    }
    assert len(grants) == len(without_logs(grants)) + 1  # its own log group, nothing else


def test_sweeper_function_has_exactly_the_sweeper_statements(template: Template) -> None:
    n = named(template)
    grants = grants_of_role(template, role_of_function(template, SWEEPER_HANDLER))
    assert without_logs(grants) == {
        n["table"]: {
            "dynamodb:Query",
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:UpdateItem",
            "dynamodb:PutItem",
            # Its jobs pass goes on with bulk redrives (api/jobs.py), which delete
            # failed records in a transaction checked against the run.
            "dynamodb:DeleteItem",
            "dynamodb:ConditionCheckItem",
        },
        **index_query(n),
        n["queue"]: {"sqs:SendMessage"},
        n["dlq"]: {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
        n["schedules"]: {"scheduler:DeleteSchedule"},
    }


def test_lambda_roles_carry_no_aws_managed_policy(template: Template) -> None:
    for role in template.find_resources("AWS::IAM::Role").values():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert "Ref" in arn, arn  # only the stack's own (customer managed) policy
