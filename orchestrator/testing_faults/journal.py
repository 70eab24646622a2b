"""The write and message journal of the fault layer (`orchestrator/testing_faults`).

With a ``journal`` file in the spec, each DynamoDB write that was applied, or
refused by its condition (``refused``: the error code), gets one JSON line:
the key (``pk``, ``sk``), the condition and update expressions, the epoch it
was conditioned on (``epoch_cond``), carried (``item_epoch``) or returned
(``new_epoch``, ``new_status``, ``new_owner``), and whether it resolved a step
(a TransactWriteItems line lists its items). So does each SQS send, receive,
delete and visibility change, with message ids and short receipt tags (a
DeleteMessageBatch call is one line listing its receipt tags and the refused
ones). The hooks add ``t0`` and ``t1``, just before the send and just after
the answer (the call took effect inside [t0, t1]), and ``pid``.

The chaos campaign reads it (tests/chaos/campaign.py) and its checks
(tests/chaos/checks.py) judge fencing and first-write-wins from it. Standard
library only.
"""

from __future__ import annotations

import zlib
from typing import Any

# The calls that get a journal line, and the errors journaled as a refusal.
_WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}
_REFUSALS = {"ConditionalCheckFailedException", "TransactionCanceledException"}
_SQS_OPS = {
    "sqs.SendMessage",
    "sqs.ReceiveMessage",
    "sqs.DeleteMessage",
    "sqs.DeleteMessageBatch",
    "sqs.ChangeMessageVisibility",
}


def _attr(value: Any) -> Any:
    """The plain value of a DynamoDB attribute value (S and N only)."""
    if isinstance(value, dict):
        if "S" in value:
            return value["S"]
        if "N" in value:
            return int(value["N"]) if value["N"].lstrip("-").isdigit() else float(value["N"])
    return None


def _receipt(handle: Any) -> str | None:
    """A short stable tag for a receipt handle (the handle itself is long)."""
    return f"{zlib.crc32(str(handle).encode()):08x}" if handle else None


def _sqs_entry(op: str, request: dict[str, Any], parsed: Any) -> dict[str, Any]:
    """Message traffic, for following one run's messages through a campaign."""
    entry: dict[str, Any] = {"op": op}
    if op == "sqs.SendMessage":
        entry.update(body=request.get("MessageBody"), delay=request.get("DelaySeconds"))
        entry["message"] = (parsed or {}).get("MessageId")
    elif op == "sqs.ReceiveMessage":
        entry["visibility"] = request.get("VisibilityTimeout")
        entry["messages"] = [
            {
                "id": m.get("MessageId"),
                "body": m.get("Body"),
                "receipt": _receipt(m.get("ReceiptHandle")),
                "receives": (m.get("Attributes") or {}).get("ApproximateReceiveCount"),
            }
            for m in (parsed or {}).get("Messages") or []
        ]
    elif op == "sqs.DeleteMessageBatch":
        # One entry per call: the receipt tags, and those the answer refused (with why).
        entries = request.get("Entries") or []
        tags = {e.get("Id"): _receipt(e.get("ReceiptHandle")) for e in entries}
        entry["receipts"] = list(tags.values())
        entry["failed"] = [
            {"receipt": tags.get(f.get("Id")), "code": f.get("Code")}
            for f in (parsed or {}).get("Failed") or []
        ]
    else:
        entry["receipt"] = _receipt(request.get("ReceiptHandle"))
        entry["visibility"] = request.get("VisibilityTimeout")
    return entry


def _journal_entry(op: str, request: dict[str, Any], parsed: Any) -> dict[str, Any]:
    if op in _SQS_OPS:
        return _sqs_entry(op, request, parsed)

    def one(req: dict[str, Any]) -> dict[str, Any]:
        key = req.get("Key") or req.get("Item") or {}
        values = req.get("ExpressionAttributeValues") or {}
        return {
            "pk": _attr(key.get("pk")),
            "sk": _attr(key.get("sk")),
            "cond": req.get("ConditionExpression"),
            "update": req.get("UpdateExpression"),
            "epoch_cond": _attr(values.get(":epoch")),
            "item_epoch": _attr((req.get("Item") or {}).get("epoch")),
            "now": _attr(values.get(":now")),
            "recorded_at": _attr((req.get("Item") or {}).get("recorded_at")),
            "resolved": bool((req.get("Item") or {}).get("resolved"))
            or "#res = :t" in (req.get("UpdateExpression") or ""),
        }

    if op.endswith("TransactWriteItems"):
        items = []
        for t in request.get("TransactItems", []):
            for kind, req in t.items():
                items.append({"kind": kind, **one(req)})
        return {"op": op, "items": items}
    entry = {"op": op, **one(request)}
    attrs = parsed.get("Attributes") if isinstance(parsed, dict) else None
    if isinstance(attrs, dict):
        entry["new_epoch"] = _attr(attrs.get("epoch"))
        entry["new_status"] = _attr(attrs.get("status"))
        entry["new_owner"] = _attr(attrs.get("owner"))
    return entry
