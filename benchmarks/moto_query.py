"""A patch to moto's DynamoDB Query for the metering server (see its docstring)."""

from __future__ import annotations

from typing import Any


def index_base_table_queries() -> None:
    """Make moto's base-table Query read only the queried partition.

    moto 5.2.5 answers every Query by listing and sorting all items of the
    table (`Table.all_items`) and then keeping those of the partition, so a
    Query's cost grows with the table (about 11 ms per history load at 2,000
    items, four times a PutItem), while on DynamoDB it depends only on what it
    reads. That emulator artifact would be charged to the engine's one Query
    per claim and not to the floor, which does not query. With this patch the
    same moto code runs on the partition's items only; results are identical
    (moto sorts them by range key afterwards either way). Index queries are left
    as they are. `--stock-moto` turns it off.
    """
    from moto.dynamodb.models.table import Table

    original = Table.query
    if getattr(original, "_bench_partitioned", False):
        return

    def query(
        self: Any,
        hash_key: Any,
        range_comparison: Any,
        range_objs: Any,
        limit: Any,
        exclusive_start_key: Any,
        scan_index_forward: Any,
        projection_expressions: Any,
        index_name: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        call = (
            hash_key,
            range_comparison,
            range_objs,
            limit,
            exclusive_start_key,
            scan_index_forward,
            projection_expressions,
            index_name,
            *args,
        )
        if index_name is not None or not self.range_key_attr or hash_key is None:
            return original(self, *call, **kwargs)
        partition = list(self.items.get(hash_key, {}).values())
        self.all_items = lambda: partition  # DynamoDB requests run one at a time
        try:
            return original(self, *call, **kwargs)
        finally:
            del self.all_items

    query._bench_partitioned = True  # type: ignore[attr-defined]
    Table.query = query  # type: ignore[method-assign]
