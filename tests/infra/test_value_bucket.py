"""The value bucket (infra/values.py): private, encrypted, TLS only, objects
expiring after the documented retention; workers write and read values, the API
reads them, nobody else; every function and worker is told its name."""

from __future__ import annotations

from aws_cdk.assertions import Match, Template
from cfn_helpers import (
    API_HANDLER,
    SWEEPER_HANDLER,
    grants_of_role,
    named,
    only,
    role_of_function,
)

from infra.nag import flatten_cfn_reference as flat
from orchestrator import resources as r


def test_the_bucket_is_private_encrypted_and_expires_values(template: Template) -> None:
    template.resource_count_is("AWS::S3::Bucket", 1)
    template.has_resource(
        "AWS::S3::Bucket",
        {
            # As the table's (the default Retention keeps the data).
            "DeletionPolicy": "Retain",
            "Properties": {
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "LifecycleConfiguration": {
                    "Rules": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Prefix": r.VALUE_KEY_PREFIX,
                                    "ExpirationInDays": r.VALUE_RETENTION_DAYS,
                                    "Status": "Enabled",
                                }
                            )
                        ]
                    )
                },
            },
        },
    )
    bucket = only(template, "AWS::S3::Bucket")[0]
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_workers_write_and_read_values_the_api_reads_them(template: Template) -> None:
    n = named(template)
    worker = only(
        template,
        "AWS::IAM::ManagedPolicy",
        {"Description": "Orchestrator worker: claim, run and record workflows"},
    )
    stmts = worker[1]["Properties"]["PolicyDocument"]["Statement"]
    s3_statements = [s for s in stmts if any(a.startswith("s3:") for a in _actions(s))]
    assert len(s3_statements) == 1
    assert flat(s3_statements[0]["Resource"]) == n["values"]
    assert set(_actions(s3_statements[0])) == {"s3:PutObject", "s3:GetObject"}
    api = grants_of_role(template, role_of_function(template, API_HANDLER))
    assert api[n["values"]] == {"s3:GetObject"}
    # No other S3 grant anywhere on the API's role; the sweeper has none.
    assert [res for res, acts in api.items() if any(a.startswith("s3:") for a in acts)] == [
        n["values"]
    ]
    sweeper = grants_of_role(template, role_of_function(template, SWEEPER_HANDLER))
    assert not [a for acts in sweeper.values() for a in acts if a.startswith("s3:")]


def test_functions_and_outputs_name_the_bucket(template: Template) -> None:
    bucket = only(template, "AWS::S3::Bucket")[0]
    for handler in (API_HANDLER, SWEEPER_HANDLER):
        template.has_resource_properties(
            "AWS::Lambda::Function",
            {
                "Handler": handler,
                "Environment": {"Variables": Match.object_like({r.ENV_BUCKET: {"Ref": bucket}})},
            },
        )
    template.has_output(
        "BucketName",
        {"Value": {"Ref": bucket}, "Description": Match.string_like_regexp(r.ENV_BUCKET)},
    )


def _actions(stmt: dict[str, object]) -> list[str]:
    a = stmt["Action"]
    return a if isinstance(a, list) else [a]  # type: ignore[return-value]
