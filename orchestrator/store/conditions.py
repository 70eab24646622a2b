"""What a refused DynamoDB write says: whether its condition failed, and the
stored item it returned (ReturnValuesOnConditionCheckFailure=ALL_OLD)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


def conditional_failed(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def old_item(e: ClientError) -> dict[str, Any] | None:
    item = e.response.get("Item")
    return item if isinstance(item, dict) else None
