"""cdk-nag acknowledgments, written next to the resources they excuse.

cdk-nag 3 reads acknowledgments from construct metadata
(`Validations.of(scope).acknowledge(...)`), and a wildcard finding is acknowledged
one resource at a time by its exact id, `AwsSolutions-IAM5[Resource::<resource>]`,
where `<resource>` is the resource with CloudFormation references flattened the
way cdk-nag flattens them (`{"Ref": "X"}` -> `<X>`, `Fn::GetAtt` -> `<X.Attr>`,
`Fn::Join` concatenated). `acknowledge_wildcards` computes those ids from the
statement itself, so an acknowledgment cannot silently cover a different resource,
and it refuses a wildcard that has no written reason.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from constructs import IConstruct


def flatten_cfn_reference(node: Any) -> str:
    """Port of cdk-nag's `flattenCfnReference` (utils/flatten-cfn-reference.ts)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(flatten_cfn_reference(item) for item in items)
        if "Fn::Sub" in node:
            return flatten_cfn_reference(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten_cfn_reference(resource)}.{flatten_cfn_reference(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten_cfn_reference(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten_cfn_reference(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def wildcard_finding_ids(scope: IConstruct, statement: iam.PolicyStatement) -> list[str]:
    stack = Stack.of(scope)
    ids = []
    for resource in statement.resources:
        flat = flatten_cfn_reference(stack.resolve(resource))
        if "*" in flat:
            ids.append(f"AwsSolutions-IAM5[Resource::{flat}]")
    return ids


def acknowledge_wildcards(
    target: IConstruct, statement: iam.PolicyStatement, reason: str | None
) -> None:
    """Acknowledge the statement's wildcard resources on `target` (the role or policy
    that carries it). Wildcard actions are never acknowledged."""
    if any("*" in action for action in statement.actions):
        raise ValueError(f"wildcard action in {statement.actions}: name the actions")
    ids = wildcard_finding_ids(target, statement)
    if ids and not reason:
        raise ValueError(f"wildcard resource without a written reason: {ids}")
    for finding in ids:
        Validations.of(target).acknowledge(Acknowledgment(id=finding, reason=str(reason)))


def acknowledge(target: IConstruct, rule: str, reason: str) -> None:
    Validations.of(target).acknowledge(Acknowledgment(id=rule, reason=reason))
