"""The state table: built entirely from `orchestrator.resources`, so the key schema,
the indexes and the TTL attribute cannot drift from what the code (and the local
bootstrap) uses.

Always encrypted (AWS managed key) with point-in-time recovery; billing, deletion
protection and the removal policy are the caller's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from orchestrator import resources as r

_ATTRIBUTE_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}


@dataclass(frozen=True)
class TableBilling:
    """On-demand (the default: no capacity planning, pay per request) or provisioned.

    Provisioned capacity applies to the table and to each index.
    """

    mode: Literal["on_demand", "provisioned"] = "on_demand"
    read_capacity: int = 5
    write_capacity: int = 5

    @classmethod
    def on_demand(cls) -> TableBilling:
        return cls()

    @classmethod
    def provisioned(cls, *, read_capacity: int, write_capacity: int) -> TableBilling:
        if read_capacity < 1 or write_capacity < 1:
            raise ValueError("provisioned capacity must be at least 1")
        return cls("provisioned", read_capacity, write_capacity)


class StateTable(Construct):
    """One table for runs, steps and signal inboxes (see `orchestrator.resources`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        billing: TableBilling,
        deletion_protection: bool,
        removal_policy: RemovalPolicy,
        table_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        provisioned = billing.mode == "provisioned"
        read = billing.read_capacity if provisioned else None
        write = billing.write_capacity if provisioned else None
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name=r.PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=r.SK, type=dynamodb.AttributeType.STRING),
            billing_mode=(
                dynamodb.BillingMode.PROVISIONED
                if provisioned
                else dynamodb.BillingMode.PAY_PER_REQUEST
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=r.TTL_ATTRIBUTE,
            deletion_protection=deletion_protection,
            removal_policy=removal_policy,
            read_capacity=read,
            write_capacity=write,
        )
        for index in r.INDEXES:
            self.table.add_global_secondary_index(
                index_name=index.name,
                partition_key=dynamodb.Attribute(
                    name=index.partition_key, type=dynamodb.AttributeType.STRING
                ),
                sort_key=dynamodb.Attribute(
                    name=index.sort_key, type=_ATTRIBUTE_TYPES[index.sort_key_type]
                ),
                projection_type=(
                    dynamodb.ProjectionType.INCLUDE
                    if index.projection
                    else dynamodb.ProjectionType.KEYS_ONLY
                ),
                non_key_attributes=list(index.projection) or None,
                read_capacity=read,
                write_capacity=write,
            )

    def index_arns(self) -> list[str]:
        """Each index by name: grants never need `index/*`."""
        return [f"{self.table.table_arn}/index/{index.name}" for index in r.INDEXES]
