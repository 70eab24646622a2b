"""Continue-as-new in the store: the fenced write that starts a run's next
generation, and the TTL that retires the generation it ends.

A generation's records live under their own sort-key prefix
(`model.generation_scope`), so the claim's Query (`record_requests.query_history`)
reads one generation, whatever came before.
"""

from __future__ import annotations

from typing import Any

from .. import resources as r
from ..model import Status
from .codec import run_key, to_attr

# Earlier generations stay readable this long after they end, then DynamoDB's
# TTL deletes them.
HISTORY_TTL_SECONDS = 30 * 24 * 3600


def continue_run(
    table: str,
    workflow_id: str,
    *,
    epoch: int,
    now: int,
    lease_until: int,
    input_text: str,
    generation: int,
) -> dict[str, Any]:
    # Closes: a stale owner starting a generation (epoch), continuing a run that
    # is no longer running, and continuing past a cancel requested since the
    # owner last looked (it delivers the cancel instead). The owner keeps the
    # lease and goes on with the new generation at once; the epoch moves on, so
    # nothing of the ended generation's claim can write any more.
    return {
        "TableName": table,
        "Key": run_key(workflow_id),
        "UpdateExpression": (
            "SET #in = :input, #gen = :gen, #ep = #ep + :one, #lu = :lease, #ua = :now REMOVE #cf"
        ),
        "ConditionExpression": "#ep = :epoch AND #st = :running AND attribute_not_exists(#cr)",
        "ExpressionAttributeNames": {
            "#in": "input",
            "#gen": "generation",
            "#ep": "epoch",
            "#lu": "lease_until",
            "#ua": "updated_at",
            "#st": "status",
            "#cr": "cancel_requested",
            "#cf": "claim_failure",
        },
        "ExpressionAttributeValues": {
            ":input": to_attr(input_text),
            ":gen": to_attr(generation),
            ":one": to_attr(1),
            ":lease": to_attr(lease_until),
            ":now": to_attr(now),
            ":epoch": to_attr(epoch),
            ":running": to_attr(Status.RUNNING.value),
        },
        "ReturnValues": "ALL_NEW",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def expire_items(table: str, items: list[dict[str, Any]], *, now: int) -> list[dict[str, Any]]:
    """PutItem requests, one per item, that write the ended generation's items
    again, as read, with `expires_at`: single records and batch items alike (a
    batch item stays one item). Idempotent; one write unit per KB. PutItem, not
    BatchWriteItem: no deployed role may call BatchWriteItem, which deletes
    too (docs/security.md)."""
    ttl = to_attr(now // 1000 + HISTORY_TTL_SECONDS)
    return [{"TableName": table, "Item": {**item, r.TTL_ATTRIBUTE: ttl}} for item in items]
