"""Flow-control limits and schedules declared in CDK (`infra/declared.py`).

On the custom stack's template (`task_queues={"gpu": GPU_LIMITS}`,
`schedules=[NIGHTLY]`): the custom resources carry the store's own requests,
their role may touch only the two partitions, and the Scheduler schedule is the
one the API would create. Bad props fail at construction. The last tests run
the template's SDK calls with boto3 against the moto server, as the custom
resource's Lambda would, and read the result through the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Match, Template
from cfn_helpers import (
    API_HANDLER,
    GPU_LIMITS,
    NIGHTLY,
    grants_of_role,
    only,
    role_of_function,
    scheduler_role,
)

from infra import Orchestrator, ScheduleSpec
from infra.declared import task_queues_prop
from orchestrator import Client
from orchestrator import resources as r
from orchestrator.local import LocalStack
from orchestrator.settings import Settings
from orchestrator.store import flow
from orchestrator.store.schedules import schedule_key

TABLE = "<table>"
CR_PROVIDER_UUID = "AWS679f53fac002430cb0da5b7982bd2287"


def sdk_calls(t: Template, sk: str) -> dict[str, dict[str, Any]]:
    """{"Create"|"Update"|"Delete": the call} of the custom resource writing
    the item `sk`, with the table's Ref replaced by TABLE."""
    (table_id,) = t.find_resources("AWS::DynamoDB::Table")

    def text(node: Any) -> str:
        if isinstance(node, str):
            return node
        if node == {"Ref": table_id}:
            return TABLE
        assert "Fn::Join" in node, node
        return "".join(text(part) for part in node["Fn::Join"][1])

    found = []
    for resource in t.find_resources("Custom::AWS").values():
        calls = {
            k: json.loads(text(resource["Properties"][k])) for k in ("Create", "Update", "Delete")
        }
        if calls["Create"]["parameters"]["Key"]["sk"] == {"S": sk}:
            found.append(calls)
    assert len(found) == 1, f"expected one custom resource for {sk}, found {len(found)}"
    return found[0]


def test_a_queue_with_limits_is_written_as_queue_set_writes_it(custom_template: Template) -> None:
    calls = sdk_calls(custom_template, "Q#gpu")
    for kind in ("Create", "Update"):
        call = calls[kind]
        assert (call["service"], call["action"]) == ("DynamoDB", "UpdateItem")
        expected = flow.set_limits(
            TABLE, "gpu", max_concurrency=4, rate_limit=100, rate_period_ms=60_000, now=0
        )
        expected.pop("ReturnValues")
        got = call["parameters"]
        now = got["ExpressionAttributeValues"].pop(":now")
        expected["ExpressionAttributeValues"].pop(":now")
        assert got == expected
        assert int(now["N"]) > 1_700_000_000_000  # the synthesis time: every deploy differs
        # A constant physical id: an update never replaces (deletes) the item.
        assert call["physicalResourceId"] == {"id": "queue-limits/gpu"}
    delete = calls["Delete"]["parameters"]
    assert delete["Key"] == flow.flow_key("gpu")
    assert "REMOVE" in delete["UpdateExpression"] and ":max_concurrency" not in json.dumps(delete)
    # The default queue declares no limits: no resource, the API's limits stand.
    with pytest.raises(AssertionError, match="found 0"):
        sdk_calls(custom_template, "Q#default")


def test_the_declared_schedule_item_keeps_the_engines_state(custom_template: Template) -> None:
    calls = sdk_calls(custom_template, "S#nightly")
    params = calls["Update"]["parameters"]
    assert params["Key"] == schedule_key("nightly")
    values = params["ExpressionAttributeValues"]
    assert values[":workflow"] == {"S": "reconcile"}
    assert values[":expression"] == {"S": "cron(0 2 * * ? *)"}
    assert values[":timezone"] == {"S": "Europe/Paris"}
    assert values[":overlap"] == {"S": "buffer_one"}
    assert values[":catchup_window_s"] == {"N": "7200"}
    assert values[":task_queue"] == {"S": "gpu"}
    assert json.loads(values[":input"]["S"]) == {"full": True}
    for kept in ("created_at", "anchor_at", "paused", "version", "recent"):
        assert f"#{kept} = if_not_exists(#{kept}, :{kept})" in params["UpdateExpression"]
    assert calls["Delete"]["action"] == "DeleteItem"
    assert calls["Delete"]["parameters"] == {"TableName": TABLE, "Key": schedule_key("nightly")}


def test_the_custom_resources_role_touches_only_the_declared_partitions(
    custom_template: Template,
) -> None:
    _, fn = only(
        custom_template,
        "AWS::Lambda::Function",
        {"Role": Match.any_value(), "Handler": "index.handler"},
    )
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    (table_id,) = custom_template.find_resources("AWS::DynamoDB::Table")
    grants = grants_of_role(custom_template, role_id)
    table_grants = {res: acts for res, acts in grants.items() if table_id in res}
    assert table_grants == {f"<{table_id}.Arn>": {"dynamodb:UpdateItem", "dynamodb:DeleteItem"}}
    assert {a for acts in grants.values() for a in acts} == {
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    statements = [
        s
        for p in custom_template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if str(s["Action"]).startswith("dynamodb:")
    ]
    partitions = {}
    for s in statements:
        cond = s["Condition"]["ForAllValues:StringEquals"]
        partitions.setdefault(s["Action"], set()).update(cond["dynamodb:LeadingKeys"])
        if s["Action"] == "dynamodb:UpdateItem":
            assert {r.PK, r.SK} <= set(cond["dynamodb:Attributes"])
            assert "holders" not in cond["dynamodb:Attributes"] or cond["dynamodb:LeadingKeys"] == [
                flow.FLOW_PK
            ]
    assert partitions == {
        "dynamodb:UpdateItem": {flow.FLOW_PK, r.SCHEDULES_PK},
        "dynamodb:DeleteItem": {r.SCHEDULES_PK},
    }


def test_the_declared_schedule_is_the_one_the_api_creates(custom_template: Template) -> None:
    group_id, role_id, _ = scheduler_role(custom_template, "recurring")
    group_name = custom_template.find_resources("AWS::Scheduler::ScheduleGroup")[group_id][
        "Properties"
    ]["Name"]
    api_fn = only(custom_template, "AWS::Lambda::Function", {"Handler": API_HANDLER})[0]
    _, schedule = only(
        custom_template,
        "AWS::Scheduler::Schedule",
        {
            "Name": "nightly",
            "GroupName": group_name,
            "ScheduleExpression": "cron(0 2 * * ? *)",
            "ScheduleExpressionTimezone": "Europe/Paris",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Target": {
                "Arn": {"Fn::GetAtt": [api_fn, "Arn"]},
                "RoleArn": {"Fn::GetAtt": [role_id, "Arn"]},
                "Input": json.dumps(
                    {"orchestrator_schedule": "nightly", "tick": "<aws.scheduler.scheduled-time>"},
                    separators=(",", ":"),
                ),
                "RetryPolicy": {"MaximumEventAgeInSeconds": 7200, "MaximumRetryAttempts": 185},
            },
        },
    )
    # The definition item is written before the schedule can fire.
    (definition,) = [
        k for k in custom_template.find_resources("Custom::AWS") if "Schedulenightly" in k
    ]
    assert definition in schedule["DependsOn"]
    assert role_of_function(custom_template, API_HANDLER) != role_id


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (
            {"task_queues": {"gpu": {"max_concurrency": 0}}},
            r"task_queues\['gpu'\]: max_concurrency",
        ),
        ({"task_queues": {"gpu": {"concurrency": 4}}}, r"task_queues\['gpu'\]: concurrency: Extra"),
        (
            {"task_queues": {"gpu": {"rate_period_seconds": 60}}},
            r"rate_period_seconds needs a rate_limit",
        ),
        ({"task_queues": {"GPU!": None}}, r"task queue 'GPU!'"),
        ({"task_queues": "gpu"}, r"not the string 'gpu'"),
        ({"task_queues": {"gpu": 4}}, r"give a dict of max_concurrency"),
        ({"schedules": [NIGHTLY]}, r"schedules\['nightly'\]: task queue 'gpu' is not declared"),
        ({"schedules": [ScheduleSpec("9bad", "w", "cron(0 2 * * ? *)")]}, r"name: Value error"),
        ({"schedules": [ScheduleSpec("s", "w", "cron(0 2 * *)")]}, r"invalid cron expression"),
        ({"schedules": [ScheduleSpec("s", "w", "rate(5 minutes)")]}, r"declare a cron\(\)"),
        (
            {"schedules": [ScheduleSpec("s", "w", "cron(0 2 * * ? *)", timezone="Mars/Base")]},
            r"unknown time zone 'Mars/Base'",
        ),
        ({"schedules": [ScheduleSpec("s", "w", "cron(0 2 * * ? *)", overlap="queue")]}, "overlap"),
        (
            {"schedules": [ScheduleSpec("s", "w", "cron(0 2 * * ? *)", catchup_window=5)]},
            r"catchup_window_seconds: Input should be greater than or equal to 60",
        ),
        (
            {"schedules": [ScheduleSpec("s", "w", "cron(0 2 * * ? *)")] * 2},
            r"'s' is declared twice",
        ),
    ],
)
def test_bad_declarations_fail_the_synth_with_a_message(
    props: dict[str, Any], message: str
) -> None:
    stack = Stack(App(), "Bad")
    with pytest.raises(ValueError, match=message):
        Orchestrator(stack, "O", **props)
    (orchestrator,) = stack.node.children
    assert orchestrator.node.children == [], "nothing is built from a refused declaration"


def test_the_list_form_still_declares_queues_without_limits() -> None:
    assert task_queues_prop(["gpu", "bulk"]) == (("default", "gpu", "bulk"), {})
    names, limits = task_queues_prop({"default": {"rate_limit": 5}, "gpu": None})
    assert names == ("default", "gpu")
    assert limits == {"default": {"max_concurrency": None, "rate_limit": 5, "rate_period_ms": 1000}}


# --- The template's SDK calls against the moto server -----------------------------------------
def _run(ddb: Any, call: dict[str, Any], table: str) -> None:
    params = json.loads(json.dumps(call["parameters"]).replace(TABLE, table))
    {"UpdateItem": ddb.update_item, "DeleteItem": ddb.delete_item}[call["action"]](**params)


@pytest.fixture
def local(make_stack: Callable[..., LocalStack]) -> LocalStack:
    return make_stack(
        settings=Settings(lease_seconds=3, poll_seconds=1, task_queues=("default", "gpu"))
    )


def test_deployed_limits_are_what_the_engine_reads_and_each_deploy_puts_them_back(
    custom_template: Template, local: LocalStack
) -> None:
    calls = sdk_calls(custom_template, "Q#gpu")
    client = Client(local.settings.api_url)

    def gpu() -> dict[str, Any]:
        (q,) = [q for q in client.queues() if q["name"] == "gpu"]
        return q

    _run(local.ddb, calls["Create"], local.settings.table)
    declared = {"max_concurrency": 4, "rate_limit": 100, "rate_period_seconds": 60.0}
    assert (
        {k: gpu()[k] for k in declared} == declared == {**GPU_LIMITS, "rate_period_seconds": 60.0}
    )
    client.set_queue_limits("gpu", max_concurrency=1)  # an operator, between deploys
    assert gpu()["max_concurrency"] == 1 and gpu()["rate_limit"] is None
    _run(local.ddb, calls["Update"], local.settings.table)  # the next deploy
    assert {k: gpu()[k] for k in declared} == declared
    _run(local.ddb, calls["Delete"], local.settings.table)  # limits removed from the prop
    assert {k: gpu()[k] for k in declared} == dict.fromkeys(declared)
    item = local.ddb.get_item(TableName=local.settings.table, Key=flow.flow_key("gpu"))
    assert "holders" in item["Item"], "the item (the workers' slots) stays"


def test_a_deployed_schedule_fires_and_a_redeploy_keeps_its_state(
    custom_template: Template, local: LocalStack
) -> None:
    calls = sdk_calls(custom_template, "S#nightly")
    client = Client(local.settings.api_url)
    _run(local.ddb, calls["Create"], local.settings.table)
    shown = client.schedule("nightly")
    assert (shown["workflow"], shown["timezone"], shown["task_queue"]) == (
        "reconcile",
        "Europe/Paris",
        "gpu",
    )
    assert shown["input"] == {"full": True} and shown["state"] == "active"
    assert len(shown["next_fire_times"]) == 3
    started = client.trigger_schedule("nightly")
    assert started["outcome"] == "started"
    assert client.get(started["run_id"])["task_queue"] == "gpu"
    client.pause_schedule("nightly", note="maintenance")
    _run(local.ddb, calls["Update"], local.settings.table)  # the next deploy
    after = client.schedule("nightly")
    assert after["state"] == "paused" and after["note"] == "maintenance"
    assert [e.get("run_id") for e in after["recent"]] == [started["run_id"]]
    assert after["created_at"] == shown["created_at"]
    _run(local.ddb, calls["Delete"], local.settings.table)  # removed from the stack
    assert "nightly" not in [s["name"] for s in client.schedules()]
