"""Operators' signals: the worker registry, structured logs, metrics, traces."""

from __future__ import annotations

import io
import json
import sys
import urllib.request
from pathlib import Path

from orchestrator import Client
from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import wait_for, wait_status
from tests.workflows import ALL, count
from worker import Worker


def test_workers_register_and_runs_no_live_worker_serves_are_flagged(stack) -> None:
    client = Client(stack.api_url)
    orphan = client.start("nobody-serves-this", {})
    assert client.get(orphan["id"])["unserved"] is True
    with BackgroundWorker(
        [count], stack.settings, clock=stack.clock, max_concurrent_workflows=3
    ) as bw:
        (w,) = wait_for(client.workers)
        assert (
            w["id"] == bw.worker.id
            and w["names"] == ["count"]
            and w["concurrency"] == 3
            and w["live"]
        )
        served = client.start("count", {"steps": 1}, id="served")
        listed = {r["id"]: r for r in client.list()["workflows"]}
        assert listed[orphan["id"]]["unserved"] is True
        assert "unserved" not in listed["served"] or listed["served"]["unserved"] is False
        client.wait(served["id"])
    assert client.workers() == []  # stopped cleanly: not live
    assert client.workers(include_stopped=True)[0]["live"] is False


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_worker_logs_are_json_with_run_context_and_ctx_logger_does_not_repeat_on_replay(
    stack, exec_log: Path, json_log: io.StringIO
) -> None:
    # A lease no late heartbeat loses under load: a takeover would log again.
    held = stack.settings.with_(lease_seconds=30)
    with BackgroundWorker(ALL, held, clock=stack.clock) as bw:
        run, _ = stack.service.start("chatty", {})
        wait_status(stack, run.id, "completed")
    lines = [line for line in _lines(json_log) if line.get("workflow_id") == run.id]
    mine = [line["message"] for line in lines if line["logger"] == "workflow.chatty"]
    assert mine == ["starting", "before the nap", "after the nap"]  # two executions, no repeats
    finished = next(line for line in lines if "completed" in line["message"])
    assert finished["worker_id"] == bw.worker.id and finished["status"] == "completed"
    assert finished["workflow"] == "chatty" and finished["attempt"] == 2
    parked = next(line for line in lines if line["message"].endswith("parked"))
    assert parked["status"] == "parked"


def test_worker_metrics_count_runs_steps_and_serve_prometheus_text(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock) as bw:
        ids = [stack.service.start("count", {"steps": 3})[0].id for _ in range(2)]
        failing, _ = stack.service.start("failing", {})
        for i in ids:
            wait_status(stack, i, "completed")
        wait_status(stack, failing.id, "failed")
        m = bw.worker.metrics
        port = m.serve(0, host="127.0.0.1")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        m.close()
    assert m.value("orchestrator_runs_finished_total", workflow="count", status="completed") == 2
    assert m.value("orchestrator_runs_finished_total", workflow="failing", status="failed") == 1
    assert m.value("orchestrator_steps_total", workflow="count", outcome="ok") == 6
    assert m.count("orchestrator_step_seconds", workflow="count") == 6
    assert m.count("orchestrator_queue_wait_seconds") >= 3
    assert 'orchestrator_runs_finished_total{status="completed",workflow="count"} 2' in text
    assert 'orchestrator_step_seconds_count{workflow="count"} 6' in text


def test_spans_per_claim_and_step_continue_the_callers_trace(stack, exec_log: Path) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the global provider is set once per process
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    req = urllib.request.Request(
        stack.api_url + "/workflows",
        data=json.dumps({"name": "count", "input": {"steps": 2}}).encode(),
        method="POST",
        headers={
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
            "Content-Type": "application/json",
        },
    )
    run_id = json.loads(urllib.request.urlopen(req).read())["id"]
    # A lease no late heartbeat loses under load: a takeover is a second run span.
    held = stack.settings.with_(lease_seconds=30)
    with BackgroundWorker(ALL, held, clock=stack.clock, tracing=True):
        wait_status(stack, run_id, "completed")
    spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name == "workflow.run"]
    steps = [s for s in spans if s.name == "workflow.step"]
    assert len(runs) == 1 and len(steps) == 2
    assert format(runs[0].context.trace_id, "032x") == trace_id  # continues the caller's trace
    assert runs[0].attributes["workflow.id"] == run_id
    assert {s.attributes["step.name"] for s in steps} == {"s0", "s1"}
    assert all(s.parent.span_id == runs[0].context.span_id for s in steps)


def test_tracing_is_off_by_default(stack) -> None:
    from worker._tracing import TracingPlugin

    w = Worker(workflows=ALL, settings=stack.settings)
    assert not any(isinstance(p, TracingPlugin) for p in w.hooks.plugins)
    traced = Worker(workflows=ALL, settings=stack.settings, tracing=True)
    assert any(isinstance(p, TracingPlugin) for p in traced.hooks.plugins)


def test_the_api_lambda_logs_json_and_emits_embedded_metrics(stack, monkeypatch, capsys) -> None:
    from orchestrator.api import lambda_handler
    from orchestrator.local.http import to_event

    for k, v in stack.exports().items():
        monkeypatch.setenv(k, v)
    lambda_handler._service.cache_clear()

    class Context:
        function_name = "orchestrator-api"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:orchestrator-api"
        aws_request_id = "req-1"

    event = to_event(
        "POST", "/workflows", {"Content-Type": "application/json"}, b'{"name": "count"}'
    )
    # The logger's handler writes to the stream that was sys.stdout when the module
    # was first imported (by whichever test did): point it at this test's capture.
    monkeypatch.setattr(lambda_handler.logger.registered_handler, "stream", sys.stdout)
    reply = lambda_handler.handler(event, Context())
    assert reply["statusCode"] == 201
    records = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    log = next(r for r in records if r.get("message") == "request")
    assert (
        log["status"] == 201
        and log["path"] == "/workflows"
        and log["function_request_id"] == "req-1"
    )
    emf = next(r for r in records if "_aws" in r)
    names = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"ApiRequests", "RunsStarted"} <= names
    assert emf["RunsStarted"] in (1.0, [1.0])
    lambda_handler._service.cache_clear()
