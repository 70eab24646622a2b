"""The value bucket: where values above the offload threshold live (the claim
check, `orchestrator/payloads.py`).

Objects are immutable and content-addressed (`values/sha256/<hex>`); a record
points at one only after it was written. Hence: no versioning (a key never holds
two contents), a lifecycle rule that expires objects `VALUE_RETENTION_DAYS` after
their last write (each write of a value refreshes it), and incomplete uploads
aborted after a day. Private and encrypted: S3 managed keys (the table uses an
AWS managed key too), every public access blocked, TLS required. The name is
CloudFormation's (bucket names are global): workers and functions read it from
`ORCHESTRATOR_BUCKET`.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import nag
from orchestrator import resources as r

ACCESS_LOGS_REASON = (
    "Objects are immutable, content-addressed values written and read only by the "
    "orchestrator's own principals; reads through the API are logged by the API. "
    "Server access logs would need a second bucket for little audit value; enable "
    "CloudTrail S3 data events where object-level audit is required."
)


class ValueBucket(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal_policy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-values",
                    prefix=r.VALUE_KEY_PREFIX,
                    expiration=Duration.days(r.VALUE_RETENTION_DAYS),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )
        nag.acknowledge(self.bucket, "AwsSolutions-S1", ACCESS_LOGS_REASON)

    def objects_arn(self) -> str:
        """The values' keys: `<bucket arn>/values/sha256/*`."""
        return self.bucket.arn_for_objects(f"{r.VALUE_KEY_PREFIX}*")
