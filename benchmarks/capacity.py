"""DynamoDB capacity units from the rules AWS documents. Pure functions.

Why computed and not read from ``ConsumedCapacity``: moto returns fixed numbers
(1.0 for every write, 0.5 for every read) whatever the item size and whatever
the indexes did (checked in moto 5.2.5, ``moto/dynamodb/responses.py``,
``include_consumed_capacity``), so its ConsumedCapacity is not truthful.

The rules applied (Amazon DynamoDB Developer Guide, "DynamoDB item sizes and
formats", "read and write operations", "Global secondary indexes: writes",
"Condition expressions"):

- Item size: the sum over attributes of the UTF-8 length of the name plus the
  size of the value. String: UTF-8 bytes. Number: 1 byte per two significant
  digits plus 1. Binary: raw bytes. Boolean and null: 1. List and map: 3 bytes
  plus, per element, its size plus 1 (map elements also count their names).
  Sets: the sum of their elements.
- Writes: PutItem costs the larger of the old and the new item, UpdateItem the
  larger of the item before and after, DeleteItem the deleted item, each
  rounded up to the next 1 KB (at least 1 unit). A write whose condition fails
  still costs the existing item's size (1 unit if there is none) and writes no
  index. Transactions cost twice (applied here to the index writes they cause
  too, which is the conservative reading).
- Index writes (per global secondary index): an item is in the index when it
  has every key attribute of the index. Entering costs one index write, leaving
  costs one, staying with a changed index key costs two (delete + put), staying
  with the same key but a changed projected attribute costs one, anything else
  costs nothing. An index write is sized by the index entry (table keys, index
  keys and projected attributes), rounded up to 1 KB.
- Reads: 4 KB units; strongly consistent 1 unit, eventually consistent 0.5,
  transactional 2. A Query is charged on the total size of the items it read
  (before any filter), rounded up once; GetItem and each BatchGetItem key are
  rounded up one by one; a read that finds nothing still costs the minimum.
  Index queries are always eventually consistent and sized by index entries.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


# --- Sizes ---------------------------------------------------------------------------------
def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: 1 per two significant digits, plus 1.
    Leading and trailing zeros are not significant."""
    mantissa = text.strip().lstrip("+-").lower().split("e", 1)[0]
    significant = max(1, len(mantissa.replace(".", "").strip("0")))
    return math.ceil(significant / 2) + 1


def _binary_size(value: Any) -> int:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    try:
        return len(base64.b64decode(value, validate=True))
    except (ValueError, TypeError):
        return len(str(value).encode())


def value_size(value: dict[str, Any]) -> int:
    """Size of one attribute value in DynamoDB JSON ({"S": ...}, {"M": {...}}, ...)."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return number_size(v)
    if kind == "B":
        return _binary_size(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(number_size(n) for n in v)
    if kind == "BS":
        return sum(_binary_size(b) for b in v)
    if kind == "L":
        return 3 + sum(value_size(e) + 1 for e in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(e) + 1 for k, e in v.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(v) for name, v in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, *, consistent: bool, transactional: bool = False) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


# --- Table layout ----------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexDef:
    name: str
    hash_key: str
    range_key: str | None
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    non_key: tuple[str, ...] = ()
    local: bool = False  # an LSI (strongly consistent reads possible)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.hash_key,) + ((self.range_key,) if self.range_key else ())


@dataclass(frozen=True)
class TableDef:
    name: str
    hash_key: str
    range_key: str | None
    indexes: tuple[IndexDef, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.hash_key,) + ((self.range_key,) if self.range_key else ())

    def key_of(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.keys if k in item}

    def index(self, name: str) -> IndexDef | None:
        return next((ix for ix in self.indexes if ix.name == name), None)

    @classmethod
    def from_create_table(cls, req: dict[str, Any]) -> TableDef:
        def keys(schema: list[dict[str, str]]) -> tuple[str, str | None]:
            h = next(k["AttributeName"] for k in schema if k["KeyType"] == "HASH")
            r = next((k["AttributeName"] for k in schema if k["KeyType"] == "RANGE"), None)
            return h, r

        h, r = keys(req["KeySchema"])
        indexes = []
        for local, group in ((False, "GlobalSecondaryIndexes"), (True, "LocalSecondaryIndexes")):
            for spec in req.get(group, []):
                ih, ir = keys(spec["KeySchema"])
                proj = spec.get("Projection", {})
                indexes.append(
                    IndexDef(
                        name=spec["IndexName"],
                        hash_key=ih,
                        range_key=ir,
                        projection=proj.get("ProjectionType", "ALL"),
                        non_key=tuple(proj.get("NonKeyAttributes", [])),
                        local=local,
                    )
                )
        return cls(name=req["TableName"], hash_key=h, range_key=r, indexes=tuple(indexes))


def index_entry(
    table: TableDef, ix: IndexDef, item: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The item's entry in the index, or None when the item is not in it (sparse)."""
    if not item or any(k not in item for k in ix.keys):
        return None
    if ix.projection == "ALL":
        return dict(item)
    names = set(table.keys) | set(ix.keys)
    if ix.projection == "INCLUDE":
        names |= set(ix.non_key)
    return {k: v for k, v in item.items() if k in names}


# --- Costs -----------------------------------------------------------------------------------
@dataclass
class WriteCost:
    table_units: float = 0.0
    index_units: dict[str, float] = field(default_factory=dict)
    index_writes: dict[str, int] = field(default_factory=dict)

    @property
    def total_units(self) -> float:
        return self.table_units + sum(self.index_units.values())


def write_cost(
    table: TableDef,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    succeeded: bool,
    transactional: bool = False,
) -> WriteCost:
    """What one item's write costs, from the item before and after it."""
    factor = 2.0 if transactional else 1.0
    cost = WriteCost()
    if not succeeded:
        cost.table_units = factor * write_units(item_size(before))
        return cost
    cost.table_units = factor * write_units(max(item_size(before), item_size(after)))
    for ix in table.indexes:
        old = index_entry(table, ix, before)
        new = index_entry(table, ix, after)
        writes: list[int] = []  # sizes of the index writes
        if old is None and new is None:
            pass
        elif old is None:
            writes = [item_size(new)]
        elif new is None:
            writes = [item_size(old)]
        elif any(old.get(k) != new.get(k) for k in ix.keys):
            writes = [item_size(old), item_size(new)]
        elif old != new:
            writes = [max(item_size(old), item_size(new))]
        if writes:
            cost.index_writes[ix.name] = len(writes)
            cost.index_units[ix.name] = factor * sum(write_units(s) for s in writes)
    return cost


def query_read_units(
    table: TableDef,
    items: list[dict[str, Any]],
    *,
    index_name: str | None,
    consistent: bool,
) -> float:
    """A Query or Scan: the items it read, summed, rounded up once."""
    if index_name:
        ix = table.index(index_name)
        if ix is not None:
            items = [index_entry(table, ix, i) or i for i in items]
        consistent = consistent and ix is not None and ix.local
    return read_units(sum(item_size(i) for i in items), consistent=consistent)
