"""The write and message journal of the fault layer (`orchestrator/testing_faults`).

With a ``journal`` file in the spec, each DynamoDB write that was applied, or
refused by its condition (``refused``: the error code), gets one JSON line:
the key (``pk``, ``sk``) and what the request means, read from its
expressions with their placeholders resolved (attribute names through
``ExpressionAttributeNames``, values through ``ExpressionAttributeValues``),
so that rewording or renaming a placeholder changes nothing:

- ``record``: which record it writes: ``run``, ``step``, ``signal``,
  ``sweeper`` (a walk mark), ``worker`` (the registry) or ``other``;
- ``epoch_cond``: the epoch the condition requires (an ``epoch = value`` term
  of its top-level AND), or None;
- ``claim``: the update increments ``epoch`` (the fencing token), which only
  a claim does;
- ``sets_status``: the status the update assigns, or None;
- ``resolved``: it resolves a step (a put of a resolved record, or an update
  that sets ``resolved``);
- ``touches``: the attributes an update assigns or removes, sorted (None for
  a put or a delete);
- ``pointers``: the large-value pointers (``@s3:sha256:<hex>:<bytes>``,
  `orchestrator/payloads.py`) anywhere in the request, when it carries any;
- ``item_epoch`` and ``item_attempt`` (carried by a put), ``expires`` (a put
  carrying the TTL: an ended generation's record written again as read),
  ``new_epoch``, ``new_status``,
  ``new_owner`` (returned), ``now``, ``recorded_at``, and the expression texts
  (``cond``, ``update``) for people to read.

A TransactWriteItems line lists its items. So does each SQS send, receive,
delete and visibility change, with message ids and short receipt tags (a
DeleteMessageBatch call is one line listing its receipt tags and the refused
ones). An S3 PutObject that was stored gets a line with its ``key`` and
``bytes``. The hooks add ``t0`` and ``t1``, just before the send and just
after the answer (the call took effect inside [t0, t1]), and ``pid``.

The chaos campaign reads it (tests/chaos/campaign.py) and its checks
(tests/chaos/checks.py) judge fencing, first-write-wins and "the object before
the pointer" from it. Standard library only (and the pointer's prefix).
"""

from __future__ import annotations

import contextlib
import json
import re
import zlib
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import resources as r
from ..payloads import POINTER_PREFIX

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
_S3_OPS = {"s3.PutObject"}
_POINTER = re.compile(re.escape(POINTER_PREFIX) + r"[0-9a-f]{64}:[0-9]{1,12}")
_VALUE_KEY = re.compile(re.escape(r.VALUE_KEY_PREFIX) + r"[0-9a-f]{64}")


def pointers_in(text: str) -> list[str]:
    """The large-value pointers in `text`, each once, sorted."""
    return sorted(set(_POINTER.findall(text)))


def _attr(value: Any) -> Any:
    """The plain value of a DynamoDB attribute value (S and N only)."""
    if isinstance(value, dict):
        if "S" in value:
            return value["S"]
        if "N" in value:
            return int(value["N"]) if value["N"].lstrip("-").isdigit() else float(value["N"])
    return None


# --- what an expression means --------------------------------------------------------------
_NAME = re.compile(r"#[A-Za-z0-9_]+")
_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b", re.IGNORECASE)


def _resolve(expr: str, names: dict[str, str]) -> str:
    """The expression with each #placeholder replaced by its attribute name."""
    return _NAME.sub(lambda m: names.get(m.group(0), m.group(0)), expr)


def _top_level(text: str, sep: str) -> list[str]:
    """`text` split at `sep` (a regex) outside parentheses, parts stripped."""
    parts, depth, start = [], 0, 0
    pattern = re.compile(sep, re.IGNORECASE)
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            m = pattern.match(text, i)
            if m:
                parts.append(text[start:i].strip())
                i = start = m.end()
                continue
        i += 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _unwrap(term: str) -> str:
    """`term` without parentheses that enclose all of it."""
    while term.startswith("(") and term.endswith(")"):
        depth = 0
        for i, ch in enumerate(term):
            depth += (ch == "(") - (ch == ")")
            if depth == 0 and i < len(term) - 1:
                return term  # the first parenthesis closes before the end
        term = term[1:-1].strip()
    return term


def _required(condition: str, attribute: str, values: dict[str, Any]) -> Any:
    """The value a condition requires `attribute` to equal (a term `attribute =
    :v` of its top-level AND), or None. `condition` has its names resolved."""
    for term in _top_level(_unwrap(condition), r"\s+AND\s+"):
        sides = [s.strip() for s in _top_level(_unwrap(term), r"=")]
        if len(sides) != 2 or "<" in term or ">" in term:
            continue
        for a, b in (sides, sides[::-1]):
            if a == attribute and b.startswith(":"):
                return _attr(values.get(b))
    return None


def _updates(update: str) -> dict[str, list[tuple[str, str]]]:
    """The clauses of an update expression (names resolved): {"SET": [(path,
    value)], "ADD": [(path, value)], "REMOVE": [(path, "")], ...}."""
    out: dict[str, list[tuple[str, str]]] = {}
    pieces = _CLAUSE.split(update)
    for keyword, body in zip(pieces[1::2], pieces[2::2], strict=False):
        kw = keyword.upper()
        for action in _top_level(body, ","):
            if kw == "SET":
                path, _, value = action.partition("=")
            else:
                path, _, value = action.partition(" ")
            out.setdefault(kw, []).append((path.strip(), value.strip()))
    return out


def _meaning(req: dict[str, Any]) -> dict[str, Any]:
    names = req.get("ExpressionAttributeNames") or {}
    values = req.get("ExpressionAttributeValues") or {}
    condition = _resolve(req.get("ConditionExpression") or "", names)
    clauses = _updates(_resolve(req.get("UpdateExpression") or "", names))
    sets = dict(clauses.get("SET", []))
    increment = re.fullmatch(
        r"(?:epoch|if_not_exists\(\s*epoch\s*,\s*:\w+\s*\))\s*\+\s*(:\w+)", sets.get("epoch", "")
    )
    added = dict(clauses.get("ADD", [])).get("epoch")
    claim = bool(
        (increment and (_attr(values.get(increment.group(1))) or 0) > 0)
        or (added and (_attr(values.get(added)) or 0) > 0)
    )
    status = sets.get("status", "")
    item = req.get("Item") or {}
    resolved_value = sets.get("resolved", "")
    batched = _batched_ops(item, sets.get("last_batch", ""), values)
    return {
        **({"batched_ops": batched} if batched else {}),
        "epoch_cond": _required(condition, "epoch", values),
        "claim": claim,
        "sets_status": _attr(values.get(status)) if status.startswith(":") else None,
        "resolved": bool(item.get("resolved"))
        or (resolved_value.startswith(":") and _truthy(values.get(resolved_value))),
        "touches": sorted({path for c in clauses.values() for path, _ in c})
        if req.get("UpdateExpression")
        else None,
    }


def _batched_ops(item: dict[str, Any], last_batch: str, values: dict[str, Any]) -> list[str]:
    """The operation ids whose step results a write records in a batch: a batch
    item's entries, or the `last_batch` a run's terminal write carries (both
    JSON lists of entries whose first element is the op id, `store/codec.py`)."""
    with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
        if _attr(item.get("kind")) == "batch":
            return [e[0] for e in json.loads(_attr(item["entries"]))]
        if last_batch.startswith(":"):
            return [e[0] for e in json.loads(_attr(values[last_batch]))["entries"]]
    return []


def _truthy(value: Any) -> bool:
    return isinstance(value, dict) and bool(value.get("BOOL"))


def _record(pk: Any, sk: Any) -> str:
    pk, sk = str(pk or ""), str(sk or "")
    if pk.startswith(r.RUN_PK_PREFIX):
        if sk == r.RUN_SK:
            return "run"
        if sk.startswith(r.STEP_SK_PREFIX):
            return "step"
        if sk.startswith(r.SIGNAL_SK_PREFIX):
            return "signal"
    if pk == r.SWEEPER_PK:
        return "sweeper"
    if pk == r.REGISTRY_PK:
        return "worker"
    return "other"


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


def _s3_entry(op: str, request: dict[str, Any]) -> dict[str, Any]:
    """An object written: its key (a value's, found in the URL whatever the
    addressing style) and its size."""
    path = unquote(urlsplit(str(request.get("url", ""))).path)
    m = _VALUE_KEY.search(path)
    return {"op": op, "key": m.group(0) if m else path, "bytes": request.get("bytes")}


def _journal_entry(op: str, request: dict[str, Any], parsed: Any) -> dict[str, Any]:
    if op in _SQS_OPS:
        return _sqs_entry(op, request, parsed)
    if op in _S3_OPS:
        return _s3_entry(op, request)

    def one(req: dict[str, Any]) -> dict[str, Any]:
        key = req.get("Key") or req.get("Item") or {}
        values = req.get("ExpressionAttributeValues") or {}
        pk, sk = _attr(key.get(r.PK)), _attr(key.get(r.SK))
        pointers = pointers_in(json.dumps(req))
        return {
            "pk": pk,
            "sk": sk,
            "record": _record(pk, sk),
            **_meaning(req),
            "cond": req.get("ConditionExpression"),
            "update": req.get("UpdateExpression"),
            "item_epoch": _attr((req.get("Item") or {}).get("epoch")),
            "now": _attr(values.get(":now")),
            "recorded_at": _attr((req.get("Item") or {}).get("recorded_at")),
            "item_attempt": _attr((req.get("Item") or {}).get("run_attempt")) or 0,
            # A put carrying the TTL: an ended generation's record written again,
            # as read, so that it expires (orchestrator/store/generations.py).
            **({"expires": True} if r.TTL_ATTRIBUTE in (req.get("Item") or {}) else {}),
            **({"pointers": pointers} if pointers else {}),
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
