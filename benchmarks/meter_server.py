"""The benchmark's moto server, run in its own process, with a capacity meter.

    python -m benchmarks.meter_server --port-file PATH

It is `orchestrator.local.aws.MotoServer` with one addition inside the lock
that already serializes DynamoDB requests (one at a time, response produced
inside the lock, SQS and Scheduler concurrent): for every DynamoDB request it
reads the touched items straight from moto's backend just before and just
after the request runs, and charges the request by the rules in
`benchmarks.capacity`. Because the before and after images are taken under the
same lock as the write itself, they are exactly the states the write moved
between: no other request can slip in between, and no request is added to the
emulator's traffic (the images come from memory, not from extra calls).

S3 requests are counted by operation (`benchmarks.meter_s3` names them), as SQS
and Scheduler requests are. The DynamoDB capacity charged to the items of runs
(partition ``WF#<id>``: the run, its steps, its signals) is also kept apart
(``run_wru``, ``run_rru``) from the workers' and the sweeper's own bookkeeping,
which is per process and time, not per run.

Every request carries an ``X-Bench-Role`` header (set by the botocore hook in
`benchmarks.hooks`) naming the process that sent it, so charges are kept per
role and operation. The meter also notes when runs are created, when each step
record lands and when runs finish: the harness waits on that instead of
polling the API (which would add calls to what is measured).

Control endpoints (not AWS calls, not charged): ``GET /_bench/meter``,
``GET /_bench/progress``, ``POST /_bench/reset``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from .capacity import TableDef, item_size, query_read_units, read_units, write_cost
from .meter_s3 import s3_operation, signing_service
from .moto_query import index_base_table_queries

ROLE_HEADER = "X-Bench-Role"
_REGION = re.compile(r"Credential=[^/]+/\d+/([^/]+)/")
TERMINAL = {"completed", "failed", "cancelled"}
WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
READ_OPS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}


def _new_op() -> dict[str, Any]:
    return {
        "requests": 0,
        "ok": 0,
        "conditional_failed": 0,
        "other_errors": 0,
        "wru_table": 0.0,
        "wru_index": 0.0,
        "rru": 0.0,
        "run_wru": 0.0,  # of which on runs' items (partition WF#<id>)
        "run_rru": 0.0,
        "index_writes": defaultdict(int),
        "purposes": defaultdict(int),
        "emulator_s": 0.0,  # time moto spent on these requests (inside the lock)
        "meter_s": 0.0,  # time the meter spent on them
    }


class Meter:
    """What the DynamoDB traffic cost, per role and operation, and run progress."""

    def __init__(self) -> None:
        self.tables: dict[str, TableDef] = {}
        self.reset()

    def reset(self) -> None:
        self.ops: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(_new_op))
        self.other: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.created: dict[str, float] = {}
        self.done: dict[str, tuple[float, str]] = {}
        # Runs a workflow started (a parent_id on the record): the phase's own
        # runs are the others, and its end is when those have ended.
        self.children: set[str] = set()
        self.waiting: set[str] = set()
        self.steps: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
        self.errors: list[str] = []
        self.started = time.time()
        self.cpu0 = time.process_time()

    def snapshot(self) -> dict[str, Any]:
        return {
            "ops": self.ops,
            "other": self.other,
            "created": self.created,
            "done": self.done,
            "steps": self.steps,
            "errors": self.errors[:50],
            "since": self.started,
            "cpu_s": time.process_time() - self.cpu0,
        }

    def progress(self) -> dict[str, Any]:
        failed = sum(1 for _, st in self.done.values() if st != "completed")
        return {
            "created": len(self.created),
            "done": len(self.done.keys() - self.children),
            "children_done": len(self.done.keys() & self.children),
            "failed": failed,
            "waiting": sorted(self.waiting),
            "step_records": sum(len(v) for v in self.steps.values()),
        }


def _value(attr: dict[str, Any] | None) -> Any:
    """The plain value of one DynamoDB JSON attribute ({"S": "x"} -> "x")."""
    if not attr:
        return None
    return next(iter(attr.values()))


def _role(environ: dict[str, Any]) -> str:
    return str(environ.get("HTTP_X_BENCH_ROLE", "unattributed"))


def _region(environ: dict[str, Any]) -> str:
    m = _REGION.search(environ.get("HTTP_AUTHORIZATION", ""))
    return m.group(1) if m else "us-east-1"


def _scheduler_op(method: str, path: str) -> str:
    group = path.startswith("/schedule-groups")
    if not group and path.rstrip("/") == "/schedules":
        return "ListSchedules"
    verb = {"POST": "Create", "GET": "Get", "PUT": "Update", "DELETE": "Delete"}.get(method, method)
    return verb + ("ScheduleGroup" if group else "Schedule")


def _purpose(
    op: str,
    pk: str,
    sk: str,
    req: dict[str, Any],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    ok: bool,
) -> str:
    """A short name for what a request did, from the items it moved between."""

    def v(item: dict[str, Any] | None, name: str) -> Any:
        return _value((item or {}).get(name))

    refused = "" if ok else " (refused)"
    if not pk.startswith("WF#"):  # not a run's partition: name it by its partition
        if pk == "WORKERS":
            return "worker registry" + refused
        if pk == "SWEEPER":
            return "sweeper mark" + refused
        return f"{op} {pk.split('#', 1)[0]}" + refused
    kind = "run" if sk == "RUN" else sk.split("#", 1)[0].lower() if sk else "item"
    if op == "PutItem":
        if kind == "step":
            return f"record {v(req.get('Item'), 'kind') or 'step'}" + refused
        if kind == "run":
            return "start" + refused
        if kind == "sig":
            return "store signal" + refused
        return f"put {kind}" + refused
    if op == "DeleteItem":
        return f"delete {kind}" + refused
    if op != "UpdateItem":
        return op + refused
    if kind == "sig":
        return "consume signal" + refused
    if kind == "step":
        return "resolve wait timeout" + refused
    if kind != "run":
        return f"update {kind}" + refused
    update = str(req.get("UpdateExpression", ""))
    if not ok:
        if "#ep + :one" in update:
            return "claim (refused)"
        if update.strip() == "SET #lu = :lease":
            return "heartbeat (refused)"
        if "ADD #dc" in update:
            return "rearm (refused)"
        return "owner write (refused)"
    b_st, a_st = v(before, "status"), v(after, "status")
    if v(before, "epoch") != v(after, "epoch"):
        return "claim"
    if a_st in TERMINAL and b_st not in TERMINAL:
        return f"finish ({a_st})"
    if a_st in ("sleeping", "waiting") and b_st == "running":
        return f"park ({a_st})"
    if v(before, "signal_seq") != v(after, "signal_seq"):
        return "signal the run" + (" (wake)" if a_st != b_st else "")
    if v(before, "due_at") is None and v(after, "due_at") is not None and b_st == a_st:
        return "promote into by_due (sweeper)"
    if v(before, "dispatches") != v(after, "dispatches"):
        return "rearm (sweeper)"
    if v(after, "lease_until") == "0":
        return "release"
    if v(before, "lease_until") != v(after, "lease_until"):
        return "heartbeat"
    return "update run"


def _query_purpose(req: dict[str, Any]) -> str:
    if req.get("IndexName"):
        return f"query index {req['IndexName']}"
    values = req.get("ExpressionAttributeValues", {})
    prefix = str(_value(values.get(":prefix") or values.get(":lo")) or "")
    if prefix.startswith("STEP#"):
        return "load history"
    if prefix.startswith("SIG#"):
        return "read inbox"
    pk = str(_value(req.get("ExpressionAttributeValues", {}).get(":pk")) or "")
    return "query " + pk.split("#", 1)[0] if pk and not pk.startswith("WF#") else "query"


class MeteredDynamoDB:
    """WSGI middleware: serializes DynamoDB (as orchestrator.local.aws does) and
    meters each request inside the lock."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.meter = Meter()

    # --- WSGI ----------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/"):
            return self._control(environ, start_response, path)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        role = _role(environ)
        if not target.startswith("DynamoDB"):
            if path.startswith("/moto-api/reset"):
                with self._lock:
                    self.meter.tables.clear()
            elif target:
                op = target.rsplit(".", 1)[-1]
                with self._lock:
                    self.meter.other[role][f"sqs.{op}" if "SQS" in target else op] += 1
            elif not path.startswith("/moto-api"):
                if signing_service(environ) == "s3":
                    op = "s3." + s3_operation(environ)
                else:
                    op = "scheduler." + _scheduler_op(environ.get("REQUEST_METHOD", "GET"), path)
                with self._lock:
                    self.meter.other[role][op] += 1
            return self._app(environ, start_response)  # type: ignore[no-any-return]
        op = target.rsplit(".", 1)[-1]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        captured: list[str] = []

        def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
            captured.append(status)
            return start_response(status, headers, exc_info)

        with self._lock:
            t0 = time.perf_counter()
            try:
                req = json.loads(body or b"{}")
                plan = self._before(op, req, environ)
            except Exception as e:  # the meter must never break a request
                req, plan = {}, None
                self.meter.errors.append(f"before {op}: {e!r}")
            t1 = time.perf_counter()
            result = self._app(environ, capture)
            try:
                out = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close:
                    close()
            t2 = time.perf_counter()
            try:
                status = int(captured[0].split()[0]) if captured else 500
                self._after(op, req, plan, status, out, role, environ)
            except Exception as e:
                self.meter.errors.append(f"after {op}: {e!r}")
            if op in WRITE_OPS or op in READ_OPS:
                stat = self.meter.ops[role][op]
                stat["emulator_s"] += t2 - t1
                stat["meter_s"] += (t1 - t0) + (time.perf_counter() - t2)
        return [out]

    def _control(self, environ: dict[str, Any], start_response: Any, path: str) -> list[bytes]:
        with self._lock:
            if path.startswith("/_bench/reset"):
                self.meter.reset()
                data: Any = {"ok": True}
            elif path.startswith("/_bench/progress"):
                data = self.meter.progress()
            else:
                data = self.meter.snapshot()
            out = json.dumps(data).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))]
        )
        return [out]

    # --- items from the backend ------------------------------------------------------------
    def _backend(self, environ: dict[str, Any]) -> Any:
        return dynamodb_backends[DEFAULT_ACCOUNT_ID][_region(environ)]

    def _get(
        self, environ: dict[str, Any], table: str, key: dict[str, Any]
    ) -> dict[str, Any] | None:
        try:
            item = self._backend(environ).get_item(table, key)
        except Exception:
            return None
        if item is None:
            return None
        return dict(item.to_json()["Attributes"])

    def _touched(self, op: str, req: dict[str, Any]) -> list[tuple[str, dict[str, Any], str, Any]]:
        """(table, key, action, request part) for every item a write touches."""
        out: list[tuple[str, dict[str, Any], str, Any]] = []

        def key_of(table: str, item: dict[str, Any]) -> dict[str, Any]:
            t = self.meter.tables.get(table)
            return t.key_of(item) if t else item

        if op == "PutItem":
            out.append((req["TableName"], key_of(req["TableName"], req["Item"]), "Put", req))
        elif op in ("UpdateItem", "DeleteItem"):
            out.append((req["TableName"], req["Key"], op.removesuffix("Item"), req))
        elif op == "TransactWriteItems":
            for entry in req.get("TransactItems", []):
                ((action, spec),) = entry.items()
                key = spec.get("Key") or key_of(spec["TableName"], spec.get("Item", {}))
                out.append((spec["TableName"], key, action, spec))
        elif op == "BatchWriteItem":
            for table, writes in req.get("RequestItems", {}).items():
                for w in writes:
                    if "PutRequest" in w:
                        item = w["PutRequest"]["Item"]
                        out.append((table, key_of(table, item), "Put", {"Item": item}))
                    else:
                        out.append((table, w["DeleteRequest"]["Key"], "Delete", {}))
        return out

    def _before(self, op: str, req: dict[str, Any], environ: dict[str, Any]) -> Any:
        if op == "CreateTable":
            return TableDef.from_create_table(req)
        if op in WRITE_OPS:
            return [
                (table, key, action, spec, self._get(environ, table, key))
                for table, key, action, spec in self._touched(op, req)
            ]
        if op == "Query" and req.get("FilterExpression"):
            return self._unfiltered_items(req, environ)
        return None

    def _unfiltered_items(self, req: dict[str, Any], environ: dict[str, Any]) -> list[Any]:
        """A filtered Query is charged for what it read before the filter: run it
        once more without the filter, inside the lock, uncharged."""
        q = {k: v for k, v in req.items() if k not in ("FilterExpression", "Select")}
        used = " ".join(
            str(q.get(k, "")) for k in ("KeyConditionExpression", "ProjectionExpression")
        )
        if "ExpressionAttributeNames" in q:
            q["ExpressionAttributeNames"] = {
                k: v for k, v in q["ExpressionAttributeNames"].items() if k in used
            }
        if "ExpressionAttributeValues" in q:
            q["ExpressionAttributeValues"] = {
                k: v for k, v in q["ExpressionAttributeValues"].items() if k in used
            }
        body = json.dumps(q).encode()
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        env["CONTENT_LENGTH"] = str(len(body))
        result = self._app(env, lambda *a, **k: None)
        data = json.loads(b"".join(result) or b"{}")
        return list(data.get("Items", []))

    # --- charging ----------------------------------------------------------------------------
    def _after(
        self,
        op: str,
        req: dict[str, Any],
        plan: Any,
        status: int,
        out: bytes,
        role: str,
        environ: dict[str, Any],
    ) -> None:
        m = self.meter
        now = time.time()
        ok = status < 300
        resp: dict[str, Any] = {}
        if out:
            try:
                resp = json.loads(out)
            except ValueError:
                resp = {}
        err = str(resp.get("__type", "")) if not ok else ""
        cond_failed = "ConditionalCheckFailed" in err or "TransactionCanceled" in err
        if op == "CreateTable":
            if ok and isinstance(plan, TableDef):
                m.tables[plan.name] = plan
            return
        if op == "DeleteTable":
            m.tables.pop(req.get("TableName", ""), None)
            return
        if op not in WRITE_OPS and op not in READ_OPS:
            return
        stat = m.ops[role][op]
        stat["requests"] += 1
        if ok:
            stat["ok"] += 1
        elif cond_failed:
            stat["conditional_failed"] += 1
        else:
            stat["other_errors"] += 1
            return  # validation and server errors are not charged
        if op in WRITE_OPS:
            self._charge_write(op, req, plan or [], ok, stat, environ, now)
        else:
            self._charge_read(op, req, resp, plan, stat)

    def _charge_write(
        self,
        op: str,
        req: dict[str, Any],
        plan: list[tuple[str, dict[str, Any], str, Any, dict[str, Any] | None]],
        ok: bool,
        stat: dict[str, Any],
        environ: dict[str, Any],
        now: float,
    ) -> None:
        transactional = op == "TransactWriteItems"
        purposes = []
        for table_name, key, action, spec, before in plan:
            table = self.meter.tables.get(table_name) or TableDef(table_name, "pk", "sk")
            after = self._get(environ, table_name, key) if ok else before
            if action == "ConditionCheck":
                cost = write_cost(table, before, before, succeeded=False, transactional=True)
            else:
                cost = write_cost(table, before, after, succeeded=ok, transactional=transactional)
            stat["wru_table"] += cost.table_units
            for ix, units in cost.index_units.items():
                stat["wru_index"] += units
                stat["index_writes"][ix] += cost.index_writes[ix]
            sk = str(_value(key.get(table.range_key or "", {})) or "")
            pk = str(_value(key.get(table.hash_key, {})) or "")
            if pk.startswith("WF#"):
                stat["run_wru"] += cost.table_units + sum(cost.index_units.values())
            purposes.append(_purpose(f"{action}Item", pk, sk, spec, before, after, ok))
            if ok:
                self._note_progress(pk, sk, before, after, now)
        if transactional:
            stat["purposes"]["transaction: " + " + ".join(purposes)] += 1
        else:
            for p in purposes:
                stat["purposes"][p] += 1

    def _note_progress(
        self,
        pk: str,
        sk: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        now: float,
    ) -> None:
        m = self.meter
        wid = pk.removeprefix("WF#")
        if sk == "RUN":
            status = _value((after or {}).get("status"))
            old = _value((before or {}).get("status"))
            if before is None and after is not None:
                m.created[wid] = now
                if _value(after.get("parent_id")):
                    m.children.add(wid)
            if status in TERMINAL and old not in TERMINAL:
                m.done[wid] = (now, status)
            if status == "waiting":
                m.waiting.add(wid)
            else:
                m.waiting.discard(wid)
        elif sk.startswith("STEP#") and before is None and after is not None:
            kind = _value(after.get("kind")) or "step"
            m.steps[wid].append((now, int(sk.split("#", 1)[1]), str(kind)))

    def _charge_read(
        self,
        op: str,
        req: dict[str, Any],
        resp: dict[str, Any],
        plan: Any,
        stat: dict[str, Any],
    ) -> None:
        consistent = bool(req.get("ConsistentRead"))
        rru0 = stat["rru"]
        pk = ""  # a run's partition read: its RRU are the run's too
        if op == "GetItem":
            stat["rru"] += read_units(item_size(resp.get("Item")), consistent=consistent)
            sk = str(_value(req.get("Key", {}).get("sk")) or "")
            pk = str(_value(req.get("Key", {}).get("pk")) or "")
            what = "run" if sk == "RUN" else sk.split("#")[0].lower()
            stat["purposes"]["get " + (what if pk.startswith("WF#") else pk)] += 1
        elif op in ("Query", "Scan"):
            table = self.meter.tables.get(req.get("TableName", "")) or TableDef("?", "pk", "sk")
            items = plan if isinstance(plan, list) else resp.get("Items", [])
            stat["rru"] += query_read_units(
                table, items, index_name=req.get("IndexName"), consistent=consistent
            )
            stat["purposes"][_query_purpose(req)] += 1
            if not req.get("IndexName"):
                pk = str(_value(req.get("ExpressionAttributeValues", {}).get(":pk")) or "")
        elif op == "BatchGetItem":
            for table_name, items in resp.get("Responses", {}).items():
                spec = req.get("RequestItems", {}).get(table_name, {})
                strong = bool(spec.get("ConsistentRead"))
                for item in items:
                    units = read_units(item_size(item), consistent=strong)
                    stat["rru"] += units
                    if str(_value(item.get("pk"))).startswith("WF#"):
                        stat["run_rru"] += units
            stat["purposes"]["batch get"] += 1
        elif op == "TransactGetItems":
            for r in resp.get("Responses", []):
                stat["rru"] += read_units(
                    item_size(r.get("Item")), consistent=True, transactional=True
                )
            stat["purposes"]["transactional get"] += 1
        if pk.startswith("WF#"):
            stat["run_rru"] += stat["rru"] - rru0


def serve(
    host: str = "127.0.0.1", port: int = 0, *, stock_moto: bool = False
) -> tuple[Any, MeteredDynamoDB]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if not stock_moto:
        index_base_table_queries()
    app = MeteredDynamoDB(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    return server, app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--stock-moto", action="store_true", help="no partition-indexed Query")
    args = parser.parse_args()
    server, _ = serve(args.host, args.port, stock_moto=args.stock_moto)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address[:2]
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(f"http://{host}:{port}")
    tmp.replace(args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
