"""A run's collections, read a page at a time: its records (`GET .../steps`),
its inbox (`GET .../signals`) and its whole history (`GET .../history`).

A collection is a list of sections read in order: a Query over one key range
of the run's partition, or the records the run item carries (a finished run's
last batch). A `Position` names where a page stopped: the section, the sort key
of the item read last, and how many of that item's records were returned when
it was not returned whole (a batch item expands to many records, each of which
may hold a large value). Reads are lazy and `Limit`ed to about a page, and a
page makes at most `MAX_PAGE_QUERIES` Queries: a page whose items a filter or an
earlier attempt left out may come back short, with a position to go on from.
How many records a page holds by bytes is the API's to decide
(`orchestrator/api/pages.py`): the store yields them one at a time.

Pages are read in key order: records by operation id (the views order each
page; a client that wants one order over every page orders them again), signals
by name, then arrival.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .. import resources as r
from ..errors import BadInputError
from ..model import Run, Signal, StepRecord, generation_scope
from . import record_requests as rq
from .codec import (
    records_from_items,
    records_from_last_batch,
    run_pk,
    signal_from_item,
    step_sk,
    to_attr,
)

T = TypeVar("T")

_TOP = "\U0010ffff"  # above every character: a prefix's range is [prefix, prefix + _TOP]
_SIGNAL_KEYS = (r.SIGNAL_SK_PREFIX, r.SIGNAL_SK_PREFIX + _TOP)

MAX_PAGE_QUERIES = 10  # Queries one page may make (each reads at most 1 MB)


@dataclass(frozen=True)
class Position:
    """Where a page stopped. `key` None: at the section's start. `taken` None:
    the item at `key` was returned whole (go on after it); a number: that many
    of its records were (go on with the next one)."""

    section: int = 0
    key: str | None = None
    taken: int | None = None


@dataclass(frozen=True)
class Section(Generic[T]):
    """A Query (`query`, its items expanded to records by `expand`, `Limit`ed to
    the page's size unless `filtered`: a filter's page is a read's, not a
    count's), or records held by the run item (`records`, no query). A position
    in a query section names a sort key within `keys`: a cursor naming another
    is refused (DynamoDB would refuse a start key outside the query's range, and
    an item outside it is not the section's)."""

    expand: Callable[[dict[str, Any]], list[T]]
    query: dict[str, Any] | None = None
    records: tuple[T, ...] = ()
    filtered: bool = False
    keys: tuple[str, str] = ("", "")  # the query's sort keys lie between these (inclusive)


Read = Iterator[tuple[Position, T | None]]


def read(
    ddb: Any,
    table: str,
    workflow_id: str,
    sections: list[Section[T]],
    start: Position,
    *,
    batch: int,
) -> Read[T]:
    """The records from `start` on, each with the position just after it. A
    `(position, None)` means: stop here, go on from `position` (this page made
    its Queries)."""
    queries = 0
    for index in range(start.section, len(sections)):
        section = sections[index]
        resume = start if index == start.section else Position(index)
        if section.query is None:
            done = resume.taken or 0
            for i in range(done, len(section.records)):
                yield Position(index, "", i + 1), section.records[i]
            continue
        req = dict(section.query)
        if not section.filtered:
            req["Limit"] = batch
        if resume.key is not None and not section.keys[0] <= resume.key <= section.keys[1]:
            raise BadInputError("cursor is not one this API returned for this run")
        if resume.key is not None:
            if resume.taken is not None:  # the rest of a batch item
                key = {r.PK: to_attr(run_pk(workflow_id)), r.SK: to_attr(resume.key)}
                found = ddb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
                recs = section.expand(found) if found else []
                for i in range(resume.taken, len(recs)):
                    yield (
                        Position(index, resume.key, None if i + 1 == len(recs) else i + 1),
                        recs[i],
                    )
            req["ExclusiveStartKey"] = {
                r.PK: to_attr(run_pk(workflow_id)),
                r.SK: to_attr(resume.key),
            }
        while True:
            if queries == MAX_PAGE_QUERIES:
                last = req.get("ExclusiveStartKey")
                yield Position(index, last[r.SK]["S"] if last else None), None
                return
            resp = ddb.query(**req)
            queries += 1
            for item in resp.get("Items", []):
                key_text = item[r.SK]["S"]
                recs = section.expand(item)
                for i, rec in enumerate(recs):
                    yield Position(index, key_text, None if i + 1 == len(recs) else i + 1), rec
            if "LastEvaluatedKey" not in resp:
                break
            req["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def step_sections(table: str, run: Run, generation: int) -> list[Section[StepRecord]]:
    """A generation's records: its items, then the last batch its run item
    carries. A redrive reopens the current generation only: an ended one's
    records all stay what they were."""
    attempt = run.redrive_count if generation == run.generation else 0

    def expand(item: dict[str, Any]) -> list[StepRecord]:
        return records_from_items([item], attempt=attempt)

    last = tuple(records_from_last_batch(run.last_batch, generation))
    if generation == 0:
        keys = (r.STEP_SK_PREFIX, r.STEP_SK_PREFIX + "~")  # the Query's BETWEEN
    else:
        prefix = step_sk(generation_scope(generation)) + "."
        keys = (prefix, prefix + _TOP)
    return [
        Section(expand, query=rq.query_history(table, run.id, generation), keys=keys),
        Section(expand, records=last),
    ]


def _one_signal(item: dict[str, Any]) -> list[Signal]:
    return [signal_from_item(item)]


def inbox_sections(table: str, workflow_id: str) -> list[Section[Signal]]:
    """The signals no wait has consumed."""
    req = {
        **rq.query_inbox(table, workflow_id, ""),
        "ExpressionAttributeValues": {
            ":pk": to_attr(run_pk(workflow_id)),
            ":prefix": to_attr(r.SIGNAL_SK_PREFIX),
        },
    }
    return [Section(_one_signal, query=req, filtered=True, keys=_SIGNAL_KEYS)]


def signal_sections(table: str, workflow_id: str) -> list[Section[Signal]]:
    """Every signal the run got, consumed or not (until it expired)."""
    req = {
        "TableName": table,
        "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
        "ExpressionAttributeNames": {"#pk": r.PK, "#sk": r.SK},
        "ExpressionAttributeValues": {
            ":pk": to_attr(run_pk(workflow_id)),
            ":prefix": to_attr(r.SIGNAL_SK_PREFIX),
        },
        "ConsistentRead": True,
    }
    return [Section(_one_signal, query=req, keys=_SIGNAL_KEYS)]


class _PageRequests:
    """The paged reads of Store. The attributes and methods below are Store's."""

    _ddb: Any
    _table: str

    if TYPE_CHECKING:

        def get(self, workflow_id: str) -> Run: ...

    def read_steps(
        self, workflow_id: str, generation: int | None, start: Position, *, batch: int
    ) -> tuple[Run, Read[StepRecord]]:
        """The run, and its records from `start` (the current generation's, or
        `generation`'s)."""
        run = self.get(workflow_id)  # unknown id: NotFoundError
        gen = run.generation if generation is None else generation
        sections = step_sections(self._table, run, gen)
        return run, read(self._ddb, self._table, workflow_id, sections, start, batch=batch)

    def read_inbox(
        self, workflow_id: str, start: Position, *, batch: int
    ) -> tuple[Run, Read[Signal]]:
        """The run, and the signals it has not consumed from `start`."""
        run = self.get(workflow_id)
        sections = inbox_sections(self._table, workflow_id)
        return run, read(self._ddb, self._table, workflow_id, sections, start, batch=batch)

    def read_history(
        self, workflow_id: str, start: Position, *, batch: int
    ) -> tuple[Run, Read[StepRecord | Signal]]:
        """The run, and from `start` its current generation's records, then every
        signal it got."""
        run = self.get(workflow_id)
        sections: list[Section[Any]] = [
            *step_sections(self._table, run, run.generation),
            *signal_sections(self._table, workflow_id),
        ]
        return run, read(self._ddb, self._table, workflow_id, sections, start, batch=batch)


__all__ = ["MAX_PAGE_QUERIES", "Position", "Read", "Section", "read"]
