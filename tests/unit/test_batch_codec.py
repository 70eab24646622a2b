"""The encoding of batched checkpoints (orchestrator/store/codec.py): a batch
item and a run's last batch decode to the records that were written, times
included; an item of the first format (absolute times, no "base") still reads."""

from __future__ import annotations

import json

from orchestrator.model import StepKind, StepRecord
from orchestrator.store.codec import (
    batch_entry_bytes,
    batch_item,
    from_item,
    last_batch_text,
    records_from_items,
    records_from_last_batch,
    to_item,
    with_last_batch,
)

NOW = 1_764_000_000_000


def _rec(op: str, *, recorded_at: int, started_at: int | None, result: str) -> StepRecord:
    return StepRecord(
        op_id=op,
        name=f"s{op}",
        kind=StepKind.STEP,
        epoch=3,
        recorded_at=recorded_at,
        result=result,
        started_at=started_at,
        resolved=True,
    )


RECORDS = [
    _rec("0", recorded_at=NOW - 900, started_at=NOW - 950, result='"a"'),
    _rec("1", recorded_at=NOW - 10, started_at=None, result="[1, 2]"),
    _rec("2.t1.0", recorded_at=NOW, started_at=NOW, result="null"),
]


def test_a_batch_item_reads_back_as_the_records_written() -> None:
    item = batch_item("r1", epoch=3, now=NOW, records=RECORDS)
    assert records_from_items([item]) == RECORDS
    # Times are offsets: no 13-digit stamp in the entries.
    assert str(NOW - 900) not in from_item(item)["entries"]


def test_an_item_of_the_first_format_still_reads() -> None:
    entries = [[r.op_id, r.name, r.recorded_at, r.started_at, r.result] for r in RECORDS]
    item = to_item(
        {"pk": "RUN#r1", "sk": "STEP#000000#B", "kind": "batch", "epoch": 3, "recorded_at": NOW,
         "entries": json.dumps(entries)}
    )  # fmt: skip
    assert records_from_items([item]) == RECORDS


def test_a_last_batch_belongs_to_its_generation_and_joins_in_id_order() -> None:
    text = last_batch_text(RECORDS[1:], epoch=3, generation=2, now=NOW)
    assert records_from_last_batch(text, 2) == RECORDS[1:]
    assert records_from_last_batch(text, 3) == []  # a later generation's history
    assert records_from_last_batch(None, 2) == []
    joined = with_last_batch([RECORDS[0]], text, 2)
    assert [r.op_id for r in joined] == ["0", "1", "2.t1.0"]


def test_the_buffer_bound_counts_at_least_what_an_entry_takes() -> None:
    item = batch_item("r1", epoch=3, now=NOW, records=RECORDS)
    written = len(from_item(item)["entries"].encode())
    assert sum(batch_entry_bytes(r) for r in RECORDS) >= written
